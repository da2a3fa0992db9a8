"""Instance scores from the refiner's own estimate of each joint's quality.

COCO keypoint AP ranks a method's instances by their ``score``: an instance
ranked above worse ones raises precision at every OKS threshold it passes.
A refiner whose error head estimates each joint's expected keypoint
similarity (``quality_kind='keypoint_similarity'``) estimates the
instance's OKS as their mean, which can rank instances better than the
detector's own score. Pure functions on tensors (fitting the calibration
on held-out data is :mod:`mmport.fitting.calibration`).
"""
from typing import Optional, Sequence

import torch
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


def calibrated_similarity(expected_oks: Tensor, calibration: Sequence[Sequence[float]]) -> Tensor:
    """``expected_oks`` (B,) through the piecewise-linear map ``[xs, ys]``
    of :func:`mmport.fitting.fit_similarity_calibration` (constant beyond its
    ends)."""
    xs = torch.as_tensor(calibration[0], dtype=expected_oks.dtype, device=expected_oks.device)
    ys = torch.as_tensor(calibration[1], dtype=expected_oks.dtype, device=expected_oks.device)
    if xs.ndim != 1 or xs.shape != ys.shape or len(xs) < 2 or not bool((xs[1:] > xs[:-1]).all()):
        raise ValueError('the calibration must be [xs, ys]: two equally long lists, xs '
                         'increasing, at least 2 knots')
    x = expected_oks.clamp(xs[0], xs[-1])
    # the knot interval of each value by comparisons, not searchsorted, so
    # that the map exports to ONNX with the rest of the rule
    i = (x[:, None] >= xs[None, :]).sum(1).clamp(1, len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return (y0 + (x - x0) / (x1 - x0) * (y1 - y0)).clamp(0, 1)
