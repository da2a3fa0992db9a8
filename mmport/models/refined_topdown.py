"""Any MMPose top-down estimator followed by the PORT refiner."""
from typing import Dict, Optional

import torch
from mmengine.logging import print_log
from mmpose.models import TopdownPoseEstimator
from mmpose.registry import MODELS
from torch import Tensor

from mmport.structures.normalization import valid_bboxes
from .refined_estimator_mixin import RefinedEstimatorMixin, as_tensor


@MODELS.register_module()
class RefinedTopdownPoseEstimator(RefinedEstimatorMixin, TopdownPoseEstimator):
    """An MMPose ``TopdownPoseEstimator`` whose predictions are refined by
    a ``PORTRefiner``.

    A refined config inherits any MMPose top-down config and changes only
    the model's type and adds the refiner::

        _base_ = ['mmpose::body_2d_keypoint/topdown_heatmap/coco/'
                  'td-hm_mobilenetv2_8xb64-210e_coco-256x192.py']
        custom_imports = dict(imports=['mmport'], allow_failed_imports=False)
        model = dict(type='RefinedTopdownPoseEstimator',
                     refiner_checkpoint='checkpoints/port_coco17_....pth')

    ``backbone`` / ``neck`` / ``head`` / ``data_preprocessor`` /
    ``train_cfg`` / ``test_cfg`` keep their MMPose meaning (``test_cfg.
    flip_test`` is the estimator's flip test), so MMPose model-zoo
    checkpoints load as they are (``tools/test.py CFG ESTIMATOR.pth``,
    ``mmpose.apis.init_model``); a checkpoint without ``refiner.*`` keys
    keeps the refiner loaded from ``refiner_checkpoint``.

    :meth:`predict` runs MMPose's own prediction (codec, flip test), then
    refines the low-confidence joints of all instances of the batch in one
    call. ``pred_instances.keypoints`` hold the refined keypoints;
    ``keypoints_init`` / ``keypoint_scores_init`` keep the estimator's, and
    ``refined_mask`` (N, K) tells which joints were replaced. The scores of
    refined joints keep the estimator's values (a refined joint is not
    claimed to be more certain than the estimator said); the instance
    scores (``bbox_scores``) change only where the refiner's rule rescores
    (``rule.rescore``; the estimator's are kept as ``bbox_scores_init``).

    The estimator is always frozen: :meth:`loss` trains the refiner on the
    estimator's own predictions (PoseFix-style); train the estimator with its
    plain MMPose config.

    Args:
        backbone, neck, head, train_cfg, test_cfg, data_preprocessor,
            init_cfg, metainfo: As ``TopdownPoseEstimator``'s.
        refiner (dict, optional): Config of the ``PORTRefiner``; by default
            the one saved in ``refiner_checkpoint``.
        refiner_checkpoint (str, optional): A refiner checkpoint (mmengine
            format: ``state_dict`` and the config text in ``meta.cfg``).
        refine (bool): Switch refinement off to get the estimator's output
            unchanged (``keypoints == keypoints_init``). Defaults to True.
        refine_cfg (dict, optional): Overrides of the refiner's rule (any
            field of :class:`~mmport.models.refinement_rule.RefinementRule`:
            ``candidates``, ``score_thr``, ``gate``, ``blend``,
            ``min_confident``, ``flip_test`` (the refiner's mirror
            averaging), ``rescore``) and ``chunk_size``.
        mask_ratio (float): In :meth:`loss`, the fraction of the joints that
            are not candidates also masked at random. Defaults to 0.3.
    """

    def __init__(self, backbone: dict, neck: Optional[dict] = None,
                 head: Optional[dict] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None, metainfo: Optional[dict] = None,
                 refiner: Optional[dict] = None, refiner_checkpoint: Optional[str] = None,
                 refine: bool = True, refine_cfg: Optional[dict] = None,
                 mask_ratio: float = 0.3):
        super().__init__(backbone=backbone, neck=neck, head=head, train_cfg=train_cfg,
                         test_cfg=test_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg, metainfo=metainfo)
        self._init_refinement(refiner, refiner_checkpoint, refine, refine_cfg)
        self.mask_ratio = mask_ratio

    def predict(self, inputs: Tensor, data_samples: list) -> list:
        """MMPose's top-down prediction, then every instance refined in one
        batch (see :meth:`refine_results`).

        Args:
            inputs (Tensor): Crops (N, C, H, W).
            data_samples (list[PoseDataSample]): One instance each.

        Returns:
            list[PoseDataSample]: With refined ``pred_instances``.
        """
        return self.refine_results(super().predict(inputs, data_samples))

    def loss(self, inputs: Tensor, data_samples: list) -> Dict[str, Tensor]:
        """Train the refiner on the frozen estimator's own predictions:
        joints below ``score_thr`` plus a random ``mask_ratio`` of the others
        are reconstructed and compared with the ground truth.

        Predictions and targets are compared in the crop's frame mapped back
        to image scale (MMPose maps predictions back without the crop's
        rotation, so the ground truth is taken from ``transformed_keypoints``,
        packed by ``PackPoseInputs(pack_transformed=True)``, and mapped the
        same way); the refiner's frame is the instance's box.

        Args:
            inputs (Tensor): Crops (N, C, H, W) from MMPose's train pipeline.
            data_samples (list[PoseDataSample]): With ``gt_instances``
                (``transformed_keypoints``, ``keypoints_visible``, ``bboxes``)
                and the crop's ``input_center`` / ``input_scale`` /
                ``input_size`` metainfo.

        Returns:
            dict[str, Tensor]: The refiner's losses.
        """
        device = inputs.device
        with torch.no_grad():
            results = TopdownPoseEstimator.predict(self, inputs,
                                                   [s.clone() for s in data_samples])
        kpts, scores, boxes, _ = self.gather_instances(results, device)
        target = torch.cat([self._crop_to_image(s, device) for s in data_samples])
        visible = torch.cat([as_tensor(s.gt_instances.keypoints_visible, device)
                             for s in data_samples]).reshape(scores.shape) > 0
        ok = valid_bboxes(boxes)
        if not ok.all():
            print_log(f'skipping {(~ok).sum().item()} instances with degenerate boxes',
                      logger='current')
        mask = self.refiner.rule.candidate_mask(scores) | (
            torch.rand_like(scores) < self.mask_ratio)
        return self.refiner.pose_loss(kpts[ok], scores[ok], boxes[ok], mask[ok], target[ok],
                                      visible[ok])

    @staticmethod
    def _crop_to_image(sample, device) -> Tensor:
        """Ground truth (n, K, 2) mapped from the crop to the image as
        ``TopdownPoseEstimator.add_pred_to_datasample`` maps predictions."""
        gt = sample.gt_instances
        if 'transformed_keypoints' not in gt:
            raise ValueError('training a refined estimator needs the crop-space ground truth: '
                             "end the train pipeline with dict(type='PackPoseInputs', "
                             'pack_transformed=True)')
        kpts = as_tensor(gt.transformed_keypoints, device)[..., :2]
        size = as_tensor(sample.metainfo['input_size'], device)
        center = as_tensor(sample.metainfo['input_center'], device)
        scale = as_tensor(sample.metainfo['input_scale'], device)
        return kpts / size * scale + center - 0.5 * scale
