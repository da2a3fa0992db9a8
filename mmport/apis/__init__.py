from .cross_validation import fold_indices, grouped_folds, source_group
from .refiner_loading import load_refiner, refiner_config_from_checkpoint
from .runner_setup import prepare_runner_cfg

__all__ = ['fold_indices', 'grouped_folds', 'source_group', 'prepare_runner_cfg',
           'load_refiner', 'refiner_config_from_checkpoint']
