"""Train a score-free PORT refiner on poses in their box frames (plain PyTorch).

The refiner reads positions only. Its training inputs mix three sources,
all in the instance's box frame (centre at 0, longer box side 1):

* real predictions of persons whose ground truth is labelled (the method's
  own errors on its own poses, PoseFix);
* ground-truth poses of other persons with a real prediction's error
  vectors (box-size units) laid on them ("transplants": real errors on new
  poses);
* ground-truth poses with synthetic errors (jitter, misses, left/right
  swaps).

Every sample is flipped, rotated, scaled and shifted at random. The loss is
the refiner's own :meth:`PORTRefiner.pose_loss` with every joint marked
doubtful (score-free: no joint is trusted a priori).
"""
import argparse
import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch


def to_box_frame(points: np.ndarray, bboxes: np.ndarray) -> np.ndarray:
    """Pixels (N, K, 2) -> box frame (N, K, 2): centred on each box (N, 4)
    xyxy and divided by its longer side (like
    :func:`mmport.structures.normalization.to_frame` without rotation)."""
    centre = (bboxes[:, :2] + bboxes[:, 2:]) / 2
    size = (bboxes[:, 2:] - bboxes[:, :2]).max(1)
    return (points - centre[:, None]) / size[:, None, None]


@dataclass
class PoseSource:
    """Poses in box frames.

    Attributes:
        gt (np.ndarray): Ground truth (N, K, 2); values at unlabelled joints
            are ignored.
        labelled (np.ndarray): bool (N, K).
        pred (np.ndarray, optional): A method's predictions (N, K, 2).
    """
    gt: np.ndarray
    labelled: np.ndarray
    pred: Optional[np.ndarray] = None

    def error_vectors(self, centred: bool = False) -> np.ndarray:
        """Prediction errors (N, K, 2) in box sizes, NaN where unlabelled;
        ``centred`` removes their :func:`common_offset`."""
        err = np.where(self.labelled[..., None], self.pred - self.gt, np.nan)
        return err - common_offset(err) if centred else err


def common_offset(errors: np.ndarray) -> np.ndarray:
    """The offset (2,) a method adds to every joint of every pose: the
    median of its error vectors (N, K, 2) over all known (finite) joints,
    per axis.

    Such an offset is a coordinate convention (e.g. a half-pixel shift of a
    heatmap decoder), not an error of the pose's shape: the pose alone does
    not show it, so a refiner that learns one method's offset applies it to
    every input, and moves the joints of a method without that offset away
    from the truth. Donors for refiners that must serve unseen methods are
    centred on it.
    """
    known = np.isfinite(errors).all(-1)
    if not known.any():
        return np.zeros(2)
    return np.median(errors[known], 0)


@dataclass
class SamplerConfig:
    """Mix of the training inputs and their augmentation.

    Attributes:
        real_prob (float): Share of a batch taken from real predictions.
        transplant_prob (float): Of the ground-truth samples, the share with
            transplanted real errors (the others get synthetic errors).
        jitter (tuple[float, float]): Range of the per-pose std of synthetic
            jitter, box sizes (also fills transplanted joints whose error is
            unknown).
        miss_prob (float): Per-joint probability of a synthetic miss.
        miss_range (tuple[float, float]): Its distance range, box sizes.
        swap_prob (float): Per-joint probability that a synthetic joint
            lands on its left/right partner.
        outlier_prob (float): Per-joint probability, on every sample
            (transplanted ones too), of a far outlier: the input lies
            ``outlier_range`` box sizes from the box centre in a random
            direction, like a joint a results file sets to the image origin
            where the method gave none, or one a method places off the body.
            A refiner for models it has not seen must not let such a joint
            pull its neighbours. 0 draws nothing (the stream of the other
            draws is unchanged).
        outlier_range (tuple[float, float]): Distance range of an outlier
            from the box centre, box sizes.
        flip_prob (float): Probability of a left/right flip.
        rotate (float): Std of the rotation, degrees (clipped at 2 std).
        scale (tuple[float, float]): Scale range.
        shift (float): Maximum shift, box sizes.
    """
    real_prob: float = 0.3
    transplant_prob: float = 0.7
    jitter: Sequence[float] = (0.005, 0.03)
    miss_prob: float = 0.04
    miss_range: Sequence[float] = (0.05, 0.4)
    swap_prob: float = 0.02
    outlier_prob: float = 0.0
    outlier_range: Sequence[float] = (0.6, 2.5)
    flip_prob: float = 0.5
    rotate: float = 15.0
    scale: Sequence[float] = (0.8, 1.2)
    shift: float = 0.05


