"""Choose the pose the refiner sees as input during keypoints-only training."""
from typing import Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmpose.registry import TRANSFORMS


def bbox_size(bbox: np.ndarray) -> np.ndarray:
    """Longer side of boxes (N, 4) xyxy, shape (N,)."""
    return np.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1])


@TRANSFORMS.register_module()
class SetRefinerInputs(BaseTransform):
    """Set ``input_keypoints`` / ``input_keypoint_scores``, the pose to refine.

    With probability ``init_prob`` (and where the sample carries a real
    detector prediction, ``init_keypoints``), the input is that prediction
    with its real confidences: the refiner then learns this detector's own
    error pattern (PoseFix). Otherwise the input is the ground truth, moved
    by Gaussian jitter of ``jitter`` x box size and given confidences drawn
    from ``score_range`` (a clean pose is a confident one). At test time
    (``init_prob=1``) the input is always the prediction.

    Required keys: ``keypoints`` (1, K, 2), ``bbox`` (1, 4); optionally
    ``init_keypoints`` (1, K, 2), ``init_keypoint_scores`` (1, K).
    Added keys: ``input_keypoints`` (1, K, 2), ``input_keypoint_scores``
    (1, K), ``input_is_init`` (bool).

    Args:
        init_prob (float): Probability of using the real prediction.
        jitter (float): Std of the ground-truth jitter, in box sizes.
        score_range (tuple[float, float]): Range of synthetic confidences.
        seed (int, optional): Seed of a private generator (tests).
    """

    def __init__(self, init_prob: float = 0.5, jitter: float = 0.02,
                 score_range: Tuple[float, float] = (0.5, 1.0),
                 seed: Optional[int] = None):
        if not 0 <= init_prob <= 1:
            raise ValueError(f'init_prob must be in [0, 1], got {init_prob}')
        self.init_prob = init_prob
        self.jitter = jitter
        self.score_range = score_range
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def _generator(self) -> np.random.Generator:
        return self._rng if self._rng is not None else np.random.default_rng(
            np.random.randint(2**31))

    def transform(self, results: dict) -> dict:
        rng = self._generator()
        has_init = results.get('init_keypoints') is not None
        if has_init and rng.random() < self.init_prob:
            results['input_keypoints'] = results['init_keypoints'].astype(np.float32).copy()
            results['input_keypoint_scores'] = results['init_keypoint_scores'].astype(
                np.float32).copy()
            results['input_is_init'] = True
            return results
        if self.init_prob == 1 and not has_init:
            raise KeyError(f'sample {results.get("img_path", "?")} has no initial '
                           'prediction ("init_keypoints") to refine')
        keypoints = results['keypoints'].astype(np.float32)
        size = bbox_size(results['bbox'])[:, None, None]
        noise = rng.normal(0, self.jitter, keypoints.shape) * size
        results['input_keypoints'] = (keypoints + noise).astype(np.float32)
        results['input_keypoint_scores'] = rng.uniform(
            *self.score_range, keypoints.shape[:2]).astype(np.float32)
        results['input_is_init'] = False
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(init_prob={self.init_prob}, jitter={self.jitter}, '
                f'score_range={self.score_range})')
