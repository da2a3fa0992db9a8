"""The frame of each instance of a results file: the box its detector ran
on, where the file gives one, else the extent of its keypoints. Never an
annotation's box: ground truth is for scoring only."""
import warnings
from typing import Optional

import numpy as np
import torch

from mmport.datasets.prediction_files import PoseResults
from mmport.structures import valid_bboxes


def keypoint_extent_boxes(keypoints: np.ndarray, scores: np.ndarray, thr: float) -> np.ndarray:
    """Boxes around each instance's confident keypoints.

    Args:
        keypoints (np.ndarray): (N, K, 2) pixels.
        scores (np.ndarray): (N, K) confidences.
        thr (float): Joints scored ``>= thr`` are confident (all finite
            joints where fewer than two are); ``-inf``: all finite joints.

    Returns:
        np.ndarray: (N, 4) xyxy; NaN where no keypoint is finite.
    """
    if keypoints.size == 0:
        return np.full((len(keypoints), 4), np.nan)
    conf = (scores >= thr) & np.isfinite(keypoints).all(-1)
    few = conf.sum(1) < 2
    conf[few] = np.isfinite(keypoints[few]).all(-1)
    big = np.where(conf[..., None], keypoints, np.nan)
    with warnings.catch_warnings():  # all-NaN instances give NaN boxes, as documented
        warnings.simplefilter('ignore', RuntimeWarning)
        return np.concatenate([np.nanmin(big, 1), np.nanmax(big, 1)], 1)


BBOX_SOURCES = ('auto', 'results', 'keypoints')
NO_BOXES = ("gives no person box: bbox source 'results' needs one ('auto' and 'keypoints' "
            'frame instances by their keypoints)')


def usable_boxes(bboxes: Optional[np.ndarray], n: int) -> np.ndarray:
    """Which of ``n`` boxes (N, 4) xyxy can frame an instance: finite, with
    positive width and height (bool (N,); all False where ``bboxes`` is
    None)."""
    if bboxes is None:
        return np.zeros(n, bool)
    # the refiner's own test, so that a box used here is one it accepts
    return valid_bboxes(torch.as_tensor(np.asarray(bboxes, np.float64).reshape(n, 4))).numpy()


def frame_kinds(results: PoseResults, source: str = 'auto') -> np.ndarray:
    """Which box :func:`refiner_boxes` frames each instance by.

    Args:
        results (PoseResults): The loaded results (N instances).
        source (str): One of ``BBOX_SOURCES``: ``'auto'``, per instance, the
            results' own box where it is finite and non-degenerate, else the
            extent of the instance's keypoints; ``'results'``: the results'
            own box for every instance (instances with an unusable one pass
            through the refiner unchanged); ``'keypoints'``: the keypoints'
            extent for every instance.

    Returns:
        np.ndarray: object (N,), ``'results'`` or ``'keypoints'`` per
        instance.

    Raises:
        ValueError: An unknown ``source``, or ``'results'`` for results
            that give no box.
    """
    if source not in BBOX_SOURCES:
        raise ValueError(f'bbox source must be one of {BBOX_SOURCES}, got {source!r}')
    kinds = np.full(len(results), 'keypoints', dtype=object)
    if source == 'results':
        if len(results) and results.bboxes is None:
            raise ValueError(NO_BOXES)
        kinds[:] = 'results'
    elif source == 'auto':
        kinds[usable_boxes(results.bboxes, len(results))] = 'results'
    return kinds


def refiner_boxes(results: PoseResults, thr: float, source: str = 'auto') -> np.ndarray:
    """The frame box of every instance, from the results file alone (never
    from an annotation file).

    Args:
        results (PoseResults): The loaded results (N instances, K joints).
        thr (float): Confidence threshold of the keypoint extent: the box
            around the instance's joints scored ``>= thr`` (all finite ones
            where fewer than two are); ``-inf``: all finite joints.
        source (str): One of ``BBOX_SOURCES`` (see :func:`frame_kinds`).

    Returns:
        np.ndarray: (N, 4) xyxy pixels. Unusable boxes (NaN, degenerate) are
        not fixed here: such instances pass through the refiner unchanged.
    """
    kinds = frame_kinds(results, source)
    boxes = keypoint_extent_boxes(results.keypoints, results.keypoint_scores, thr)
    own = kinds == 'results'
    if own.any():
        boxes[own] = np.asarray(results.bboxes, np.float64).reshape(-1, 4)[own]
    return boxes
