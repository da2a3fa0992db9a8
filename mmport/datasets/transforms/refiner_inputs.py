"""Choose the pose the refiner sees as input during keypoints-only training."""
from typing import Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmpose.registry import TRANSFORMS

from .randomness import RandomSource

INPUT_SOURCES = ('gaussian', 'transplant')


def bbox_size(bbox: np.ndarray) -> np.ndarray:
    """Longer side of boxes (N, 4) xyxy, shape (N,)."""
    return np.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1])


@TRANSFORMS.register_module()
class SetRefinerInputs(BaseTransform):
    """Set ``input_keypoints`` / ``input_keypoint_scores``, the pose to refine.

    With probability ``init_prob`` (where the sample carries a real detector
    prediction, ``init_keypoints``), the input is that prediction with its
    real confidences: the refiner learns this detector's own error pattern
    (PoseFix). Otherwise the input is the ground truth corrupted by
    ``synthetic``:

    * ``'gaussian'``: jitter of ``jitter`` x box size, confidences drawn
      from ``score_range``;
    * ``'transplant'``: the error vectors (in box-size units) and
      confidences of a real prediction seen earlier in training (a pool of
      the last ``pool_size`` ones), laid onto this ground truth: realistic
      errors on new poses. Falls back to gaussian until the pool has entries.

    At test time (``init_prob=1``) the input is always the prediction.

    Required keys: ``keypoints`` (1, K, 2), ``bbox`` (1, 4); optionally
    ``init_keypoints`` (1, K, 2), ``init_keypoint_scores`` (1, K).
    Added keys: ``input_keypoints`` (1, K, 2), ``input_keypoint_scores``
    (1, K), ``input_is_init`` (bool).

    Args:
        init_prob (float): Probability of using the real prediction.
        synthetic (str): ``'gaussian'`` or ``'transplant'``.
        jitter (float): Std of the gaussian jitter, in box sizes.
        score_range (tuple[float, float]): Range of gaussian-mode confidences.
        pool_size (int): Real errors kept for transplanting.
        seed (int, optional): Seed of a private generator (tests).
    """

    def __init__(self, init_prob: float = 0.5, synthetic: str = 'gaussian',
                 jitter: float = 0.02, score_range: Tuple[float, float] = (0.5, 1.0),
                 pool_size: int = 4096, seed: Optional[int] = None):
        if not 0 <= init_prob <= 1:
            raise ValueError(f'init_prob must be in [0, 1], got {init_prob}')
        if synthetic not in INPUT_SOURCES:
            raise ValueError(f'synthetic must be one of {INPUT_SOURCES}, got {synthetic!r}')
        self.init_prob = init_prob
        self.synthetic = synthetic
        self.jitter = jitter
        self.score_range = score_range
        self.pool_size = pool_size
        self._pool = []  # (error (K, 2) in box sizes, scores (K,)) of real predictions
        self._random = RandomSource(seed)

    def _remember(self, results: dict, size: np.ndarray) -> None:
        visible = results['keypoints_visible'][0] > 0 if 'keypoints_visible' in results \
            else np.ones(results['keypoints'].shape[1], bool)
        if not visible.all():
            return  # the error of an unlabelled joint is unknown
        error = (results['init_keypoints'][0] - results['keypoints'][0]) / size[0]
        self._pool.append((error.astype(np.float32),
                           results['init_keypoint_scores'][0].astype(np.float32)))
        if len(self._pool) > self.pool_size:
            self._pool.pop(0)

    def transform(self, results: dict) -> dict:
        rng = self._random.generator(results)
        has_init = results.get('init_keypoints') is not None
        keypoints = results['keypoints'].astype(np.float32)
        size = bbox_size(results['bbox'])
        if has_init and self.synthetic == 'transplant' and self.init_prob < 1:
            self._remember(results, size)
        if has_init and rng.random() < self.init_prob:
            results['input_keypoints'] = results['init_keypoints'].astype(np.float32).copy()
            results['input_keypoint_scores'] = results['init_keypoint_scores'].astype(
                np.float32).copy()
            results['input_is_init'] = True
            return results
        if self.init_prob == 1 and not has_init:
            raise KeyError(f'sample {results.get("img_path", "?")} has no initial '
                           'prediction ("init_keypoints") to refine')
        if self.synthetic == 'transplant' and self._pool:
            error, scores = self._pool[rng.integers(len(self._pool))]
            results['input_keypoints'] = (keypoints + error[None] * size[:, None, None]).astype(
                np.float32)
            results['input_keypoint_scores'] = scores[None].copy()
        else:
            noise = rng.normal(0, self.jitter, keypoints.shape) * size[:, None, None]
            results['input_keypoints'] = (keypoints + noise).astype(np.float32)
            results['input_keypoint_scores'] = rng.uniform(
                *self.score_range, keypoints.shape[:2]).astype(np.float32)
        results['input_is_init'] = False
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(init_prob={self.init_prob}, '
                f'synthetic={self.synthetic!r}, jitter={self.jitter})')
