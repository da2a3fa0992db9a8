"""Masked Joint Modeling: choose which joints the refiner must reconstruct."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpose.registry import TRANSFORMS

from mmport.structures.skeleton import hop_distances
from .randomness import RandomSource

MASK_STRATEGIES = ('random', 'chain', 'region')


def _num_to_mask(num_keypoints: int, ratio: float) -> int:
    return int(np.clip(round(ratio * num_keypoints), 1, num_keypoints - 1))


def random_joint_mask(num_keypoints: int, ratio: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Mask ``round(ratio * K)`` joints drawn uniformly without replacement.

    Returns:
        np.ndarray: bool mask of shape (K,).
    """
    mask = np.zeros(num_keypoints, bool)
    mask[rng.choice(num_keypoints, _num_to_mask(num_keypoints, ratio), replace=False)] = True
    return mask


def skeleton_subtrees(num_keypoints: int, links: Sequence[Sequence[int]],
                      root: int = 0) -> List[np.ndarray]:
    """For every joint, the joints below it in the skeleton seen from ``root``.

    A joint's subtree is itself plus every joint farther from the root whose
    shortest path to the root passes through it: masking a subtree hides a
    whole limb end or finger chain, as an occluder does.

    Returns:
        list[np.ndarray]: K bool arrays of shape (K,).
    """
    dist = hop_distances(num_keypoints, links)
    from_root = dist[root]
    subtrees = []
    for j in range(num_keypoints):
        # i is below j iff j lies on a shortest root -> i path
        below = (from_root[j] + dist[j] == from_root) & (from_root < num_keypoints)
        subtrees.append(below)
    return subtrees


