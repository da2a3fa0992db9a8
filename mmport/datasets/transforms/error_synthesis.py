"""Corrupt ground-truth poses the way pose detectors err (PoseFix)."""
import json
from collections import defaultdict
from typing import Dict, Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpose.registry import TRANSFORMS

from .randomness import RandomSource

ERROR_TYPES = ('good', 'jitter', 'inversion', 'swap', 'miss')
# Keypoint-similarity bands of each error type (PoseFix / Ronchi & Perona):
# a joint's error d relates to its OKS term ks = exp(-d^2 / (2 s^2 k^2)).
KS_BANDS = {'good': (0.85, 1.0), 'jitter': (0.5, 0.85), 'miss': (0.05, 0.5)}
# Detector-like confidence range of each error type.
SCORE_RANGES = {'good': (0.6, 1.0), 'jitter': (0.35, 0.8), 'inversion': (0.15, 0.6),
                'swap': (0.15, 0.6), 'miss': (0.0, 0.4)}


def ks_to_distance(ks: np.ndarray, scale: float, sigma: np.ndarray) -> np.ndarray:
    """Pixel distance whose OKS term is ``ks`` for object scale ``s`` (sqrt
    of the area) and per-joint ``sigma`` (COCO's k = 2 sigma)."""
    k = 2 * np.asarray(sigma)
    return k * scale * np.sqrt(-2 * np.log(np.clip(ks, 1e-6, 1.0)))


def synthesize_errors(keypoints: np.ndarray, visible: np.ndarray, area: float,
                      sigmas: np.ndarray, flip_indices: Sequence[int],
                      probs: np.ndarray, rng: np.random.Generator,
                      neighbours: Optional[np.ndarray] = None,
                      occluded: Optional[np.ndarray] = None,
                      occluded_factor: float = 3.0):
    """Corrupt one pose.

    Args:
        keypoints (np.ndarray): Ground truth (K, 2).
        visible (np.ndarray): (K,) > 0 where labelled.
        area (float): Instance area (s^2 of OKS).
        sigmas (np.ndarray): Per-joint OKS sigmas (K,).
        flip_indices (sequence[int]): Left/right partner of each joint.
        probs (np.ndarray): (K, 5) probabilities of ``ERROR_TYPES`` per joint.
        rng (np.random.Generator): Random source.
        neighbours (np.ndarray, optional): Other persons' keypoints (M, K, 3)
            in the same image, for ``swap``; without them swap acts as miss.
        occluded (np.ndarray, optional): bool (K,), labelled-but-occluded
            joints; their non-good probabilities are multiplied by
            ``occluded_factor`` (detectors err most where joints are hidden).
        occluded_factor (float): See ``occluded``.

    Returns:
        tuple: corrupted keypoints (K, 2), confidences (K,), error type
        index per joint (K,) into ``ERROR_TYPES``.
    """
    num_k = len(keypoints)
    probs = np.array(probs, np.float64)
    if occluded is not None:
        probs[occluded, 1:] *= occluded_factor
        probs[occluded, 0] = np.clip(1 - probs[occluded, 1:].sum(1), 0, None)
    probs /= probs.sum(1, keepdims=True)
    u = rng.random(num_k)[:, None]
    kind = (u > np.cumsum(probs, 1)).sum(1)
    kind = np.minimum(kind, len(ERROR_TYPES) - 1)
    scale = np.sqrt(max(float(area), 1.0))
    out = keypoints.astype(np.float64).copy()

    def displace(idx, band):
        ks = rng.uniform(*KS_BANDS[band], len(idx))
        dist = ks_to_distance(ks, scale, sigmas[idx])
        angle = rng.uniform(0, 2 * np.pi, len(idx))
        return np.stack([np.cos(angle), np.sin(angle)], 1) * dist[:, None]

    small = lambda idx: displace(idx, 'good')  # noqa: E731
    for t, name in enumerate(ERROR_TYPES):
        idx = np.flatnonzero(kind == t)
        if not len(idx):
            continue
        if name in KS_BANDS:
            out[idx] += displace(idx, name)
        elif name == 'inversion':
            partner = np.asarray(flip_indices)[idx]
            usable = (partner != idx) & (visible[partner] > 0)
            out[idx[usable]] = keypoints[partner[usable]] + small(idx[usable])
            kind[idx[~usable]] = ERROR_TYPES.index('miss')
            out[idx[~usable]] += displace(idx[~usable], 'miss')
        elif name == 'swap':
            done = np.zeros(len(idx), bool)
            if neighbours is not None and len(neighbours):
                for n, j in enumerate(idx):
                    # the nearest labelled joint of another person
                    cand = neighbours[..., :2].reshape(-1, 2)[neighbours[..., 2].reshape(-1) > 0]
                    if len(cand):
                        near = cand[np.argmin(np.linalg.norm(cand - keypoints[j], axis=1))]
                        out[j] = near + small(np.array([j]))[0]
                        done[n] = True
            kind[idx[~done]] = ERROR_TYPES.index('miss')
            out[idx[~done]] += displace(idx[~done], 'miss')
    scores = np.empty(num_k)
    for t, name in enumerate(ERROR_TYPES):
        idx = kind == t
        scores[idx] = rng.uniform(*SCORE_RANGES[name], idx.sum())
    return out, scores, kind


