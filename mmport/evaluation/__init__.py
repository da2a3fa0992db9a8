from .functional import pose_errors, refinement_report
from .metrics import RefinementMetric

__all__ = ['pose_errors', 'refinement_report', 'RefinementMetric']
