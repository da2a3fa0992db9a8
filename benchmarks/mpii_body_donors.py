"""Real errors of the published MPII models, as COCO-17 error donors.

A refiner meant for detectors it has never seen should learn what real
errors look like, not only PoseFix's synthetic ones. The bundled MPII
validation predictions of Tompson et al. and of stacked hourglass networks
(data/mpii) are real errors of three detectors, none of them BlazePose: the
error vector (prediction - truth) of each limb joint, in the person's box
frame, can be transplanted onto COCO ground truth (the joint definitions of
the two datasets differ, but an error vector measures a detector against
its own definition).

MPII predictions carry no per-joint confidence, so each transplanted joint
gets a detector-like score from its error's keypoint similarity, as
:func:`mmport.datasets.transforms.error_synthesis.synthesize_errors` scores
its corruptions (good / jitter / miss bands); the five face joints, which
MPII does not label, get a small error in the good band.
"""
from typing import Optional, Sequence, Tuple

import numpy as np

from mmport.datasets.transforms.error_synthesis import (KS_BANDS, SCORE_RANGES,
                                                        ks_to_distance)

from .body_data import TOPDOWN_PADDING
from .score_free_training import to_box_frame

MPII_PREDICTIONS = 'data/mpii/mpii_val_preds.npz'
MPII_MODELS = ('tompson', 'hg_s1', 'hg_s8')
# MPII joint -> COCO-17 joint, for the twelve limb joints both label
MPII_TO_COCO = {0: 16, 1: 14, 2: 12, 3: 11, 4: 13, 5: 15,
                10: 10, 11: 8, 12: 6, 13: 5, 14: 7, 15: 9}
COCO_FACE = (0, 1, 2, 3, 4)
# sqrt(OKS area) over the longer side of a person's frame (its box enlarged
# by TOPDOWN_PADDING, as a top-down detector is given it): the median of
# the bundled COCO val2017 persons, 0.69 of the annotation box's longer side
# (the OKS scale of a frame error)
SCALE_PER_BOX_SIDE = 0.69 / TOPDOWN_PADDING


def similarity_scores(errors: np.ndarray, sigmas: Sequence[float], rng: np.random.Generator,
                      scale: float = SCALE_PER_BOX_SIDE) -> np.ndarray:
    """Detector-like scores (D, K) of box-frame errors (D, K, 2): each
    joint's keypoint similarity ``exp(-d^2 / (2 s^2 k^2))`` (``k = 2
    sigma``) puts it in a band of ``KS_BANDS`` (below the jitter band:
    miss), whose ``SCORE_RANGES`` a uniform score is drawn from. NaN errors
    get NaN scores."""
    k = 2 * np.asarray(sigmas, np.float64)
    d2 = (np.asarray(errors, np.float64) ** 2).sum(-1)
    ks = np.exp(-d2 / (2 * scale ** 2 * k ** 2))
    band = np.where(ks >= KS_BANDS['good'][0], 'good',
                    np.where(ks >= KS_BANDS['jitter'][0], 'jitter', 'miss'))
    scores = np.full(d2.shape, np.nan)
    for name in ('good', 'jitter', 'miss'):
        idx = band == name
        scores[idx] = rng.uniform(*SCORE_RANGES[name], idx.sum())
    scores[~np.isfinite(d2)] = np.nan
    return scores


def mpii_error_donors(sigmas: Sequence[float], seed: int = 0,
                      persons: Optional[np.ndarray] = None, path: str = MPII_PREDICTIONS,
                      models: Sequence[str] = MPII_MODELS) -> Tuple[np.ndarray, np.ndarray]:
    """Error vectors of ``models`` on the MPII validation persons ``persons``
    (default all) in the frames of the boxes the models ran on (MPII's
    protocol boxes), in COCO-17 layout, with their scores.

    Args:
        sigmas (sequence[float]): COCO-17 OKS sigmas (17,).
        seed (int): Seed of the scores and of the face joints' errors.
        persons (np.ndarray, optional): Indices of MPII validation persons.
        path (str): The bundled MPII npz.
        models (sequence[str]): The models whose predictions give errors.

    Returns:
        tuple[np.ndarray, np.ndarray]: errors (D, 17, 2) (NaN where the
        joint is unlabelled or was not predicted) and scores (D, 17), D =
        len(models) * persons.
    """
    data = np.load(path)
    idx = np.arange(len(data['val_gt'])) if persons is None else np.asarray(persons)
    box, gt = data['val_bbox'][idx].astype(np.float64), data['val_gt'][idx].astype(np.float64)
    labelled = data['val_visibility'][idx] > 0
    rng = np.random.default_rng(seed)
    mpii, coco = np.array(list(MPII_TO_COCO)), np.array(list(MPII_TO_COCO.values()))
    errors = []
    for m in models:
        err = to_box_frame(data[f'pred_{m}'][idx].astype(np.float64), box) - to_box_frame(gt, box)
        err[~(labelled & (data[f'predicted_{m}'][idx] > 0))] = np.nan
        out = np.full((len(idx), 17, 2), np.nan)
        out[:, coco] = err[:, mpii]
        face = np.asarray(COCO_FACE)
        ks = rng.uniform(*KS_BANDS['good'], (len(idx), len(face)))
        dist = ks_to_distance(ks, SCALE_PER_BOX_SIDE, np.asarray(sigmas)[face])
        angle = rng.uniform(0, 2 * np.pi, dist.shape)
        out[:, face] = np.stack([np.cos(angle), np.sin(angle)], -1) * dist[..., None]
        errors.append(out)
    errors = np.concatenate(errors)
    keep = np.isfinite(errors[..., 0]).sum(1) > len(COCO_FACE)  # some limb joint known
    errors = errors[keep]
    return errors.astype(np.float32), similarity_scores(errors, sigmas, rng).astype(np.float32)
