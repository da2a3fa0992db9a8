from . import transforms  # noqa: F401  (registration)
from .grouped_fold_dataset import GroupedFoldDataset
from .prediction_files import PoseResults, load_pose_results

__all__ = ['GroupedFoldDataset', 'PoseResults', 'load_pose_results']
