"""Recover COCO's "labelled but occluded" flag (v=1) that MMPose collapses."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmpose.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadOcclusionFlags(BaseTransform):
    """Add ``keypoints_occluded`` (1, K) bool: True where the raw annotation
    has v=1. MMPose's COCO-style datasets turn v into ``keypoints_visible =
    min(1, v)``, losing the flag; it survives in ``raw_ann_info``.

    Required keys: ``raw_ann_info`` (with ``keypoints``), ``keypoints``.
    Added keys: ``keypoints_occluded``.
    """

    def transform(self, results: dict) -> dict:
        raw = results.get('raw_ann_info')
        num_k = results['keypoints'].shape[1]
        if not raw or 'keypoints' not in raw:
            raise KeyError('LoadOcclusionFlags needs the raw annotation ("raw_ann_info"); '
                           'bottom-up or bbox-file samples have none')
        v = np.asarray(raw['keypoints'], np.float32).reshape(-1, 3)[:, 2]
        if len(v) != num_k:
            raise ValueError(f'raw annotation has {len(v)} keypoints, the sample {num_k}')
        results['keypoints_occluded'] = (v == 1)[None]
        return results
