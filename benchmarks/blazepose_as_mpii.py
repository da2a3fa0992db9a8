"""BlazePose's real body predictions as MPII-16 poses: a method of another
kind for the MPII refiners.

The held-out-model run of :mod:`benchmarks.benchmark_mpii` refines an MPII
model that its refiner was not trained on, but the three MPII models share
a dataset and a kind of decoder. The bundled BlazePose predictions on LSP,
LSP-Extended and COCO photos (``data/body_real``) come from another
training set and another kind of network, with per-joint conventions of
their own: the held-out run also refines them, as a check on a method
unlike any it was trained or validated on (nothing is chosen on them).

BlazePose's COCO-17 limb joints map to MPII's twelve limb joints
(:data:`benchmarks.mpii_body_donors.MPII_TO_COCO`). MPII's other four
joints are derived from BlazePose's own joints, as a method might fill
joints it does not detect: pelvis and thorax are the midpoints of the hips
and of the shoulders (where MPII's ground truth has them), upper neck and
head top lie on the line from the thorax to the midpoint of the ears, at
the distances from the thorax that MPII's training ground truth gives in
torso lengths (``NECK_PER_TORSO``, ``HEAD_TOP_PER_TORSO``). Only the twelve
limb joints have ground truth, so only they count; their PCKh tolerance is
half a head size, estimated from the ground truth's torso length
(``HEAD_SIZE_PER_TORSO``, MPII validation persons' median ratio).
"""
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .body_data import BLAZEPOSE_SETS, load_blazepose_set, merge_sets
from .mpii_body_donors import MPII_TO_COCO

# MPII-16 joints (configs/_base_/datasets/mpii.py) and COCO-17 joints used
PELVIS, THORAX, UPPER_NECK, HEAD_TOP = 6, 7, 8, 9
COCO_SHOULDERS, COCO_HIPS, COCO_EARS = (5, 6), (11, 12), (3, 4)
# medians over MPII's training ground truth (persons with the eight joints
# involved labelled): distance from the shoulders' midpoint to the upper
# neck and to the head top, in lengths from that midpoint to the hips'
NECK_PER_TORSO = 0.128
HEAD_TOP_PER_TORSO = 0.710
# median over MPII's validation ground truth: head size (the annotated head
# box's, as PCKh uses it) over the same torso length
HEAD_SIZE_PER_TORSO = 0.436


@dataclass
class MPIIPoses:
    """Predictions with ground truth in MPII's 16-joint layout.

    Attributes:
        pred (np.ndarray): Predictions (N, 16, 2), pixels.
        gt (np.ndarray): Ground truth (N, 16, 2), pixels (0 where
            unlabelled).
        visibility (np.ndarray): int (N, 16), as MPII's: 2 visible, 1
            labelled but occluded, 0 not labelled.
        bbox (np.ndarray): The boxes BlazePose ran on (N, 4) xyxy (the
            refiner's frames).
        head_size (np.ndarray): (N,) PCKh's head size.
    """
    pred: np.ndarray
    gt: np.ndarray
    visibility: np.ndarray
    bbox: np.ndarray
    head_size: np.ndarray


def _midpoint(points: np.ndarray, pair: Sequence[int]) -> np.ndarray:
    return points[:, list(pair)].mean(1)


def coco_to_mpii(pred: np.ndarray) -> np.ndarray:
    """COCO-17 predictions (N, 17, 2) -> MPII-16 (N, 16, 2): the twelve
    limb joints mapped, pelvis, thorax, upper neck and head top derived
    (see the module docstring)."""
    pred = np.asarray(pred, np.float64)
    out = np.zeros((len(pred), 16, 2))
    for mpii, coco in MPII_TO_COCO.items():
        out[:, mpii] = pred[:, coco]
    thorax, pelvis = _midpoint(pred, COCO_SHOULDERS), _midpoint(pred, COCO_HIPS)
    torso = np.linalg.norm(thorax - pelvis, axis=-1, keepdims=True)
    up = _midpoint(pred, COCO_EARS) - thorax
    up = up / np.maximum(np.linalg.norm(up, axis=-1, keepdims=True), 1e-6)
    out[:, PELVIS], out[:, THORAX] = pelvis, thorax
    out[:, UPPER_NECK] = thorax + NECK_PER_TORSO * torso * up
    out[:, HEAD_TOP] = thorax + HEAD_TOP_PER_TORSO * torso * up
    return out


def blazepose_mpii_poses(sets: Sequence[str] = BLAZEPOSE_SETS,
                         root: str = 'data') -> MPIIPoses:
    """The bundled BlazePose predictions of ``sets`` as MPII poses: the
    persons with a prediction and with both shoulders and both hips
    labelled (for the head size)."""
    body = merge_sets([load_blazepose_set(name, root) for name in sets])
    keep = body.has_pred & body.visible[:, list(COCO_SHOULDERS + COCO_HIPS)].all(1)
    gt17 = body.keypoints[keep].astype(np.float64)
    visibility17 = np.where(body.occluded, 1, np.where(body.visible, 2, 0))[keep]
    gt, visibility = np.zeros((keep.sum(), 16, 2)), np.zeros((keep.sum(), 16), np.int64)
    for mpii, coco in MPII_TO_COCO.items():
        gt[:, mpii], visibility[:, mpii] = gt17[:, coco], visibility17[:, coco]
    torso = np.linalg.norm(_midpoint(gt17, COCO_SHOULDERS) - _midpoint(gt17, COCO_HIPS),
                           axis=-1)
    return MPIIPoses(coco_to_mpii(body.pred[keep]), gt, visibility,
                     body.frames[keep].astype(np.float64), HEAD_SIZE_PER_TORSO * torso)
