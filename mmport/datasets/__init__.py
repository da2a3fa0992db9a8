from . import transforms  # noqa: F401  (registration)
from .grouped_fold_dataset import GroupedFoldDataset
from .grouped_folds import crossed_folds, grouped_folds, source_group
from .prediction_files import PoseResults, load_pose_results

__all__ = ['GroupedFoldDataset', 'crossed_folds', 'grouped_folds', 'source_group', 'PoseResults',
           'load_pose_results']
