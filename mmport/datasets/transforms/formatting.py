"""Pack a keypoints-only sample for the refiner (no image involved)."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import InstanceData
from mmpose.registry import TRANSFORMS
from mmpose.structures import PoseDataSample

# results key -> gt_instances field
GT_FIELDS = {
    'bbox': 'bboxes',
    'keypoints': 'keypoints',
    'keypoints_visible': 'keypoints_visible',
    'keypoints_occluded': 'keypoints_occluded',
    'joint_mask': 'joint_mask',
    'head_size': 'head_size',
    'area': 'areas',
    'bbox_score': 'bbox_scores',
}


@TRANSFORMS.register_module()
class PackRefinerInputs(BaseTransform):
    """Pack the input pose as ``inputs`` and the rest as a ``PoseDataSample``.

    MMPose's ``PackPoseInputs`` needs an image; this one does not.

    Required keys: ``input_keypoints`` (1, K, 2), ``input_keypoint_scores``
    (1, K), ``bbox`` (1, 4). Optional: the keys of ``GT_FIELDS``.

    Returns:
        dict: ``inputs``: float32 tensor (K, 3) of (x, y, score) in pixels;
        ``data_samples``: a ``PoseDataSample`` whose ``gt_instances`` hold
        ``bboxes`` (1, 4), ``keypoints`` (1, K, 2), ``keypoints_visible``
        (1, K) and, where present, ``joint_mask`` (1, K) bool,
        ``keypoints_occluded`` (1, K), ``head_size`` (1,), ``areas`` (1,).

    Args:
        meta_keys (sequence[str]): Keys copied into the sample's metainfo.
    """

    def __init__(self, meta_keys: Sequence[str] = (
            'id', 'img_id', 'img_path', 'category_id', 'ori_shape', 'img_shape',
            'flip', 'flip_indices', 'input_is_init', 'dataset_name')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        keypoints = np.asarray(results['input_keypoints'], np.float32)
        scores = np.asarray(results['input_keypoint_scores'], np.float32)
        if keypoints.ndim != 3 or keypoints.shape[0] != 1 or keypoints.shape[2] != 2:
            raise ValueError('PackRefinerInputs packs one instance: input_keypoints must be '
                             f'(1, K, 2), got {keypoints.shape}')
        inputs = torch.from_numpy(np.concatenate([keypoints[0], scores[0, :, None]], -1))

        gt = InstanceData()
        for key, field in GT_FIELDS.items():
            value = results.get(key)
            if value is None:
                continue
            value = np.asarray(value)
            gt.set_field(value.reshape(1, *value.shape[1:]) if value.ndim else value[None], field)
        sample = PoseDataSample(gt_instances=gt)
        sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'
