from .framing import BBOX_SOURCES
from .offline_refinement import OfflineRefinementReport, refine_results_file
from .refiner_fitting import FitReport, fit_refiner
from .refinement_explanation import RefinementExplanation, explain_refinement
from mmport.models.refiner_loading import load_refiner, refiner_config_from_checkpoint
from .runner_setup import finish_cpu_distributed_run, prepare_runner_cfg

__all__ = ['prepare_runner_cfg', 'finish_cpu_distributed_run', 'load_refiner',
           'refiner_config_from_checkpoint', 'refine_results_file', 'OfflineRefinementReport',
           'BBOX_SOURCES', 'explain_refinement', 'RefinementExplanation', 'fit_refiner',
           'FitReport']
