"""The metric a fit is chosen and judged by, from what the annotations give.

* ``'PCKh@0.5'``: annotations with MPII's ``head_size`` (16 joints: MPII's
  usual total, pelvis and thorax left out);
* ``'PCK@0.2'``: annotations with a ``torso_size`` (LSP's benchmark);
* ``'AP'``: COCO keypoint results of a skeleton with OKS sigmas, whose
  annotations have an ``area``;
* ``'EPE'``: otherwise (mean pixel error of the labelled joints).

Pure numpy, except AP, which xtcocotools computes
(:func:`mmport.evaluation.coco_keypoint_ap`).
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from mmport.evaluation.functional import MPII_PCKH_EXCLUDED, coco_keypoint_ap, pckh

METRICS = ('PCKh@0.5', 'PCK@0.2', 'AP', 'EPE')
# the Welsch loss scale of a fit, as a share of the metric's tolerance: the
# loss saturates a little beyond the tolerance, where a miss stays a miss
LOSS_SCALE_PER_TOLERANCE = 0.75


@dataclass
class FitTargets:
    """The ground truth of N fitted persons, to score them (never to refine).

    Attributes:
        metric (str): One of ``METRICS``.
        gt (np.ndarray): (N, K, 2) pixels.
        visibility (np.ndarray): (N, K): > 0 where labelled.
        tolerance (np.ndarray, optional): (N,) pixels: ``0.5 * head_size``
            (PCKh), ``0.2 * torso_size`` (PCK), the distance at which an
            average joint's keypoint similarity is 0.5 (AP); None for EPE.
        annotations (list[dict], optional): Per person, its COCO annotation
            (AP only).
        images (list[dict], optional): The annotation file's images (AP).
        sigmas (sequence[float], optional): OKS sigmas (AP).
    """
    metric: str
    gt: np.ndarray
    visibility: np.ndarray
    tolerance: Optional[np.ndarray] = None
    annotations: Optional[List[dict]] = None
    images: Optional[List[dict]] = None
    sigmas: Optional[Sequence[float]] = None


def choose_metric(annotations: List[dict], num_keypoints: int, coco_results: bool,
                  sigmas: Optional[Sequence[float]]) -> str:
    """The metric the annotations allow (see the module docstring)."""
    if annotations and all('head_size' in a for a in annotations):
        return 'PCKh@0.5'
    if annotations and all('torso_size' in a for a in annotations):
        return 'PCK@0.2'
    if coco_results and sigmas is not None and len(sigmas) == num_keypoints and all(
            a.get('area', 0) > 0 for a in annotations):
        return 'AP'
    return 'EPE'


def build_targets(annotations: List[dict], images: List[dict], metric: str,
                  sigmas: Optional[Sequence[float]] = None) -> FitTargets:
    """The targets of persons whose matched annotations are ``annotations``."""
    kpts = np.array([a['keypoints'] for a in annotations], np.float64).reshape(
        len(annotations), -1, 3)
    tolerance = None
    if metric == 'PCKh@0.5':
        tolerance = 0.5 * np.array([a['head_size'] for a in annotations], np.float64)
    elif metric == 'PCK@0.2':
        tolerance = 0.2 * np.array([a['torso_size'] for a in annotations], np.float64)
    elif metric == 'AP':
        # OKS = exp(-d^2 / (2 area (2 sigma)^2)) is 0.5 at d = 2 sigma sqrt(2 ln2 area)
        area = np.array([a['area'] for a in annotations], np.float64)
        tolerance = 2 * float(np.mean(sigmas)) * np.sqrt(2 * np.log(2) * area)
    return FitTargets(metric, kpts[..., :2], kpts[..., 2], tolerance,
                      annotations if metric == 'AP' else None,
                      images if metric == 'AP' else None, sigmas)


def subset(targets: FitTargets, idx: np.ndarray) -> FitTargets:
    pick = (lambda a: None if a is None else a[idx])  # noqa: E731
    return FitTargets(targets.metric, targets.gt[idx], targets.visibility[idx],
                      pick(targets.tolerance),
                      None if targets.annotations is None else
                      [targets.annotations[i] for i in idx],
                      targets.images, targets.sigmas)


def joint_errors_px(pred: np.ndarray, targets: FitTargets) -> np.ndarray:
    """(N, K) pixel errors; NaN where unlabelled, inf where not finite."""
    err = np.linalg.norm(np.asarray(pred, np.float64) - targets.gt, axis=-1)
    err = np.nan_to_num(err, nan=np.inf)
    return np.where(targets.visibility > 0, err, np.nan)


def epe(pred: np.ndarray, targets: FitTargets) -> float:
    err = joint_errors_px(pred, targets)
    return float(np.nanmean(np.where(np.isinf(err), np.nan, err)))


def metric_value(pred: np.ndarray, targets: FitTargets,
                 instance_scores: Optional[np.ndarray] = None) -> float:
    """The metric of predictions ``pred`` (N, K, 2) of the persons of
    ``targets``; AP ranks them by ``instance_scores`` (N,)."""
    labelled = targets.visibility > 0
    if targets.metric == 'PCKh@0.5':
        exclude = MPII_PCKH_EXCLUDED if pred.shape[1] == 16 else ()
        return pckh(pred, targets.gt, labelled, 2 * targets.tolerance, 0.5, exclude)
    if targets.metric == 'PCK@0.2':
        return pckh(pred, targets.gt, labelled, 5 * targets.tolerance, 0.2)
    if targets.metric == 'AP':
        return ap(pred, targets, instance_scores)
    return epe(pred, targets)


def ap(pred: np.ndarray, targets: FitTargets, instance_scores: np.ndarray) -> float:
    """COCO keypoint AP of the persons against their own annotations (on
    their images only)."""
    image_ids = {a['image_id'] for a in targets.annotations}
    coco = dict(images=[im for im in targets.images if im['id'] in image_ids],
                annotations=[dict(a, iscrowd=0, category_id=1) for a in targets.annotations],
                categories=[dict(id=1, name='person')])
    records = [dict(image_id=a['image_id'], category_id=1, score=float(s),
                    keypoints=np.concatenate([p, np.ones((len(p), 1))], 1).reshape(-1).tolist())
               for a, p, s in zip(targets.annotations, pred, instance_scores)]
    return coco_keypoint_ap(coco, records, targets.sigmas)['AP']


def gain(before: float, after: float, metric: str) -> float:
    """The improvement from ``before`` to ``after``: points for PCK / PCKh
    / AP (x100), the relative EPE decrease in percent."""
    if metric == 'EPE':
        return 100.0 * (before - after) / before if before > 0 else 0.0
    return 100.0 * (after - before)


def loss_scale(targets: FitTargets, frame_sides: np.ndarray) -> Optional[float]:
    """The Welsch loss scale (frame units) of a fit for a tolerance metric;
    None for EPE (trained on the euclidean distance it measures)."""
    if targets.tolerance is None:
        return None
    ok = np.isfinite(targets.tolerance) & (targets.tolerance > 0) & (frame_sides > 0)
    if not ok.any():
        return None
    return float(LOSS_SCALE_PER_TOLERANCE * np.median(targets.tolerance[ok] / frame_sides[ok]))


def moved_outcomes(init: np.ndarray, refined: np.ndarray, targets: FitTargets) -> dict:
    """Joints moved (share of all labelled), and of those, the share made
    worse (by more than 1% of the tolerance, or 0.5 px for EPE)."""
    e0, e1 = joint_errors_px(init, targets), joint_errors_px(refined, targets)
    labelled = targets.visibility > 0
    moved = labelled & (np.abs(np.nan_to_num(refined - init)).sum(-1) > 1e-6)
    slack = (0.01 * targets.tolerance[:, None] if targets.tolerance is not None
             else np.full((len(init), 1), 0.5))
    worse = moved & (e1 > e0 + slack)
    return dict(moved=float(moved.sum() / max(labelled.sum(), 1)),
                worsened=float(worse.sum() / max(moved.sum(), 1)),
                moved_joints=int(moved.sum()))
