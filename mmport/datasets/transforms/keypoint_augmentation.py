"""Geometric augmentation of keypoints alone (no image needed)."""
from typing import Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmpose.registry import TRANSFORMS

from .randomness import RandomSource
from .refiner_inputs import bbox_size

# Every per-joint coordinate array a keypoints-only sample may carry.
COORD_KEYS = ('keypoints', 'input_keypoints', 'init_keypoints')
# Every per-joint array whose joints are reordered by a flip.
JOINT_KEYS = COORD_KEYS + ('keypoints_visible', 'input_keypoint_scores',
                           'init_keypoint_scores', 'joint_mask',
                           'keypoints_occluded')


@TRANSFORMS.register_module()
class KeypointRandomAffine(BaseTransform):
    """Rotate, scale and shift all keypoint sets of a sample together, about
    its box centre. The box stays as it is, so scaling the pose is the same
    as the detector having drawn a tighter or looser box.

    Required keys: ``bbox`` (1, 4) and any of ``keypoints``,
    ``input_keypoints``, ``init_keypoints`` (1, K, 2). Modified: those.

    Args:
        rotate_factor (float): Rotation is uniform in +-rotate_factor degrees.
        scale_range (tuple[float, float]): Uniform scale range.
        shift_factor (float): Shift is uniform in +-shift_factor box sizes.
        prob (float): Probability of applying the transform.
        seed (int, optional): Seed of per-sample draws (tests, fixed
            corruption of held-out data): each sample always gets the same
            draw, for any number of dataloader workers (see
            :class:`RandomSource`). Default: numpy's global state.
    """

    def __init__(self, rotate_factor: float = 30.0,
                 scale_range: Tuple[float, float] = (0.8, 1.2),
                 shift_factor: float = 0.05, prob: float = 1.0,
                 seed: Optional[int] = None):
        self.rotate_factor = rotate_factor
        self.scale_range = scale_range
        self.shift_factor = shift_factor
        self.prob = prob
        self._random = RandomSource(seed)

    def transform(self, results: dict) -> dict:
        rng = self._random.generator(results)
        if rng.random() >= self.prob:
            return results
        bbox = results['bbox']
        centre = (bbox[:, :2] + bbox[:, 2:]) / 2
        theta = np.deg2rad(rng.uniform(-self.rotate_factor, self.rotate_factor))
        scale = rng.uniform(*self.scale_range)
        shift = rng.uniform(-self.shift_factor, self.shift_factor, 2) * bbox_size(bbox)[:, None]
        c, s = np.cos(theta), np.sin(theta)
        matrix = scale * np.array([[c, -s], [s, c]], np.float32)
        for key in COORD_KEYS:
            if results.get(key) is not None:
                rel = results[key] - centre[:, None]
                results[key] = (rel @ matrix.T + centre[:, None]
                                + shift[:, None]).astype(np.float32)
        return results


@TRANSFORMS.register_module()
class KeypointRandomFlip(BaseTransform):
    """Mirror all keypoint sets horizontally about the box centre and swap
    left/right joints with the metainfo's ``flip_indices``.

    Required keys: ``bbox`` (1, 4), ``flip_indices`` (K,). Modified: every
    per-joint array present (coordinates, visibility, scores, masks).

    Args:
        prob (float): Flip probability.
        seed (int, optional): Seed of per-sample draws (tests, fixed
            corruption of held-out data): each sample always gets the same
            draw, for any number of dataloader workers (see
            :class:`RandomSource`). Default: numpy's global state.
    """

    def __init__(self, prob: float = 0.5, seed: Optional[int] = None):
        self.prob = prob
        self._random = RandomSource(seed)

    def transform(self, results: dict) -> dict:
        if self._random.generator(results).random() >= self.prob:
            results['flip'] = False
            return results
        flip_indices = np.asarray(results['flip_indices'])
        num_keypoints = results['keypoints'].shape[1]
        if len(flip_indices) != num_keypoints:
            raise ValueError(f'flip_indices has {len(flip_indices)} entries for '
                             f'{num_keypoints} keypoints')
        centre_x = (results['bbox'][:, 0] + results['bbox'][:, 2]) / 2
        for key in JOINT_KEYS:
            value = results.get(key)
            if value is None:
                continue
            value = value[:, flip_indices].copy()
            if key in COORD_KEYS:
                value[..., 0] = 2 * centre_x[:, None] - value[..., 0]
            results[key] = value
        results['flip'] = True
        return results
