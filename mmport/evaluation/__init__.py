from .functional import coco_keypoint_ap, pose_errors, refinement_report
from .metrics import RefinementMetric

__all__ = ['coco_keypoint_ap', 'pose_errors', 'refinement_report', 'RefinementMetric']
