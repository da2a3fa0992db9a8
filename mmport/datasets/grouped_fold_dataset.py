"""One split of a grouped K-fold cross-validation over an MMPose dataset."""
import copy
from typing import List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmpose.registry import DATASETS

from .grouped_folds import grouped_folds, source_group


@DATASETS.register_module()
class GroupedFoldDataset:
    """The samples of some folds of a grouped K-fold split of an MMPose dataset.

    Samples are grouped by their source video / image
    (:func:`mmport.datasets.source_group` of ``img_path``), so no
    source appears in two folds, and folds are balanced in size. Training on
    fold f's complement is ``folds=[all but f]``, testing ``folds=[f]``.

    Args:
        dataset (dict | BaseDataset): The MMPose dataset (config) to split;
            it keeps its own pipeline.
        folds (sequence[int]): The folds whose samples this dataset holds.
        num_folds (int): K. Defaults to 5.
        seed (int): Seed of the fold assignment's tie-breaking.
    """

    def __init__(self, dataset: Union[dict, BaseDataset], folds: Sequence[int],
                 num_folds: int = 5, seed: int = 0):
        folds = sorted(set(int(f) for f in folds))
        if not folds or folds[0] < 0 or folds[-1] >= num_folds:
            raise ValueError(f'folds {folds} must be a non-empty subset of 0..{num_folds - 1}')
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.num_folds, self.seed = num_folds, seed
        groups = [source_group(self.dataset.get_data_info(i)['img_path'])
                  for i in range(len(self.dataset))]
        self.fold_of_sample = grouped_folds(groups, num_folds, seed)
        self.indices: List[int] = np.flatnonzero(np.isin(self.fold_of_sample, folds)).tolist()

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> Optional[dict]:
        return self.dataset[self.indices[idx]]

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(self.indices[idx])
