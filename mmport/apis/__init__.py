from .refiner_loading import load_refiner, refiner_config_from_checkpoint
from .runner_setup import finish_cpu_distributed_run, prepare_runner_cfg

__all__ = ['prepare_runner_cfg', 'finish_cpu_distributed_run', 'load_refiner',
           'refiner_config_from_checkpoint']