def chain_joint_mask(subtrees: Sequence[np.ndarray], ratio: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Mask a contiguous limb / finger chain: the subtree of a random joint,
    cut to at most ``round(ratio * K)`` joints (the ones nearest that joint
    are kept masked)."""
    num_keypoints = len(subtrees)
    budget = _num_to_mask(num_keypoints, ratio)
    candidates = [j for j in range(num_keypoints) if 0 < subtrees[j].sum() <= budget]
    if not candidates:
        return random_joint_mask(num_keypoints, ratio, rng)
    return subtrees[rng.choice(candidates)].copy()


def region_joint_mask(keypoints: np.ndarray, ratio: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Mask the joints nearest to a random joint in the image, as a blob-like
    occluder would.

    Args:
        keypoints (np.ndarray): (K, 2) coordinates.
    """
    num_keypoints = len(keypoints)
    centre = keypoints[rng.integers(num_keypoints)]
    order = np.argsort(np.linalg.norm(keypoints - centre, axis=-1), kind='stable')
    mask = np.zeros(num_keypoints, bool)
    mask[order[:_num_to_mask(num_keypoints, ratio)]] = True
    return mask


def erase_joints(keypoints: np.ndarray, scores: np.ndarray, erased: np.ndarray,
                 context: np.ndarray) -> Dict[str, np.ndarray]:
    """Remove what the input says about some joints.

    Args:
        keypoints (np.ndarray): (1, K, 2) input coordinates.
        scores (np.ndarray): (1, K) input confidences.
        erased (np.ndarray): bool (K,), the joints to erase.
        context (np.ndarray): bool (K,), not empty: the joints whose
            centroid becomes the erased joints' position.

    Returns:
        dict: new ``input_keypoints`` (1, K, 2) and
        ``input_keypoint_scores`` (1, K), 0 at the erased joints.
    """
    keypoints, scores = keypoints.copy(), scores.copy()
    if erased.any():
        keypoints[0, erased] = keypoints[0, context].mean(0)
        scores[0, erased] = 0
    return dict(input_keypoints=keypoints, input_keypoint_scores=scores)


@TRANSFORMS.register_module()
class MaskJoints(BaseTransform):
    """Choose the joints to reconstruct (Masked Joint Modeling).

    Required keys: ``keypoints`` (1, K, 2); ``input_keypoint_scores`` (1, K)
    when ``score_thr`` is set; ``skeleton_links`` for the chain strategy.
    Added keys: ``joint_mask`` bool (1, K). Modified keys (``erase``):
    ``input_keypoints``, ``input_keypoint_scores``.

    Args:
        ratio (float | tuple[float, float]): Fraction of joints masked, or a
            range sampled uniformly per instance. PORT used 0.3-0.4.
        strategies (sequence[str]): Any of ``'random'`` (uniform joints),
            ``'chain'`` (a limb / finger chain) and ``'region'`` (joints near
            a random point).
        strategy_probs (sequence[float], optional): Probability of each
            strategy; uniform by default.
        score_thr (float, optional): Also mask every joint whose input
            confidence is below it, as refinement does at test time.
        root (int): Root joint for the chain strategy (wrist, nose: 0).
        erase (bool): Erase the joints the strategy masked (not the
            doubtful ones) from the input: their position becomes the
            centroid of the joints it left visible and their confidence 0,
            so that they are reconstructed from context alone (PORT's masked
            joint modeling), while doubtful joints keep their position as a
            hint. Needs ``input_keypoints`` / ``input_keypoint_scores``.
            Measured better for the hint-mode hand refiner (README, third
            design table). Defaults to False.
        seed (int, optional): Seed of per-sample draws (tests): each sample
            always gets the same draw, for any number of dataloader workers
            (see :class:`RandomSource`). Default: numpy's global state,
            which mmengine seeds per run and worker.
    """

    def __init__(self,
                 ratio: Union[float, Tuple[float, float]] = (0.3, 0.4),
                 strategies: Sequence[str] = ('random', 'chain', 'region'),
                 strategy_probs: Optional[Sequence[float]] = None,
                 score_thr: Optional[float] = None,
                 root: int = 0,
                 erase: bool = False,
                 seed: Optional[int] = None):
        ratios = (ratio, ratio) if isinstance(ratio, (int, float)) else tuple(ratio)
        if len(ratios) != 2 or not 0 < ratios[0] <= ratios[1] < 1:
            raise ValueError(f'ratio must be in (0, 1), got {ratio}')
        unknown = set(strategies) - set(MASK_STRATEGIES)
        if unknown or not strategies:
            raise ValueError(f'strategies must be a non-empty subset of {MASK_STRATEGIES}')
        probs = np.full(len(strategies), 1 / len(strategies)) if strategy_probs is None \
            else np.asarray(strategy_probs, float)
        if len(probs) != len(strategies) or (probs < 0).any() or not np.isclose(probs.sum(), 1):
            raise ValueError('strategy_probs must be one probability per strategy, summing to 1')
        self.ratio = ratios
        self.strategies = list(strategies)
        self.strategy_probs = probs
        self.score_thr = score_thr
        self.root = root
        self.erase = erase
        self.seed = seed
        self._random = RandomSource(seed)
        self._subtrees: Dict[tuple, List[np.ndarray]] = {}

    def _subtrees_for(self, num_keypoints: int, links) -> List[np.ndarray]:
        key = (num_keypoints, tuple(map(tuple, links)))
        if key not in self._subtrees:
            self._subtrees[key] = skeleton_subtrees(num_keypoints, links, self.root)
        return self._subtrees[key]

    def transform(self, results: dict) -> dict:
        keypoints = results['keypoints']
        num_keypoints = keypoints.shape[1]
        rng = self._random.generator(results)
        ratio = rng.uniform(*self.ratio)
        strategy = self.strategies[rng.choice(len(self.strategies), p=self.strategy_probs)]
        if strategy == 'random':
            mask = random_joint_mask(num_keypoints, ratio, rng)
        elif strategy == 'chain':
            links = results.get('skeleton_links')
            if not links:
                raise KeyError('MaskJoints(chain) needs "skeleton_links" from the '
                               'dataset metainfo')
            mask = chain_joint_mask(self._subtrees_for(num_keypoints, links), ratio, rng)
        else:
            source = results.get('input_keypoints', keypoints)
            mask = region_joint_mask(source[0], ratio, rng)
        if self.score_thr is not None:
            doubtful = results['input_keypoint_scores'][0] < self.score_thr
        else:
            doubtful = np.zeros(num_keypoints, bool)
        if self.erase:  # the strategy never masks all joints: ~mask is not empty
            results.update(erase_joints(results['input_keypoints'],
                                        results['input_keypoint_scores'], mask & ~doubtful,
                                        ~mask))
        results['joint_mask'] = (mask | doubtful)[None]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(ratio={self.ratio}, strategies={self.strategies}, '
                f'score_thr={self.score_thr}, erase={self.erase})')
