"""The MPII models' real errors as COCO-17 donors for the body refiner."""
import numpy as np
import pytest

from benchmarks.mpii_body_donors import (MPII_PREDICTIONS, MPII_TO_COCO,
                                         SCALE_PER_BOX_SIDE, mpii_error_donors,
                                         similarity_scores)
from benchmarks.score_free_training import to_box_frame
from mmport.datasets.transforms.error_synthesis import SCORE_RANGES, ks_to_distance

SIGMAS = np.array([.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107,
                   .107, .087, .087, .089, .089])


@pytest.mark.parametrize('ks,band', [(0.95, 'good'), (0.7, 'jitter'), (0.2, 'miss')])
def test_similarity_scores_follow_the_error_band(ks, band):
    dist = ks_to_distance(np.full(17, ks), SCALE_PER_BOX_SIDE, SIGMAS)
    errors = np.stack([dist, np.zeros(17)], -1)[None].repeat(50, 0)
    errors[0, 3] = np.nan
    scores = similarity_scores(errors, SIGMAS, np.random.default_rng(0))
    lo, hi = SCORE_RANGES[band]
    known = np.isfinite(scores)
    assert not known[0, 3] and known.sum() == 50 * 17 - 1
    assert (scores[known] >= lo).all() and (scores[known] <= hi).all()


def test_mpii_error_donors_map_limb_errors_to_coco_joints():
    persons = np.arange(40)
    errors, scores = mpii_error_donors(SIGMAS, seed=0, persons=persons, models=('hg_s8',))
    data = np.load(MPII_PREDICTIONS)
    box = data['val_bbox'][persons].astype(np.float64)
    want = (to_box_frame(data['pred_hg_s8'][persons].astype(np.float64), box)
            - to_box_frame(data['val_gt'][persons].astype(np.float64), box))
    labelled = (data['val_visibility'][persons] > 0) & (data['predicted_hg_s8'][persons] > 0)
    assert labelled.any(1).all()  # so no person is dropped and rows line up
    assert errors.shape == (40, 17, 2) and scores.shape == (40, 17)
    for m, c in MPII_TO_COCO.items():
        ok = labelled[:, m]
        np.testing.assert_allclose(errors[ok, c], want[ok, m], rtol=1e-5, atol=1e-6)
        assert np.isnan(errors[~ok, c]).all() and np.isnan(scores[~ok, c]).all()
    # the face joints, which MPII does not label, get a small error and a good score
    face_err = np.linalg.norm(errors[:, :5], axis=-1)
    assert (face_err <= ks_to_distance(0.85, SCALE_PER_BOX_SIDE, SIGMAS[:5]) + 1e-6).all()
    assert (scores[:, :5] >= SCORE_RANGES['good'][0]).all()
