"""Instance scores from the refiner's own estimate of each joint's quality.

COCO keypoint AP ranks a method's instances by their ``score``: an instance
ranked above worse ones raises precision at every OKS threshold it passes.
A refiner whose error head estimates each joint's expected keypoint
similarity (``quality_kind='keypoint_similarity'``) estimates the
instance's OKS as their mean, which can rank instances better than the
detector's own score. Pure functions on tensors (the calibration's fit on
arrays).
"""
from typing import List, Optional, Sequence

import numpy as np
import torch
from scipy.optimize import isotonic_regression
from torch import Tensor


def expected_instance_similarity(quality: Tensor, replaced: Tensor) -> Tensor:
    """Expected OKS of each output instance (B,): the mean over its joints
    of the expected keypoint similarity of the reconstruction where the
    joint was replaced, else of its input position.

    Args:
        quality (Tensor): (B, K, 2) expected similarity of the input
            ``[..., 0]`` and of the reconstruction ``[..., 1]``.
        replaced (Tensor): bool (B, K).
    """
    return torch.where(replaced, quality[..., 1], quality[..., 0]).mean(1).clamp(0, 1)


def rescored_instance_scores(instance_scores: Tensor, expected_oks: Tensor, weight: float,
                             valid: Optional[Tensor] = None) -> Tensor:
    """The geometric blend ``score ** (1 - weight) * oks ** weight`` of each
    instance's score with its expected OKS.

    Args:
        instance_scores (Tensor): (B,) the detector's instance scores (>= 0).
        expected_oks (Tensor): (B,) in [0, 1].
        weight (float): In [0, 1]; 0 returns the scores unchanged, 1 the
            expected OKS.
        valid (Tensor, optional): bool (B,), the instances the refiner could
            judge; the others keep their score.

    Returns:
        Tensor: (B,) scores.
    """
    if not 0 <= weight <= 1:
        raise ValueError(f'the rescoring weight must be in [0, 1], got {weight}')
    if weight == 0:
        return instance_scores.clone()
    out = instance_scores.clamp_min(0) ** (1 - weight) * expected_oks ** weight
    return out if valid is None else torch.where(valid, out, instance_scores)


# share of the calibrated range given to a linear ramp, which keeps the
# map strictly increasing
TIE_BREAK = 1e-3


def fit_similarity_calibration(expected_oks: np.ndarray, true_oks: np.ndarray,
                               num_knots: int = 21) -> List[List[float]]:
    """A monotone map from expected to observed OKS, fitted on held-out
    instances with ground truth (isotonic regression), as ``num_knots``
    knots of a piecewise-linear function at quantiles of the expected OKS.
    Different networks (e.g. the refiners of cross-validation folds)
    estimate on different scales; calibrated, their estimates rank
    instances on one.

    Args:
        expected_oks (np.ndarray): (N,) the refiner's expected OKS.
        true_oks (np.ndarray): (N,) the instances' OKS against their
            ground truth.
        num_knots (int): Knots of the map (at least 2).

    Returns:
        list[list[float]]: ``[xs, ys]``, both increasing
        (``test_cfg.rescore_calibration``).
    """
    x, y = np.asarray(expected_oks, np.float64), np.asarray(true_oks, np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2 or num_knots < 2:
        raise ValueError(f'need two (N,) arrays with N >= 2 and num_knots >= 2, got '
                         f'{x.shape}, {y.shape}, {num_knots}')
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError('the expected and true OKS must be finite')
    order = np.argsort(x, kind='stable')
    fitted = isotonic_regression(y[order]).x
    xs = np.unique(np.quantile(x, np.linspace(0, 1, num_knots)))
    if len(xs) < 2:
        raise ValueError('the expected OKS are all equal: nothing to calibrate')
    ys = np.maximum.accumulate(np.interp(xs, x[order], fitted))
    # strictly increasing: flat stretches of the isotonic fit would tie the
    # instances in them, and lose the estimate's ranking there
    ys = ys * (1 - TIE_BREAK) + TIE_BREAK * np.linspace(0, 1, len(xs))
    return [xs.tolist(), ys.tolist()]


def calibrated_similarity(expected_oks: Tensor, calibration: Sequence[Sequence[float]]) -> Tensor:
    """``expected_oks`` (B,) through the piecewise-linear map ``[xs, ys]``
    of :func:`fit_similarity_calibration` (constant beyond its ends)."""
    xs = torch.as_tensor(calibration[0], dtype=expected_oks.dtype, device=expected_oks.device)
    ys = torch.as_tensor(calibration[1], dtype=expected_oks.dtype, device=expected_oks.device)
    if xs.ndim != 1 or xs.shape != ys.shape or len(xs) < 2 or not bool((xs[1:] > xs[:-1]).all()):
        raise ValueError('the calibration must be [xs, ys]: two equally long lists, xs '
                         'increasing, at least 2 knots')
    x = expected_oks.clamp(xs[0], xs[-1])
    i = torch.searchsorted(xs, x.contiguous(), right=True).clamp(1, len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return (y0 + (x - x0) / (x1 - x0) * (y1 - y0)).clamp(0, 1)
