"""Fine-tune a PORT refiner on one detector's real errors (and pretrain one by
masked joint modeling on ground-truth poses): a plain PyTorch loop on whole
arrays, with the loss of ``PORTRefiner.pose_loss`` itself.

Every person is given in its frame (the box its detector ran on: centre 0,
longer side 1, as ``mmport.structures.normalization.to_frame`` maps it), so
a batch needs no boxes of its own.
"""
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

# a frame of side 1 around the origin: the batch's poses are already in it
UNIT_BOX = (-0.5, -0.5, 0.5, 0.5)


@dataclass
class FramedPersons:
    """M persons in their frames.

    Attributes:
        gt (np.ndarray): (M, K, 2) ground truth (anything where unlabelled).
        visible (np.ndarray): bool (M, K), labelled joints.
        pred (np.ndarray, optional): (M, K, 2) the detector's keypoints
            (None: ground truth only, for masked joint modeling).
        pred_scores (np.ndarray, optional): (M, K) their confidences (zeros
            for a detector without them).
    """
    gt: np.ndarray
    visible: np.ndarray
    pred: Optional[np.ndarray] = None
    pred_scores: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.gt)

    def subset(self, idx: np.ndarray) -> 'FramedPersons':
        pick = (lambda a: None if a is None else a[idx])  # noqa: E731
        return FramedPersons(self.gt[idx], self.visible[idx], pick(self.pred),
                             pick(self.pred_scores))


@dataclass
class FitSettings:
    """How a refiner is trained on framed persons.

    Attributes:
        iters (int): Optimiser steps.
        batch_size (int): Poses per step.
        lr (float): Peak AdamW learning rate (cosine decay after warm-up).
        weight_decay (float): AdamW weight decay.
        warmup (int): Linear warm-up steps.
        real (float): Share of a batch that shows the detector's own
            predictions (where persons have them).
        transplant (float): Share that shows another training person's real
            error vector added to a ground-truth pose (more error patterns
            than persons, from the same detector).
        score_thresholds (sequence[float]): Joints below a threshold drawn
            from these are the ones to reconstruct (a value above 1: every
            joint, as a rule with ``candidates='all'`` asks at test time).
        erase_ratio (tuple[float, float]): Range of the share of the other
            labelled joints erased as well (masked joint modeling).
        noise (float): Std of the jitter, frame units, of ground-truth poses
            shown without a detector error.
        rotate (float): Max rotation, degrees; scale (tuple): scale range;
            shift (float): max shift, frame units; flip_prob (float).
        seed (int): Seed of the batches and of torch.
    """
    iters: int = 600
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 100
    real: float = 0.5
    transplant: float = 0.3
    score_thresholds: Sequence[float] = (0.3, 0.5, 0.7, 2.0)
    erase_ratio: Sequence[float] = (0.0, 0.2)
    noise: float = 0.01
    rotate: float = 20.0
    scale: Sequence[float] = (0.85, 1.15)
    shift: float = 0.05
    flip_prob: float = 0.5
    seed: int = 0


def mirror_some(rng: np.random.Generator, prob: float, flip_indices: np.ndarray,
                coords: Sequence[np.ndarray], per_joint: Sequence[np.ndarray]) -> None:
    """Mirror a random share ``prob`` of the B poses, in place: x of the
    frame-unit ``coords`` (B, K, 2) negated and left / right joints swapped
    (``flip_indices`` (K,)), the ``per_joint`` arrays (B, K) swapped alike."""
    flip = rng.random(len(coords[0])) < prob
    for a in coords:
        a[flip] = a[flip][:, flip_indices] * np.array([-1, 1], np.float32)
    for a in per_joint:
        a[flip] = a[flip][:, flip_indices]


def random_similarities(rng: np.random.Generator, n: int, rotate: float,
                        scale: Sequence[float], shift: float):
    """``n`` random rotations (within +-``rotate`` degrees) times scales (in
    the ``scale`` range), (n, 2, 2), and shifts (within +-``shift`` frame
    units), (n, 1, 2); apply as ``einsum('nij,nkj->nki', rot, x) + shift``."""
    theta = np.deg2rad(rng.uniform(-rotate, rotate, n))
    factor = rng.uniform(*scale, n)
    rot = np.stack([np.cos(theta), -np.sin(theta), np.sin(theta), np.cos(theta)],
                   1).reshape(n, 2, 2) * factor[:, None, None]
    return rot, rng.uniform(-shift, shift, (n, 1, 2))


