"""Metric maths for refinement (pure numpy, on top of MMPose's functions)."""
from typing import Dict, Optional, Sequence

import numpy as np
from mmpose.evaluation.functional import keypoint_auc, keypoint_epe, keypoint_pck_accuracy


def pose_errors(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray,
                pck_thr: float = 0.7,
                norm_factors: Optional[Dict[str, np.ndarray]] = None,
                auc_norm_factor: float = 30.0,
                auc_num_thrs: int = 20) -> Dict[str, float]:
    """EPE, PCK under each normalisation, and AUC, with MMPose's maths.

    Args:
        pred (np.ndarray): Predicted keypoints, (N, K, 2) pixels.
        gt (np.ndarray): Ground truth, (N, K, 2).
        mask (np.ndarray): bool (N, K): the joints to score.
        pck_thr (float): PCK threshold, relative to the normalisation size.
        norm_factors (dict[str, np.ndarray]): Name ('bbox', 'head',
            'torso') -> per-instance normalisation sizes (N, 2). Instances
            whose size is not positive are left out of that PCK.
        auc_norm_factor (float): AUC's normalisation in pixels (MMPose's
            hand configs use 30).
        auc_num_thrs (int): AUC thresholds.

    Returns:
        dict: ``EPE``, ``PCK@thr`` / ``PCKh@thr`` / ``tPCK@thr`` per
        normalisation, ``AUC`` and ``count`` (joints scored). Values are NaN
        when no joint is scored.
    """
    mask = np.asarray(mask, bool)
    out: Dict[str, float] = {'count': int(mask.sum())}
    names = {'bbox': 'PCK', 'head': 'PCKh', 'torso': 'tPCK'}
    if not mask.any():
        out['EPE'] = out['AUC'] = float('nan')
        for name in (norm_factors or {}):
            out[f'{names.get(name, name)}@{pck_thr}'] = float('nan')
        return out
    out['EPE'] = float(keypoint_epe(pred, gt, mask))
    for name, factor in (norm_factors or {}).items():
        factor = np.asarray(factor, np.float64).reshape(len(pred), 2)
        ok = (factor > 0).all(1) & mask.any(1)
        key = f'{names.get(name, name)}@{pck_thr}'
        if not ok.any():
            out[key] = float('nan')
            continue
        _, acc, _ = keypoint_pck_accuracy(pred[ok], gt[ok], mask[ok], pck_thr, factor[ok])
        out[key] = float(acc)
    out['AUC'] = float(keypoint_auc(pred, gt, mask, auc_norm_factor, auc_num_thrs))
    return out


def refinement_report(init: np.ndarray, refined: np.ndarray, gt: np.ndarray,
                      visible: np.ndarray, replaced: np.ndarray,
                      occluded: Optional[np.ndarray] = None,
                      **kwargs) -> Dict[str, Dict[str, float]]:
    """Score the initial and the refined predictions side by side.

    Args:
        init (np.ndarray): Detector keypoints, (N, K, 2).
        refined (np.ndarray): Refined keypoints, (N, K, 2).
        gt (np.ndarray): Ground truth, (N, K, 2).
        visible (np.ndarray): (N, K), > 0 where the ground truth is labelled.
        replaced (np.ndarray): bool (N, K), joints the refiner changed.
        occluded (np.ndarray, optional): bool (N, K), labelled-but-occluded
            joints (COCO v=1).
        **kwargs: Passed to :func:`pose_errors`.

    Returns:
        dict: ``{'init': {...}, 'refined': {...}}``; each holds the
        :func:`pose_errors` keys over all labelled joints, plus ``EPE`` /
        ``PCK`` keys suffixed ``_replaced`` and ``_occluded`` for those subsets.
    """
    visible = np.asarray(visible) > 0
    subsets = {'': visible, '_replaced': visible & np.asarray(replaced, bool)}
    if occluded is not None:
        subsets['_occluded'] = visible & np.asarray(occluded, bool)
    report = {}
    for name, pred in (('init', init), ('refined', refined)):
        scores: Dict[str, float] = {}
        for suffix, mask in subsets.items():
            for key, value in pose_errors(pred, gt, mask, **kwargs).items():
                scores[key + suffix] = value
        report[name] = scores
    return report


