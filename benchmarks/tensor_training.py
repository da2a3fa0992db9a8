"""Train a PORTRefiner on whole-array data in a plain PyTorch loop.

The research harness of the body benchmarks: inputs are built batch-wise on
tensors (real predictions, transplanted real errors, synthetic PoseFix
errors), augmented and masked as mmport's transforms do, and the loss is
``PORTRefiner.pose_loss`` itself, so a refiner trained here is the same
model the mmengine pipeline trains and refines through the same
``PORTRefiner.refine``.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from mmport.datasets.transforms.error_synthesis import SynthesizePoseErrors, synthesize_errors
from mmport.fitting.fit_training import mirror_some, random_similarities, train_on_batches

from .body_data import BodySet


def box_frames(bboxes: np.ndarray):
    """Centres (N, 2) and sizes (N,) of xyxy boxes (the refiner's frame)."""
    return (bboxes[:, :2] + bboxes[:, 2:]) / 2, (bboxes[:, 2:] - bboxes[:, :2]).max(1)


def normalized(points: np.ndarray, bboxes: np.ndarray) -> np.ndarray:
    centre, size = box_frames(bboxes)
    return (points - centre[:, None]) / size[:, None, None]


@dataclass
class TrainingPool:
    """Training persons in their box frames (box centre 0, longer side 1).

    Attributes:
        gt (np.ndarray): (M, K, 2) ground truth; visible (M, K) bool.
        real (np.ndarray): (M, K, 2) real predictions (NaN: none), real_scores (M, K).
        synthetic (np.ndarray): (M, S, K, 2) PoseFix-corrupted ground truth
            (NaN: none), synthetic_scores (M, S, K).
        donor_errors (np.ndarray): (D, K, 2) real errors (prediction - truth;
            NaN where unlabelled), donor_scores (D, K).
    """
    gt: np.ndarray
    visible: np.ndarray
    real: np.ndarray
    real_scores: np.ndarray
    synthetic: np.ndarray
    synthetic_scores: np.ndarray
    donor_errors: np.ndarray
    donor_scores: np.ndarray


def synthetic_bank(body: BodySet, metainfo: dict, copies: int, seed: int,
                   neighbours: Optional[Dict[int, np.ndarray]] = None):
    """``copies`` PoseFix corruptions of every person (M, S, K, 2) and their
    scores (M, S, K), in pixels; unlabelled joints get a position inside the
    box and a low score, as ``SynthesizePoseErrors`` does."""
    rng = np.random.default_rng(seed)
    probs = SynthesizePoseErrors(metainfo=metainfo['spec'])._prob_table(body.keypoints.shape[1])
    sigmas, flip = np.asarray(metainfo['sigmas']), metainfo['flip_indices']
    out = np.empty((len(body), copies) + body.keypoints.shape[1:], np.float32)
    scores = np.empty((len(body), copies, body.keypoints.shape[1]), np.float32)
    for i in range(len(body)):
        others = None
        if neighbours is not None:
            group = neighbours.get(int(body.image_ids[i]))
            others = group[group[:, 0, 0] != i][:, 1:] if group is not None else None
        for c in range(copies):
            kp, sc, _ = synthesize_errors(body.keypoints[i], body.visible[i], body.areas[i],
                                          sigmas, flip, probs, rng, neighbours=others,
                                          occluded=body.occluded[i])
            hidden = ~body.visible[i]
            if hidden.any():
                x1, y1, x2, y2 = body.bboxes[i]
                kp[hidden] = rng.uniform([x1, y1], [x2, y2], (hidden.sum(), 2))
                sc[hidden] = rng.uniform(0.0, 0.3, hidden.sum())
            out[i, c], scores[i, c] = kp, sc
    return out, scores


def image_neighbours(body: BodySet) -> Dict[int, np.ndarray]:
    """Per image id, its P persons as an array (P, 1 + K, 3): row 0 holds
    the person's index in ``body`` (at [0, 0]), rows 1..K its joints
    (x, y, labelled)."""
    groups: Dict[int, list] = {}
    for i, img in enumerate(body.image_ids):
        groups.setdefault(int(img), []).append(i)
    out = {}
    for img, idx in groups.items():
        rows = np.zeros((len(idx), 1 + body.keypoints.shape[1], 3), np.float32)
        rows[:, 0, 0] = idx
        rows[:, 1:, :2] = body.keypoints[idx]
        rows[:, 1:, 2] = body.visible[idx]
        out[img] = rows
    return out


def build_pool(persons: Sequence[BodySet], donors: Sequence[BodySet], metainfo: dict,
               synthetic_copies: int = 0, seed: int = 0,
               donor_errors: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> TrainingPool:
    """Training arrays of ``persons`` in their frames (``BodySet.frames``); real errors of the
    ``donors`` (persons with predictions) for transplanting, and
    ``donor_errors``: more box-frame errors (D, K, 2) (NaN: unknown) with
    their scores (D, K) (e.g. :func:`benchmarks.mpii_body_donors.mpii_error_donors`)."""
    gts, vis, real, real_sc, syn, syn_sc = [], [], [], [], [], []
    k = persons[0].keypoints.shape[1]
    for n, body in enumerate(persons):
        gts.append(normalized(body.keypoints, body.frames))
        vis.append(body.visible)
        if body.pred is not None:
            real.append(normalized(body.pred, body.frames))
            real_sc.append(body.pred_scores)
        else:
            real.append(np.full((len(body), k, 2), np.nan, np.float32))
            real_sc.append(np.zeros((len(body), k), np.float32))
        copies = max(synthetic_copies, 1)
        if synthetic_copies:
            kp, sc = synthetic_bank(body, metainfo, synthetic_copies, seed + n,
                                    image_neighbours(body))
            syn.append(normalized(kp.reshape(len(body), -1, 2),
                                  body.frames).reshape(len(body), copies, k, 2))
            syn_sc.append(sc)
        else:
            syn.append(np.full((len(body), copies, k, 2), np.nan, np.float32))
            syn_sc.append(np.zeros((len(body), copies, k), np.float32))
    errs, errs_sc = [], []
    for body in donors:
        ok = body.has_pred
        err = normalized(body.pred[ok], body.frames[ok]) - normalized(body.keypoints[ok],
                                                                      body.frames[ok])
        err[~body.visible[ok]] = np.nan
        errs.append(err)
        errs_sc.append(body.pred_scores[ok])
    if donor_errors is not None:
        errs.append(donor_errors[0])
        errs_sc.append(donor_errors[1])
    cat = lambda x: np.concatenate(x).astype(np.float32)  # noqa: E731
    return TrainingPool(cat(gts), np.concatenate(vis), cat(real), cat(real_sc), cat(syn),
                        cat(syn_sc),
                        cat(errs) if errs else np.zeros((0, k, 2), np.float32),
                        cat(errs_sc) if errs_sc else np.zeros((0, k), np.float32))


@dataclass
class TrainingSettings:
    iters: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 200
    # probabilities of the input sources (renormalised per person over the
    # sources it has)
    real: float = 0.25
    transplant: float = 0.5
    synthetic: float = 0.25
    score_thr: float = 0.5           # joints below it are the doubtful ones
    # share of synthetic joints whose score is drawn uniformly, unrelated to
    # their error (real detectors' scores are only loosely calibrated)
    score_noise: float = 0.0
    erase_ratio: Sequence[float] = (0.1, 0.2)
    erase_doubtful: bool = False     # erase among all joints, not only confident ones
    rotate: float = 30.0
    scale: Sequence[float] = (0.8, 1.2)
    shift: float = 0.05
    flip_prob: float = 0.5
    seed: int = 0


class BatchMaker:
    """Draws training batches (inputs, scores, mask, target, visible) on tensors."""

    def __init__(self, pool: TrainingPool, settings: TrainingSettings,
                 flip_indices: Sequence[int]):
        self.p, self.s = pool, settings
        self.rng = np.random.default_rng(settings.seed)
        self.flip = np.asarray(flip_indices)
        k = pool.gt.shape[1]
        # per joint, the known real errors, to fill a donor's unlabelled joints
        self.joint_bank = [(pool.donor_errors[np.isfinite(pool.donor_errors[:, j, 0]), j],
                            pool.donor_scores[np.isfinite(pool.donor_errors[:, j, 0]), j])
                           for j in range(k)]
        has_real = np.isfinite(pool.real).all((1, 2))
        has_syn = np.isfinite(pool.synthetic[:, 0]).all((1, 2))
        weights = np.stack([has_real * settings.real,
                            np.full(len(pool.gt),
                                    settings.transplant * (len(pool.donor_errors) > 0)),
                            has_syn * settings.synthetic], 1).astype(np.float64)
        if (weights.sum(1) == 0).any():
            raise ValueError('some training persons have no possible input source')
        self.source_cdf = np.cumsum(weights / weights.sum(1, keepdims=True), 1)

    def _transplanted(self, gt: np.ndarray):
        rng = self.rng
        donors = rng.integers(len(self.p.donor_errors), size=len(gt))
        err = self.p.donor_errors[donors].copy()
        sc = self.p.donor_scores[donors].copy()
        for j, (bank_err, bank_sc) in enumerate(self.joint_bank):
            unknown = ~np.isfinite(err[:, j, 0])
            if unknown.any() and len(bank_err):
                pick = rng.integers(len(bank_err), size=unknown.sum())
                err[unknown, j], sc[unknown, j] = bank_err[pick], bank_sc[pick]
        return gt + np.nan_to_num(err), sc

    def batch(self):
        p, s, rng = self.p, self.s, self.rng
        idx = rng.integers(len(p.gt), size=s.batch_size)
        gt, vis = p.gt[idx].copy(), p.visible[idx].copy()
        source = (rng.random(len(idx))[:, None] > self.source_cdf[idx]).sum(1)
        inp = np.empty_like(gt)
        sc = np.empty(gt.shape[:2], np.float32)
        syn_copy = rng.integers(p.synthetic.shape[1], size=len(idx))
        fallback = np.where(np.isfinite(p.real[idx]), p.real[idx],
                            p.synthetic[idx, syn_copy])
        fallback_sc = np.where(np.isfinite(p.real[idx, :, 0]), p.real_scores[idx],
                               p.synthetic_scores[idx, syn_copy])
        for src in range(3):
            rows = source == src
            if not rows.any():
                continue
            if src == 0:
                inp[rows], sc[rows] = p.real[idx[rows]], p.real_scores[idx[rows]]
            elif src == 1:
                inp[rows], sc[rows] = self._transplanted(gt[rows])
            else:
                inp[rows] = p.synthetic[idx[rows], syn_copy[rows]]
                sc[rows] = p.synthetic_scores[idx[rows], syn_copy[rows]]
                if s.score_noise:
                    noisy = rows[:, None] & (rng.random(sc.shape) < s.score_noise)
                    sc[noisy] = rng.random(noisy.sum())
        # joints without ground truth: the detector's (or PoseFix's) guess,
        # else the centroid at confidence 0 (never in the loss)
        hidden = ~vis & (source > 0)[:, None]
        inp[hidden], sc[hidden] = fallback[hidden], fallback_sc[hidden]
        still = ~np.isfinite(inp[..., 0])
        if still.any():
            centroid = np.nanmean(np.where(vis[..., None], gt, np.nan), 1)
            inp[still] = np.nan_to_num(np.broadcast_to(centroid[:, None], inp.shape)[still])
            sc[still] = 0
        return self._augment_and_mask(inp, sc, gt, vis)

    def _augment_and_mask(self, inp, sc, gt, vis):
        s, rng, n = self.s, self.rng, len(inp)
        mirror_some(rng, s.flip_prob, self.flip, (inp, gt), (sc, vis))
        rot, shift = random_similarities(rng, n, s.rotate, s.scale, s.shift)
        inp = np.einsum('nij,nkj->nki', rot, inp) + shift
        gt = np.einsum('nij,nkj->nki', rot, gt) + shift
        doubtful = sc < s.score_thr
        ratio = rng.uniform(*s.erase_ratio, (n, 1))
        erasable = vis if s.erase_doubtful else ~doubtful & vis
        erased = erasable & (rng.random(sc.shape) < ratio)
        kept = ~doubtful & ~erased
        centroid = (inp * kept[..., None]).sum(1) / np.maximum(kept.sum(1), 1)[:, None]
        inp = np.where(erased[..., None], centroid[:, None], inp)
        sc = np.where(erased, 0, sc)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
        return t(inp), t(sc), torch.from_numpy(doubtful | erased), t(gt), torch.from_numpy(vis)


def train_refiner(refiner, pool: TrainingPool, settings: TrainingSettings,
                  flip_indices: Sequence[int], log=None):
    """Train ``refiner`` (a PORTRefiner) in place; returns seconds spent."""
    torch.manual_seed(settings.seed)
    maker = BatchMaker(pool, settings, flip_indices)

    def report(it, losses):
        if log is not None and (it + 1) % 500 == 0:
            log(f'iter {it + 1}/{settings.iters} ' + ' '.join(
                f'{k}={v.item():.4f}' for k, v in losses.items()))
    return train_on_batches(refiner, maker.batch, settings.iters, settings.batch_size,
                            settings.lr, settings.weight_decay, settings.warmup, report)
