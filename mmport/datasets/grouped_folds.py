"""Grouped, size-balanced K-fold splits (no source video, image or method in two folds)."""
import os.path as osp
import re
from typing import Sequence

import numpy as np

_VIDEO_FRAME = re.compile(r'^(?P<group>.+\.(?:flv|mp4|avi|mov|mkv))_\d+_[lr]\.\w+$', re.I)
_HAND_OF_IMAGE = re.compile(r'^(?P<group>.+?)_\d+_[lr]\.\w+$')


def source_group(file_name: str) -> str:
    """The source video or image an annotated hand crop comes from.

    CMU Panoptic HandDB names NZSL video frames ``<video>.flv_<frame>_<l|r>.jpg``
    (group: the video) and MPII images ``<image>_<person>_<l|r>.jpg``
    (group: the image). Other names are their own group.

    Args:
        file_name (str): Image file name or path.

    Returns:
        str: The group key.
    """
    base = osp.basename(file_name)
    for pattern in (_VIDEO_FRAME, _HAND_OF_IMAGE):
        match = pattern.match(base)
        if match:
            return match.group('group')
    return base


def grouped_folds(groups: Sequence[str], num_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Assign samples to folds so that no group spans two folds and folds are
    balanced in size: largest groups first, each to the currently smallest
    fold (ties between equal-sized groups broken by a seeded shuffle).

    Args:
        groups (sequence[str]): Group key per sample, length N.
        num_folds (int): Number of folds.
        seed (int): Seed of the tie-breaking shuffle.

    Returns:
        np.ndarray: Fold index per sample, int (N,).
    """
    unique, inverse, counts = np.unique(np.asarray(groups), return_inverse=True,
                                        return_counts=True)
    if len(unique) < num_folds:
        raise ValueError(f'{len(unique)} groups cannot fill {num_folds} folds')
    tie_break = np.random.default_rng(seed).permutation(len(unique))
    order = np.lexsort((tie_break, -counts))
    sizes = np.zeros(num_folds, np.int64)
    fold_of_group = np.empty(len(unique), np.int64)
    for g in order:
        fold = int(np.argmin(sizes))
        fold_of_group[g] = fold
        sizes[fold] += counts[g]
    return fold_of_group[inverse]


def crossed_folds(images: Sequence[str], methods: Sequence[str], num_folds: int = 4,
                  seed: int = 0) -> list:
    """Folds that hold out methods and images together, for a rule meant for
    methods a refiner never saw, without letting it see the ground truth of
    the persons it is scored on (another method's prediction of the same
    person carries that person's annotation into training).

    Methods and images are each split into K groups (``grouped_folds``,
    K = ``min(num_folds, number of methods)``); fold ``f`` trains on the
    persons of methods outside method group ``f`` on images outside image
    group ``f``, and scores the persons of method group ``f`` on image group
    ``f``. About a 1/K share of the persons is scored, a (1 - 1/K)^2 share
    trains each fold.

    Args:
        images (sequence[str]): Image key per person, length N.
        methods (sequence[str]): Method per person, length N; at least two.
        num_folds (int): The most folds wanted.
        seed (int): Seed of the tie-breaking shuffles.

    Returns:
        list[tuple[np.ndarray, np.ndarray]]: Per fold, the training and the
        scored persons' indices, int (M,).
    """
    if len(images) != len(methods):
        raise ValueError(f'{len(images)} image keys for {len(methods)} methods')
    folds = min(num_folds, len(set(methods)))
    if folds < 2:
        raise ValueError(f'{len(set(methods))} method(s): holding methods out needs two')
    by_method = grouped_folds(methods, folds, seed)
    by_image = grouped_folds(images, folds, seed)
    return [(np.flatnonzero((by_method != f) & (by_image != f)),
             np.flatnonzero((by_method == f) & (by_image == f))) for f in range(folds)]