def coco_keypoint_ap(coco_gt, records: list, sigmas) -> Dict[str, float]:
    """COCO keypoint AP of results records, with xtcocotools' COCOeval.

    Args:
        coco_gt (dict | str): COCO annotation dict or file.
        records (list[dict]): COCO keypoint results (``image_id``,
            ``category_id``, ``keypoints`` [x, y, s] * K, ``score``). Only the
            images that have records are evaluated.
        sigmas (sequence[float]): Per-joint OKS sigmas.

    Returns:
        dict: ``AP``, ``AP@0.5``, ``AP@0.75``, ``AR``.
    """
    import contextlib
    import io

    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval
    if not records:
        return {'AP': float('nan'), 'AP@0.5': float('nan'), 'AP@0.75': float('nan'),
                'AR': float('nan')}
    with contextlib.redirect_stdout(io.StringIO()):  # COCO's own prints
        if isinstance(coco_gt, str):
            gt = COCO(coco_gt)
        else:
            gt = COCO()
            gt.dataset = coco_gt
            gt.createIndex()
        dt = gt.loadRes(records)
        ev = COCOeval(gt, dt, 'keypoints', np.asarray(sigmas), use_area=True)
        ev.params.imgIds = sorted({r['image_id'] for r in records})
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {'AP': float(ev.stats[0]), 'AP@0.5': float(ev.stats[1]),
            'AP@0.75': float(ev.stats[2]), 'AR': float(ev.stats[5])}


