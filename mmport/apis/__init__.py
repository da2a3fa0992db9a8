from .cross_validation import fold_indices, grouped_folds, source_group
from .runner_setup import prepare_runner_cfg

__all__ = ['fold_indices', 'grouped_folds', 'source_group', 'prepare_runner_cfg']
