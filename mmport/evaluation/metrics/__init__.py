from .refinement_metric import RefinementMetric

__all__ = ['RefinementMetric']
