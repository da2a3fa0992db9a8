"""Fitting the map from a refiner's expected OKS to observed OKS on
held-out instances (a rule's ``rescore.calibration``)."""
from typing import List

import numpy as np
from scipy.optimize import isotonic_regression

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
        list[list[float]]: ``[xs, ys]``, both increasing (a rule's
        ``rescore.calibration``).
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
