"""Skeleton graphs from MMPose metainfo: links and k-hop aggregation matrices."""
from typing import Iterable, List, Sequence, Tuple

import numpy as np


def skeleton_links_from_metainfo(metainfo: dict) -> List[Tuple[int, int]]:
    """Return the 0-based joint links of an MMPose dataset metainfo.

    Args:
        metainfo (dict): A parsed MMPose metainfo (``dataset.metainfo``),
            holding ``skeleton_links``, or a raw dataset_info dict holding
            ``skeleton_info``/``keypoint_info``.

    Returns:
        list[tuple[int, int]]: The links, each a pair of joint indices.
    """
    if 'skeleton_links' in metainfo:
        return [tuple(map(int, link)) for link in metainfo['skeleton_links']]
    if 'skeleton_info' in metainfo:
        name2id = {kp['name']: i for i, kp in metainfo['keypoint_info'].items()}
        return [(name2id[s['link'][0]], name2id[s['link'][1]])
                for s in metainfo['skeleton_info'].values()]
    raise KeyError('metainfo has neither "skeleton_links" nor "skeleton_info"')


def hop_distances(num_keypoints: int,
                  links: Iterable[Sequence[int]]) -> np.ndarray:
    """All-pairs hop distance over the skeleton graph.

    Args:
        num_keypoints (int): K, the number of joints.
        links (iterable): Undirected joint links (i, j), 0-based.

    Returns:
        np.ndarray: Integer distances of shape (K, K); unreachable pairs
        hold ``K`` (more than any real distance).
    """
    dist = np.full((num_keypoints, num_keypoints), num_keypoints, dtype=np.int64)
    np.fill_diagonal(dist, 0)
    for i, j in links:
        if not (0 <= i < num_keypoints and 0 <= j < num_keypoints):
            raise ValueError(f'skeleton link ({i}, {j}) is out of range for '
                             f'{num_keypoints} keypoints')
        dist[i, j] = dist[j, i] = min(dist[i, j], 1)
    # Floyd-Warshall: K is at most a few hundred joints.
    for k in range(num_keypoints):
        dist = np.minimum(dist, dist[:, k:k + 1] + dist[k:k + 1, :])
    return dist


def hop_aggregation_matrices(num_keypoints: int,
                             links: Iterable[Sequence[int]],
                             max_hop: int) -> np.ndarray:
    """Row-normalised matrices that average the joints at exactly h hops.

    Matrix ``h`` (0 <= h <= max_hop) has ``A[h, i, j] = 1 / n_h(i)`` where
    joint j is h hops from joint i and ``n_h(i)`` counts such joints; a row
    with no joint at that distance is all zero. ``A[0]`` is the identity.
    Multiplying joint features by ``A[h]`` is a graph convolution whose
    receptive field is the h-ring, the skeleton analogue of one kernel tap
    ring of PORT's convolutional projection (kernel 3 <-> max_hop 1).

    Args:
        num_keypoints (int): K.
        links (iterable): Undirected joint links, 0-based.
        max_hop (int): The largest ring, >= 0.

    Returns:
        np.ndarray: float32 array of shape (max_hop + 1, K, K).
    """
    if max_hop < 0:
        raise ValueError(f'max_hop must be >= 0, got {max_hop}')
    dist = hop_distances(num_keypoints, links)
    mats = np.zeros((max_hop + 1, num_keypoints, num_keypoints), np.float32)
    for h in range(max_hop + 1):
        ring = (dist == h).astype(np.float32)
        count = ring.sum(axis=1, keepdims=True)
        mats[h] = np.divide(ring, count, out=np.zeros_like(ring), where=count > 0)
    return mats