class FitBatches:
    """Draws training batches (inputs, scores, mask, target, visible) from
    framed persons: the detector's predictions, transplanted real errors, or
    jittered ground truth, augmented and masked."""

    def __init__(self, persons: FramedPersons, settings: FitSettings,
                 flip_indices: Optional[Sequence[int]], use_scores: bool):
        if not len(persons):
            raise ValueError('no persons to train on')
        self.p, self.s, self.use_scores = persons, settings, use_scores
        self.rng = np.random.default_rng(settings.seed)
        self.flip = None if flip_indices is None else np.asarray(flip_indices)
        if persons.pred is not None:
            errors = persons.pred - persons.gt
            errors[~persons.visible] = np.nan
            self.errors, self.error_scores = errors, persons.pred_scores
        else:
            self.errors = self.error_scores = None

    def _transplanted(self, gt: np.ndarray, vis: np.ndarray):
        pick = self.rng.integers(len(self.errors), size=len(gt))
        err, sc = self.errors[pick], self.error_scores[pick]
        known = np.isfinite(err[..., 0])
        # a donor's unlabelled joint: its own score, a small jitter
        jitter = self.rng.normal(0, self.s.noise, gt.shape)
        inp = gt + np.where(known[..., None], np.nan_to_num(err), jitter)
        return inp, sc

    def batch(self):
        p, s, rng = self.p, self.s, self.rng
        n = s.batch_size
        idx = rng.integers(len(p), size=n)
        gt, vis = p.gt[idx].astype(np.float32), p.visible[idx].copy()
        inp = gt + rng.normal(0, s.noise, gt.shape)
        sc = rng.uniform(0.5, 1.0, gt.shape[:2])
        if p.pred is not None:
            u = rng.random(n)
            real = u < s.real
            inp[real], sc[real] = p.pred[idx[real]], p.pred_scores[idx[real]]
            moved = (u >= s.real) & (u < s.real + s.transplant)
            if moved.any():
                inp[moved], sc[moved] = self._transplanted(gt[moved], vis[moved])
        if not self.use_scores:
            sc = np.zeros_like(sc)
        return self._augment_and_mask(inp.astype(np.float32), sc.astype(np.float32), gt, vis)

    def _augment_and_mask(self, inp, sc, gt, vis):
        s, rng, n = self.s, self.rng, len(inp)
        if self.flip is not None:
            mirror_some(rng, s.flip_prob, self.flip, (inp, gt), (sc, vis))
        rot, shift = random_similarities(rng, n, s.rotate, s.scale, s.shift)
        rot, shift = rot.astype(np.float32), shift.astype(np.float32)
        inp = np.einsum('nij,nkj->nki', rot, inp) + shift
        gt = np.einsum('nij,nkj->nki', rot, gt) + shift
        if self.use_scores:
            thr = np.asarray(s.score_thresholds)[rng.integers(len(s.score_thresholds), size=n)]
            doubtful = sc < thr[:, None]
        else:  # no confidences: every joint is a candidate, as at test time
            doubtful = np.zeros(sc.shape, bool)
        erased = vis & ~doubtful & (rng.random(sc.shape) < rng.uniform(*s.erase_ratio, (n, 1)))
        kept = ~doubtful & ~erased
        # an erased joint shows the centroid of the kept ones at confidence 0,
        # as a dropped joint of a real detector would
        centroid = (inp * kept[..., None]).sum(1) / np.maximum(kept.sum(1), 1)[:, None]
        inp = np.where(erased[..., None], centroid[:, None], inp)
        if not self.use_scores:
            doubtful = np.ones(sc.shape, bool)
        sc = np.where(erased, 0, sc)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
        return t(inp), t(sc), torch.from_numpy(doubtful | erased), t(gt), torch.from_numpy(vis)


def fit_refiner_weights(refiner, persons: FramedPersons, settings: FitSettings,
                        progress: Optional[Callable[[int], None]] = None) -> float:
    """Train ``refiner`` (a PORTRefiner) in place on ``persons``; returns
    the seconds spent. ``progress(n)`` is called every 50 steps with the
    number of steps done since the last call."""
    torch.manual_seed(settings.seed)
    maker = FitBatches(persons, settings, refiner.flip_indices, refiner.network.use_scores)
    tick = None if progress is None else (
        lambda it, losses: progress(50) if (it + 1) % 50 == 0 else None)  # noqa: E731
    return train_on_batches(refiner, maker.batch, settings.iters, settings.batch_size,
                            settings.lr, settings.weight_decay, settings.warmup, tick)


def train_on_batches(refiner, next_batch: Callable[[], tuple], iters: int, batch_size: int,
                     lr: float, weight_decay: float, warmup: int,
                     after_step: Optional[Callable[[int, dict], None]] = None) -> float:
    """The training loop: AdamW, linear warm-up then cosine decay, the loss
    of ``refiner.pose_loss`` on batches ``next_batch()`` = (inputs, scores,
    mask, target, visible) already in unit frames. ``after_step(it,
    losses)`` is called after each step. Returns the seconds spent; the
    refiner is left in eval mode."""
    opt = torch.optim.AdamW(refiner.parameters(), lr=lr, weight_decay=weight_decay)

    def lr_at(it):
        if it < warmup:
            return (it + 1) / warmup
        t = (it - warmup) / max(iters - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    boxes = torch.tensor([UNIT_BOX]).expand(batch_size, 4)
    refiner.train()
    start = time.time()
    for it in range(iters):
        inp, sc, mask, gt, vis = next_batch()
        losses = refiner.pose_loss(inp, sc, boxes, mask, gt, vis)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if after_step is not None:
            after_step(it, losses)
    refiner.eval()
    return time.time() - start