@TRANSFORMS.register_module()
class SynthesizePoseErrors(BaseTransform):
    """Make the refiner's input by corrupting the ground truth like a
    detector: jitter, inversion (left/right swap of a joint), swap (with a
    nearby person's joint), miss, at OKS-radius-based distances (PoseFix's
    published scheme), each with a detector-like confidence. Joints the
    ground truth marks occluded (COCO v=1) are the most likely corrupted.

    Required keys: ``keypoints`` (1, K, 2), ``keypoints_visible`` (1, K),
    ``bbox`` (1, 4), ``sigmas``, ``flip_indices``; optional ``area``,
    ``keypoints_occluded`` (1, K), ``img_id``.
    Added keys: ``input_keypoints`` (1, K, 2), ``input_keypoint_scores``
    (1, K), ``error_types`` (1, K) (indices into ``ERROR_TYPES``),
    ``input_is_init`` (False).

    Args:
        probs (dict): Probability of each non-good error type, a float for
            all joints or a per-joint list. 'good' takes the rest.
        occluded_factor (float): Multiplier of error probabilities at
            occluded joints.
        ann_file (str, optional): COCO annotation file from which the other
            persons of the image are read, for ``swap``.
        prob (float): Probability of corrupting a sample at all (otherwise
            the input is the ground truth with 'good' noise).
        metainfo (dict, optional): MMPose metainfo giving the OKS ``sigmas``
            (e.g. ``dict(from_file='configs/_base_/datasets/coco.py')``);
            MMPose datasets do not put sigmas into samples.
        seed (int, optional): Seed of per-sample draws (tests, fixed
            corruption of held-out data): each sample always gets the same
            draw, for any number of dataloader workers (see
            :class:`RandomSource`). Default: numpy's global state.

    Unlabelled joints (v=0) get a position inside the box and a low score,
    as a detector would still output something there.
    """

    def __init__(self,
                 probs: Optional[Dict[str, Union[float, Sequence[float]]]] = None,
                 occluded_factor: float = 3.0, ann_file: Optional[str] = None,
                 prob: float = 1.0, metainfo: Optional[dict] = None,
                 seed: Optional[int] = None):
        self.probs = {'jitter': 0.10, 'inversion': 0.03, 'swap': 0.03, 'miss': 0.05,
                      **(probs or {})}
        unknown = set(self.probs) - set(ERROR_TYPES[1:])
        if unknown:
            raise ValueError(f'unknown error types {sorted(unknown)}; known: {ERROR_TYPES[1:]}')
        self.occluded_factor = occluded_factor
        self.ann_file = ann_file
        self.prob = prob
        self.sigmas = None
        if metainfo is not None:
            from mmpose.datasets.datasets.utils import parse_pose_metainfo
            self.sigmas = np.asarray(parse_pose_metainfo(dict(metainfo))['sigmas'], np.float64)
        self._random = RandomSource(seed)
        self._persons = None

    def _prob_table(self, num_k: int) -> np.ndarray:
        table = np.zeros((num_k, len(ERROR_TYPES)))
        for t, name in enumerate(ERROR_TYPES[1:], start=1):
            table[:, t] = np.broadcast_to(np.asarray(self.probs[name], np.float64), (num_k,))
        if (table < 0).any() or (table[:, 1:].sum(1) > 1).any():
            raise ValueError('error probabilities must be >= 0 and sum to at most 1 per joint')
        table[:, 0] = 1 - table[:, 1:].sum(1)
        return table

    def _neighbours(self, results: dict) -> Optional[np.ndarray]:
        if self.ann_file is None or results.get('img_id') is None:
            return None
        if self._persons is None:
            with open(self.ann_file) as f:
                anns = json.load(f)['annotations']
            persons = defaultdict(list)
            for a in anns:
                if a.get('num_keypoints', 0) > 0:
                    persons[a['image_id']].append((a['id'], np.reshape(a['keypoints'], (-1, 3))))
            self._persons = persons
        others = [k for i, k in self._persons.get(results['img_id'], []) if i != results.get('id')]
        return np.stack(others).astype(np.float64) if others else None

    def transform(self, results: dict) -> dict:
        rng = self._random.generator(results)
        kpts = results['keypoints'][0]
        num_k = len(kpts)
        sigmas = self.sigmas if self.sigmas is not None else np.asarray(
            results.get('sigmas', ()), np.float64)
        if sigmas.shape != (num_k,):
            raise KeyError(f'SynthesizePoseErrors needs {num_k} OKS sigmas: pass '
                           'metainfo=dict(from_file=...)')
        bbox = results['bbox'][0]
        area = results.get('area')
        area = float(np.asarray(area).reshape(-1)[0]) if area is not None else float(
            np.prod(bbox[2:] - bbox[:2]))
        occluded = results.get('keypoints_occluded')
        table = self._prob_table(num_k)
        if rng.random() >= self.prob:
            table[:] = 0
            table[:, 0] = 1
        out, scores, kind = synthesize_errors(
            kpts, results['keypoints_visible'][0], area, sigmas, results['flip_indices'],
            table, rng, self._neighbours(results),
            None if occluded is None else np.asarray(occluded[0], bool), self.occluded_factor)
        unlabelled = results['keypoints_visible'][0] <= 0
        if unlabelled.any():
            centre, half = (bbox[:2] + bbox[2:]) / 2, (bbox[2:] - bbox[:2]) / 2
            out[unlabelled] = centre + rng.uniform(-0.5, 0.5, (unlabelled.sum(), 2)) * half
            scores[unlabelled] = rng.uniform(0.0, 0.3, unlabelled.sum())
            kind[unlabelled] = ERROR_TYPES.index('miss')
        results['input_keypoints'] = out[None].astype(np.float32)
        results['input_keypoint_scores'] = scores[None].astype(np.float32)
        results['error_types'] = kind[None]
        results['input_is_init'] = False
        return results