class ScoreFreeSampler:
    """Draws training batches (inputs, targets, labelled) in box frames.

    Args:
        gt_poses (PoseSource): Ground-truth poses that receive transplanted or
            synthetic errors.
        real (PoseSource, optional): Real predictions with their ground
            truth: used as they are, and as donors of error vectors.
        donors (np.ndarray, optional): Error vectors (M, K, 2) in box sizes
            (NaN where unknown) to transplant; default those of ``real``.
        flip_indices (sequence[int]): Left/right partner of each joint.
        cfg (SamplerConfig): The mix.
    """

    def __init__(self, gt_poses: PoseSource, real: Optional[PoseSource],
                 flip_indices: Sequence[int], donors: Optional[np.ndarray] = None,
                 cfg: SamplerConfig = SamplerConfig()):
        self.gt_poses = gt_poses
        self.real = real
        self.donors = donors if donors is not None else (
            real.error_vectors() if real is not None else None)
        self.flip = np.asarray(flip_indices)
        self.cfg = cfg

    def _ground_truth_samples(self, rng: np.random.Generator, n: int):
        c = self.cfg
        idx = rng.integers(len(self.gt_poses.gt), size=n)
        gt, lab = self.gt_poses.gt[idx].copy(), self.gt_poses.labelled[idx].copy()
        k = gt.shape[1]
        sigma = rng.uniform(*c.jitter, (n, 1, 1))
        inp = gt + rng.normal(size=gt.shape) * sigma
        # synthetic: misses and left/right swaps
        miss = rng.random((n, k)) < c.miss_prob
        angle = rng.uniform(0, 2 * np.pi, (n, k))
        dist = rng.uniform(*c.miss_range, (n, k))
        inp += miss[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1) * dist[..., None]
        swap = (rng.random((n, k)) < c.swap_prob) & lab[:, self.flip]
        inp = np.where(swap[..., None], gt[:, self.flip] + (inp - gt), inp)
        if self.donors is not None and len(self.donors):
            transplant = rng.random(n) < c.transplant_prob
            err = self.donors[rng.integers(len(self.donors), size=n)]
            known = transplant[:, None] & np.isfinite(err).all(-1)
            inp = np.where(known[..., None], gt + np.nan_to_num(err), inp)
        # joints without ground truth: somewhere in the box (ignored by the loss)
        inp = np.where(lab[..., None], inp, rng.uniform(-0.5, 0.5, gt.shape))
        if c.outlier_prob > 0:
            far = rng.random((n, k)) < c.outlier_prob
            angle = rng.uniform(0, 2 * np.pi, (n, k))
            dist = rng.uniform(*c.outlier_range, (n, k))
            inp = np.where(far[..., None],
                           np.stack([np.cos(angle), np.sin(angle)], -1) * dist[..., None], inp)
        gt = np.where(lab[..., None], gt, 0.0)
        return inp, gt, lab

    def _augment(self, rng: np.random.Generator, inp: np.ndarray, gt: np.ndarray,
                 lab: np.ndarray):
        c = self.cfg
        n = len(inp)
        flip = rng.random(n) < c.flip_prob
        mirror = np.where(flip, -1.0, 1.0)[:, None, None] * np.array([1.0, 0.0]) + np.array(
            [0.0, 1.0])
        inp = np.where(flip[:, None, None], (inp * mirror)[:, self.flip], inp)
        gt = np.where(flip[:, None, None], (gt * mirror)[:, self.flip], gt)
        lab = np.where(flip[:, None], lab[:, self.flip], lab)
        theta = np.deg2rad(np.clip(rng.normal(0, c.rotate, n), -2 * c.rotate, 2 * c.rotate))
        s = rng.uniform(*c.scale, n)
        rot = np.stack([np.stack([np.cos(theta), -np.sin(theta)], -1),
                        np.stack([np.sin(theta), np.cos(theta)], -1)], -2) * s[:, None, None]
        shift = rng.uniform(-c.shift, c.shift, (n, 1, 2))
        return (np.einsum('nij,nkj->nki', rot, inp) + shift,
                np.einsum('nij,nkj->nki', rot, gt) + shift, lab)

    def sample(self, rng: np.random.Generator, batch_size: int):
        """One batch: inputs, targets (B, K, 2) float32 tensors in box
        frames and the labelled mask (B, K) bool tensor."""
        n_real = rng.binomial(batch_size, self.cfg.real_prob) if self.real is not None else 0
        parts = []
        if n_real:
            idx = rng.integers(len(self.real.gt), size=n_real)
            lab = self.real.labelled[idx]
            parts.append((self.real.pred[idx], np.where(lab[..., None], self.real.gt[idx], 0.0),
                          lab))
        if batch_size - n_real:
            parts.append(self._ground_truth_samples(rng, batch_size - n_real))
        inp, gt, lab = (np.concatenate(p) for p in zip(*parts))
        inp, gt, lab = self._augment(rng, inp, gt, lab)
        return (torch.from_numpy(inp).float(), torch.from_numpy(gt).float(),
                torch.from_numpy(lab))


