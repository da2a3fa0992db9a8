"""Any MMPose top-down estimator followed by the PORT refiner."""
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.runner.checkpoint import load_checkpoint
from mmpose.registry import MODELS
from torch import Tensor

from mmport.structures.normalization import valid_bboxes


def _as_tensor(value, device) -> Tensor:
    return torch.as_tensor(np.asarray(value), dtype=torch.float32, device=device)


@MODELS.register_module()
class RefinedTopdownPoseEstimator(BaseModel):
    """Runs an MMPose top-down estimator exactly as MMPose does (its own
    data preprocessor, head, codec and flip test), then refines the
    low-confidence joints of each predicted instance with a ``PORTRefiner``.

    ``pred_instances.keypoints`` hold the refined keypoints;
    ``keypoints_init`` / ``keypoint_scores_init`` keep the estimator's, and
    ``refined_mask`` (N, K) tells which joints were replaced. The scores of
    refined joints keep the estimator's values (so COCO's rescoring of
    instances is unchanged by refinement: a refined joint is not claimed to
    be more certain than the detector said).

    Args:
        estimator (dict): Config of the top-down estimator, normally
            ``_base_.model`` of an ``mmpose::`` config.
        refiner (dict): Config of the ``PORTRefiner``.
        estimator_checkpoint (str, optional): Weights of the estimator, loaded
            at construction (``Runner.test`` never calls ``init_weights``).
        refiner_checkpoint (str, optional): Weights of the refiner (a
            checkpoint saved by training a ``PORTRefiner`` or this model).
        refine (bool): Switch refinement off to get the estimator's output
            unchanged (``keypoints == keypoints_init``).
        freeze_estimator (bool): Keep the estimator frozen and in eval mode
            (BatchNorm statistics untouched). Defaults to True.
        train_cfg (dict, optional): ``mask_ratio`` (fraction of joints masked
            at random besides those below ``score_thr``; default 0.3).
        test_cfg (dict, optional): Overrides of the refiner's ``test_cfg``
            (``score_thr``, ``blend``, ``min_confident``, ``flip_test``).
        data_preprocessor (dict, optional): Defaults to the estimator's.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self, estimator: dict, refiner: dict,
                 estimator_checkpoint: Optional[str] = None,
                 refiner_checkpoint: Optional[str] = None,
                 refine: bool = True, freeze_estimator: bool = True,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        estimator = dict(estimator)
        if data_preprocessor is None:
            data_preprocessor = estimator.get('data_preprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.estimator = MODELS.build(estimator)
        self.refiner = MODELS.build(refiner)
        self.refiner.test_cfg.update(test_cfg or {})
        self.estimator_checkpoint = estimator_checkpoint
        self.refiner_checkpoint = refiner_checkpoint
        self.refine_enabled = refine
        self.freeze_estimator = freeze_estimator
        self.train_cfg = {'mask_ratio': 0.3, **(train_cfg or {})}
        if estimator_checkpoint:
            load_checkpoint(self.estimator, estimator_checkpoint, map_location='cpu',
                            strict=True, revise_keys=[(r'^estimator\.', '')])
        if refiner_checkpoint:
            load_checkpoint(self.refiner, refiner_checkpoint, map_location='cpu', strict=True,
                            revise_keys=[(r'^refiner\.', '')])
        if freeze_estimator:
            self.estimator.requires_grad_(False)
            self.estimator.eval()

    @property
    def test_cfg(self) -> dict:
        return self.refiner.test_cfg

    def init_weights(self):
        """Initialise only what no checkpoint was loaded into."""
        if not self.estimator_checkpoint:
            self.estimator.init_weights()
        if not self.refiner_checkpoint:
            self.refiner.init_weights()
        self._is_init = True

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_estimator:
            self.estimator.eval()
        return self

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.estimator(inputs, data_samples, mode='tensor')
        raise ValueError(f'invalid mode {mode!r}')

    def _estimate(self, inputs, data_samples) -> list:
        with torch.set_grad_enabled(not self.freeze_estimator and self.training):
            was_training = self.estimator.training
            self.estimator.eval()
            results = self.estimator.predict(inputs, data_samples)
            self.estimator.train(was_training and not self.freeze_estimator)
        return results

    @staticmethod
    def _gather(results: list, device):
        """Concatenate all instances: keypoints (N, K, 2), scores (N, K),
        bboxes (N, 4), and the number of instances per sample."""
        counts = [len(r.pred_instances.keypoints) for r in results]
        kpts = [_as_tensor(r.pred_instances.keypoints, device)[..., :2] for r in results]
        scores = [_as_tensor(r.pred_instances.keypoint_scores, device) for r in results]
        boxes = [_as_tensor(r.pred_instances.bboxes, device).reshape(-1, 4) for r in results]
        return torch.cat(kpts), torch.cat(scores), torch.cat(boxes), counts

    def predict(self, inputs: Tensor, data_samples: list) -> list:
        """Estimate, then refine every predicted instance in one batch."""
        results = self._estimate(inputs, data_samples)
        kpts, scores, boxes, counts = self._gather(results, inputs.device)
        if self.refine_enabled and len(kpts):
            refined, replaced = self.refiner.refine(kpts, scores, boxes)
        else:
            refined, replaced = kpts, torch.zeros_like(scores, dtype=torch.bool)
        start = 0
        for result, n in zip(results, counts):
            pred = result.pred_instances
            pred.keypoints_init = np.asarray(pred.keypoints)[..., :2].copy()
            pred.keypoint_scores_init = np.asarray(pred.keypoint_scores).copy()
            pred.keypoints = refined[start:start + n].cpu().numpy()
            pred.refined_mask = replaced[start:start + n].cpu().numpy()
            start += n
        return results

    def loss(self, inputs: Tensor, data_samples: list) -> Dict[str, Tensor]:
        """Train the refiner on the frozen estimator's own predictions:
        joints below ``score_thr`` plus a random ``mask_ratio`` of the others
        are reconstructed and compared with the ground truth."""
        results = self._estimate(inputs, [s.clone() for s in data_samples])
        kpts, scores, boxes, _ = self._gather(results, inputs.device)
        target = torch.cat([_as_tensor(s.gt_instances.keypoints, inputs.device)[..., :2]
                            for s in data_samples])
        visible = torch.cat([_as_tensor(s.gt_instances.keypoints_visible, inputs.device)
                             for s in data_samples]).reshape(scores.shape) > 0
        ok = valid_bboxes(boxes)
        if not ok.all():
            print_log(f'skipping {(~ok).sum().item()} instances with degenerate boxes',
                      logger='current')
        mask = (scores < self.refiner.test_cfg['score_thr']) | (
            torch.rand_like(scores) < self.train_cfg['mask_ratio'])
        return self.refiner.pose_loss(kpts[ok], scores[ok], boxes[ok], mask[ok], target[ok],
                                      visible[ok])
