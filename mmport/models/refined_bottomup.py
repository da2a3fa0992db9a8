"""Any MMPose bottom-up estimator followed by the PORT refiner."""
from typing import Optional

from mmpose.models import BottomupPoseEstimator
from mmpose.registry import MODELS

from .refined_estimator_mixin import RefinedEstimatorMixin


@MODELS.register_module()
class RefinedBottomupPoseEstimator(RefinedEstimatorMixin, BottomupPoseEstimator):
    """An MMPose ``BottomupPoseEstimator`` (e.g. DEKR, RTMO) whose
    predictions are refined by a ``PORTRefiner``, as
    ``RefinedTopdownPoseEstimator`` does for top-down ones: a refined config
    inherits the MMPose config and sets ``model = dict(type=
    'RefinedBottomupPoseEstimator', refiner_checkpoint=...)``.

    Each instance is refined in the frame of its predicted box, or, for
    heads that predict none, of the extent of its keypoints. Training is
    not supported (train the refiner keypoints-only, e.g. with
    ``configs/port/port_coco_keypoints-only.py``).

    Args:
        backbone, neck, head, train_cfg, test_cfg, data_preprocessor,
            init_cfg: As ``BottomupPoseEstimator``'s.
        refiner (dict, optional): Config of the ``PORTRefiner``; by default
            the one saved in ``refiner_checkpoint``.
        refiner_checkpoint (str, optional): A refiner checkpoint.
        refine (bool): Switch refinement off to get the estimator's output
            unchanged. Defaults to True.
        refine_cfg (dict, optional): Overrides of the refiner's rule and
            ``chunk_size`` (see ``RefinedTopdownPoseEstimator``).
    """

    def __init__(self, backbone: dict, neck: Optional[dict] = None,
                 head: Optional[dict] = None, train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None, refiner: Optional[dict] = None,
                 refiner_checkpoint: Optional[str] = None, refine: bool = True,
                 refine_cfg: Optional[dict] = None, **kwargs):
        super().__init__(backbone=backbone, neck=neck, head=head, train_cfg=train_cfg,
                         test_cfg=test_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg, **kwargs)
        self._init_refinement(refiner, refiner_checkpoint, refine, refine_cfg)

    def predict(self, inputs, data_samples: list) -> list:
        """MMPose's bottom-up prediction, then every instance of the batch
        refined in one call (see :meth:`refine_results`)."""
        return self.refine_results(super().predict(inputs, data_samples))

    def loss(self, inputs, data_samples: list):
        raise NotImplementedError(
            'RefinedBottomupPoseEstimator does not train: train the refiner keypoints-only '
            '(configs/port/port_coco_keypoints-only.py) and the estimator with its MMPose config')