UNIT_BOX = (-0.5, -0.5, 0.5, 0.5)  # the box frame is its own frame


def build_refiner(cfg: dict):
    """A refiner from its config dict, through MMPose's model registry (with
    mmport's modules registered)."""
    import mmport  # noqa: F401  (registers mmport's modules)
    from mmengine.registry import init_default_scope
    from mmpose.registry import MODELS
    init_default_scope('mmpose')
    return MODELS.build(copy.deepcopy(cfg))


def train_score_free(model, sampler: ScoreFreeSampler, iters: int = 3000,
                     batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 0.05,
                     warmup: int = 100, seed: int = 0,
                     log: Optional[Callable[[str], None]] = None,
                     log_every: int = 500) -> Dict[str, float]:
    """Train ``model`` (a score-free ``PORTRefiner``) in place with AdamW,
    linear warm-up and cosine decay (the repo's keypoints-only schedule).

    Every joint is marked doubtful; the loss is ``model.pose_loss`` summed
    over its terms.

    Returns:
        dict: ``seconds`` and the last logged ``loss``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def factor(it):
        if it < warmup:
            return 0.01 + 0.99 * it / warmup
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (it - warmup) / max(1, iters - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    boxes = torch.tensor(UNIT_BOX).expand(batch_size, 4)
    model.train()
    start, running = time.perf_counter(), []
    for it in range(iters):
        inp, gt, lab = sampler.sample(rng, batch_size)
        doubtful = torch.ones(lab.shape, dtype=torch.bool)
        losses = model.pose_loss(inp, torch.zeros(lab.shape), boxes, doubtful, gt, lab)
        loss = sum(v for k, v in losses.items() if k.startswith('loss'))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running.append(loss.item())
        if log is not None and (it + 1) % log_every == 0:
            log(f'iter {it + 1}/{iters}: loss {np.mean(running[-log_every:]):.4f} '
                f'({time.perf_counter() - start:.0f} s)')
    model.eval()
    return {'seconds': time.perf_counter() - start, 'loss': float(np.mean(running[-100:]))}


def probability(text: str) -> float:
    """argparse type of a probability (``--flip-prob``): a number in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f'must be in [0, 1], got {value}')
    return value


def add_training_arguments(parser: argparse.ArgumentParser, iters: int,
                           flip_prob: float = SamplerConfig.flip_prob) -> None:
    """The command-line options of a score-free training (seed, schedule,
    network size, what the error head estimates, mirrored poses), with
    ``iters`` iterations and ``flip_prob`` by default."""
    parser.add_argument('--seed', type=int, default=0,
                        help='training seed (and fold split, where there is one)')
    parser.add_argument('--iters', type=int, default=iters, help='training iterations')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--embed-dim', type=int, default=64)
    parser.add_argument('--num-heads', type=int, default=2)
    parser.add_argument('--quality-kind', default='keypoint_similarity',
                        choices=('keypoint_similarity', 'log_distance'),
                        help='what the error head estimates for the do-no-harm gate')
    parser.add_argument('--flip-prob', type=probability, default=flip_prob,
                        help='share of the training poses mirrored (SamplerConfig.flip_prob)')
