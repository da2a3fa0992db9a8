from .functional import (MPII_PCKH_EXCLUDED, coco_keypoint_ap, instance_similarity,
                         mpii_pose_errors, pckh, pose_errors, refinement_report)
from .metrics import RefinementMetric

__all__ = ['coco_keypoint_ap', 'pose_errors', 'refinement_report', 'RefinementMetric',
           'MPII_PCKH_EXCLUDED', 'pckh', 'mpii_pose_errors', 'instance_similarity']