def instance_similarity(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray,
                        areas: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """Each instance's OKS against its own ground truth, as COCO computes
    it: the mean over labelled joints of ``exp(-d^2 / (2 area (2 sigma)^2))``.

    Args:
        pred (np.ndarray): (N, K, 2) pixels; a non-finite joint scores 0.
        gt (np.ndarray): (N, K, 2) pixels.
        visible (np.ndarray): (N, K), > 0 where the ground truth is labelled.
        areas (np.ndarray): (N,) the instances' OKS areas (pixels^2).
        sigmas (sequence[float]): (K,) COCO's per-joint sigmas.

    Returns:
        np.ndarray: (N,) OKS in [0, 1]; NaN for an instance with no labelled
        joint.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    labelled = np.asarray(visible) > 0
    var = (2 * np.asarray(sigmas, np.float64)) ** 2
    if pred.shape != gt.shape or labelled.shape != pred.shape[:2] or var.shape != pred.shape[1:2]:
        raise ValueError(f'shapes do not match: pred {pred.shape}, gt {gt.shape}, visible '
                         f'{labelled.shape}, sigmas {var.shape}')
    d2 = np.nan_to_num(((pred - gt) ** 2).sum(-1), nan=np.inf)
    area = np.asarray(areas, np.float64)[:, None] + np.spacing(1)
    ks = np.exp(-d2 / var / area / 2)
    count = labelled.sum(1)
    with np.errstate(invalid='ignore'):
        return np.where(count > 0, (ks * labelled).sum(1) / count, np.nan)


def move_outcomes(init: np.ndarray, refined: np.ndarray, gt: np.ndarray,
                  visible: np.ndarray, candidates: np.ndarray) -> Dict[str, float]:
    """How the joints a refiner moved fared: the do-no-harm measure.

    Args:
        init (np.ndarray): Detector keypoints, (N, K, 2).
        refined (np.ndarray): Refined keypoints, (N, K, 2).
        gt (np.ndarray): Ground truth, (N, K, 2).
        visible (np.ndarray): (N, K), > 0 where the ground truth is labelled.
        candidates (np.ndarray): bool (N, K), the joints the refiner could
            have moved (all predicted joints, or those below its threshold).

    Returns:
        dict: ``replaced_fraction`` (labelled candidate joints that moved,
        over all labelled candidates), ``worsened_fraction`` and
        ``improved_fraction`` (of the moved labelled joints, those whose
        error grew / shrank), and ``moved`` (their count). Fractions of no
        joint are NaN.
    """
    labelled = (np.asarray(visible) > 0) & np.asarray(candidates, bool)
    moved = labelled & (np.abs(refined - init).sum(-1) > 0)
    before = np.linalg.norm(init - gt, axis=-1)
    after = np.linalg.norm(refined - gt, axis=-1)
    count = int(moved.sum())

    def share(mask, total):
        return float(mask.sum() / total) if total else float('nan')

    return {'replaced_fraction': share(moved, labelled.sum()),
            'worsened_fraction': share(moved & (after > before), count),
            'improved_fraction': share(moved & (after < before), count),
            'moved': count}


# MPII's usual PCKh total leaves out pelvis and thorax (joints 6 and 7 in
# MMPose's MPII order)
MPII_PCKH_EXCLUDED = (6, 7)


def pckh(pred: np.ndarray, gt: np.ndarray, labelled: np.ndarray, head_size: np.ndarray,
         thr: float = 0.5, exclude: Sequence[int] = ()) -> float:
    """PCKh: the fraction of labelled joints within ``thr`` head sizes of the
    ground truth (a joint counts when its error is <= thr * head_size, as
    MPII's evaluation counts it).

    Args:
        pred (np.ndarray): Predicted keypoints, (N, K, 2) pixels; a
            non-finite joint counts as wrong.
        gt (np.ndarray): Ground truth, (N, K, 2).
        labelled (np.ndarray): bool (N, K), the joints to score.
        head_size (np.ndarray): (N,) per-instance head size, pixels.
        thr (float): Threshold in head sizes.
        exclude (sequence[int]): Joints left out (MPII's usual total:
            ``MPII_PCKH_EXCLUDED``).

    Returns:
        float: PCKh in [0, 1], NaN when no joint is scored.
    """
    mask = np.asarray(labelled, bool).copy()
    mask[:, list(exclude)] = False
    if not mask.any():
        return float('nan')
    err = np.linalg.norm(np.asarray(pred, np.float64) - gt, axis=-1)
    hit = np.nan_to_num(err, nan=np.inf) <= thr * np.asarray(head_size, np.float64)[:, None]
    return float(hit[mask].mean())


def mpii_pose_errors(pred: np.ndarray, gt: np.ndarray, visibility: np.ndarray,
                     head_size: np.ndarray) -> Dict[str, float]:
    """The MPII benchmark's scores of one set of predictions.

    Args:
        pred (np.ndarray): (N, K, 2) pixels.
        gt (np.ndarray): (N, K, 2) pixels.
        visibility (np.ndarray): (N, K): 2 visible, 1 labelled but occluded,
            0 not labelled.
        head_size (np.ndarray): (N,) pixels.

    Returns:
        dict: ``PCKh@0.5`` (MPII's usual total, pelvis and thorax left
        out), ``PCKh@0.5_all`` (all labelled joints), ``EPE`` (mean pixel
        error of the labelled joints), ``EPE_occluded`` (of the occluded
        ones; NaN if none), ``count``, ``count_occluded``.
    """
    visibility = np.asarray(visibility)
    labelled, occluded = visibility > 0, visibility == 1
    err = np.linalg.norm(np.asarray(pred, np.float64) - gt, axis=-1)
    return {
        'PCKh@0.5': pckh(pred, gt, labelled, head_size, 0.5, MPII_PCKH_EXCLUDED),
        'PCKh@0.5_all': pckh(pred, gt, labelled, head_size, 0.5),
        'EPE': float(err[labelled].mean()) if labelled.any() else float('nan'),
        'EPE_occluded': float(err[occluded].mean()) if occluded.any() else float('nan'),
        'count': int(labelled.sum()),
        'count_occluded': int(occluded.sum()),
    }

