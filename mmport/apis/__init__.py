from .cross_validation import grouped_folds, source_group
from .refiner_loading import load_refiner, refiner_config_from_checkpoint
from .runner_setup import finish_cpu_distributed_run, prepare_runner_cfg

__all__ = ['grouped_folds', 'source_group', 'prepare_runner_cfg', 'finish_cpu_distributed_run',
           'load_refiner', 'refiner_config_from_checkpoint']
