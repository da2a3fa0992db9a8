"""MPII metrics (PCKh with head sizes, EPE, EPE of occluded joints) on
hand-computed cases."""
import numpy as np
import pytest

from mmport.evaluation import MPII_PCKH_EXCLUDED, mpii_pose_errors, pckh


def two_persons():
    """16-joint persons at the origin; person 0 head size 10, person 1 head
    size 20; errors put by hand."""
    gt = np.zeros((2, 16, 2))
    pred = np.zeros((2, 16, 2))
    vis = np.full((2, 16), 2)
    pred[0, 0] = [3, 4]      # 5 px, <= 0.5 * 10: counted
    pred[0, 1] = [6, 0]      # 6 px > 5: missed
    pred[0, 6] = [100, 0]    # pelvis, 100 px: left out of the usual total
    pred[1, 2] = [0, 10]     # 10 px <= 0.5 * 20: counted (boundary)
    pred[1, 3] = [0, 10.5]   # missed
    vis[1, 3] = 1            # ... and occluded
    vis[1, 4] = 0            # unlabelled: never scored
    pred[1, 4] = [1e6, 0]
    vis[0, 5] = 1            # occluded, 0 px
    return pred, gt, vis, np.array([10.0, 20.0])


def test_pckh_by_hand():
    pred, gt, vis, head = two_persons()
    # usual total: 14 + 13 scored joints (pelvis, thorax out; one unlabelled),
    # 2 missed (joint 1 of person 0, joint 3 of person 1)
    assert pckh(pred, gt, vis > 0, head, 0.5, MPII_PCKH_EXCLUDED) == pytest.approx(25 / 27)
    # all labelled: 16 + 15, 3 missed (the pelvis too)
    assert pckh(pred, gt, vis > 0, head, 0.5) == pytest.approx(28 / 31)
    # a tighter threshold: 0.25 head sizes = 2.5 px / 5 px also misses the
    # 5 px and the 10 px joints
    assert pckh(pred, gt, vis > 0, head, 0.25, MPII_PCKH_EXCLUDED) == pytest.approx(23 / 27)


def test_pckh_non_finite_prediction_is_wrong_and_empty_is_nan():
    pred, gt, vis, head = two_persons()
    pred[0, 0] = np.nan
    assert pckh(pred, gt, vis > 0, head, 0.5, MPII_PCKH_EXCLUDED) == pytest.approx(24 / 27)
    assert np.isnan(pckh(pred, gt, np.zeros_like(vis, bool), head))


def test_mpii_pose_errors_by_hand():
    pred, gt, vis, head = two_persons()
    out = mpii_pose_errors(pred, gt, vis, head)
    assert out['PCKh@0.5'] == pytest.approx(25 / 27)
    assert out['PCKh@0.5_all'] == pytest.approx(28 / 31)
    # labelled errors: 5 + 6 + 100 + 10 + 10.5 over 31 joints
    assert out['EPE'] == pytest.approx(131.5 / 31)
    # occluded: person 1 joint 3 (10.5 px) and person 0 joint 5 (0 px)
    assert out['EPE_occluded'] == pytest.approx(10.5 / 2)
    assert (out['count'], out['count_occluded']) == (31, 2)

