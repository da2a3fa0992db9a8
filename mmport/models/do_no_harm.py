"""The do-no-harm rule's maths: per-joint quality estimates, their training
loss, and the gate that lets a joint move only where moving is expected to
help. Pure functions on tensors.

The network estimates, for every joint, the quality of its input position
and of its reconstruction. Two kinds of estimate are supported:

* ``'log_distance'``: the log of the expected distance to the truth (frame
  units; trained by an L1 loss, so it estimates the median); quality is its
  negative.
* ``'keypoint_similarity'``: the expected OKS term of the joint,
  ``exp(-d^2 / (2 t^2))`` with the joint's tolerance ``t = 2 * sigma *
  scale`` in frame units (trained by binary cross-entropy with the actual
  similarity as a soft target, so it estimates the mean). This is what COCO
  AP rewards: a joint far off gains nothing from moving less far off, and a
  nearly right joint has everything to lose.
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

QUALITY_KINDS = ('log_distance', 'keypoint_similarity')
# frame units: distances below a thousandth of the box count as equal
DISTANCE_FLOOR = 1e-3
# sqrt(object area) / longer box side of a typical person (the OKS scale in
# frame units): COCO's segmentation areas fill about half of a person's box
SIMILARITY_SCALE = 0.5


def joint_tolerances(sigmas: Sequence[float], scale: float = SIMILARITY_SCALE) -> Tensor:
    """Per-joint OKS tolerances (K,) in frame units: ``2 * sigma * scale``."""
    return 2 * torch.as_tensor(sigmas, dtype=torch.float32) * scale


def quality_loss(raw: Tensor, inputs: Tensor, reconstruction: Tensor, target: Tensor,
                 weight: Tensor, kind: str = 'log_distance',
                 tolerances: Optional[Tensor] = None) -> Tensor:
    """Training loss of the quality estimates.

    Args:
        raw (Tensor): (B, K, 2) the network's raw estimates for the input
            position ``[..., 0]`` and the reconstruction ``[..., 1]``.
        inputs (Tensor): (B, K, 2) input positions, frame units.
        reconstruction (Tensor): (B, K, 2) reconstructions (detach them: the
            estimates must not pull the positions).
        target (Tensor): (B, K, 2) ground truth, frame units.
        weight (Tensor): (B, K) joints to count.
        kind (str): One of ``QUALITY_KINDS``.
        tolerances (Tensor, optional): (K,) for ``'keypoint_similarity'``.

    Returns:
        Tensor: the weighted mean loss per joint (both estimates summed).
    """
    dist = torch.stack([torch.linalg.vector_norm(inputs - target, dim=-1),
                        torch.linalg.vector_norm(reconstruction - target, dim=-1)], -1)
    if kind == 'log_distance':
        loss = (raw - torch.log(dist + DISTANCE_FLOOR)).abs()
    elif kind == 'keypoint_similarity':
        if tolerances is None:
            raise ValueError("'keypoint_similarity' needs the joints' tolerances (OKS sigmas)")
        sim = torch.exp(-dist.square() / (2 * tolerances.to(dist)[:, None].square()))
        loss = F.binary_cross_entropy_with_logits(raw, sim, reduction='none')
    else:
        raise ValueError(f'kind must be one of {QUALITY_KINDS}, got {kind!r}')
    return (loss.sum(-1) * weight).sum() / weight.sum().clamp_min(1)


def expected_quality(raw: Tensor, kind: str = 'log_distance') -> Tensor:
    """Quality (higher is better) of the raw estimates (B, K, 2): minus the
    log distance, or the expected keypoint similarity in [0, 1]."""
    if kind == 'log_distance':
        return -raw
    if kind == 'keypoint_similarity':
        return torch.sigmoid(raw)
    raise ValueError(f'kind must be one of {QUALITY_KINDS}, got {kind!r}')


def expected_gain_gate(quality: Optional[Tensor],
                       margin: Union[float, Sequence[float], Tensor] = 0.0) -> Tensor:
    """The do-no-harm rule: move a joint only where the reconstruction's
    expected quality beats the input position's by more than ``margin``.

    Args:
        quality (Tensor): (B, K, 2) expected quality of the input position
            ``[..., 0]`` and of the reconstruction ``[..., 1]``.
        margin (float | sequence[float] | Tensor): The gain required (in the
            quality's units: log distance ratio, or keypoint similarity),
            one for all joints, one per joint class (K,) or one per joint
            (B, K) (see :func:`outside_box_margins`); ``inf`` keeps a joint
            where it is (e.g. for joint classes whose moves did not help on
            training data).

    Returns:
        Tensor: bool (B, K), True where moving is expected to help.
    """
    if quality is None:
        raise ValueError('the do-no-harm gate needs a network built with predict_errors=True')
    margin = torch.as_tensor(margin, dtype=quality.dtype, device=quality.device)
    if margin.ndim > 2 or margin.shape != quality.shape[2 - margin.ndim:2]:
        raise ValueError(f'margin must be a number, one per joint class ({quality.shape[1]}) '
                         f'or one per joint {tuple(quality.shape[:2])}, got shape '
                         f'{tuple(margin.shape)}')
    return quality[..., 1] - quality[..., 0] > margin


def joints_outside_boxes(keypoints: Tensor, bboxes: Tensor) -> Tensor:
    """Which joints lie outside the box that frames their instance.

    Args:
        keypoints (Tensor): (B, K, 2) positions.
        bboxes (Tensor): (B, 4) boxes, xyxy.

    Returns:
        Tensor: bool (B, K), True outside the box (on its edge is inside).
    """
    lo, hi = bboxes[:, None, :2], bboxes[:, None, 2:]
    return ((keypoints < lo) | (keypoints > hi)).any(-1)


def outside_box_margins(margin: Union[float, Sequence[float], Tensor], outside: Tensor,
                        outside_box_margin: float) -> Tensor:
    """Per-joint gate margins: a joint outside its instance's box gets at
    most ``outside_box_margin``.

    A joint outside the box that frames its instance (the detection box, or
    the annotation's) is off the body: a results file's placeholder at the
    image origin, a joint put on another person or on a point the method
    defines elsewhere. Validations of good methods hold few such joints,
    too few for a joint class's margin to be chosen on them, and a margin
    chosen on the class's joints inside the box, where an error is a matter
    of a few pixels, does not say how to treat them: they move wherever the
    network expects a gain of more than ``outside_box_margin``.

    Args:
        margin (float | sequence[float] | Tensor): One margin for all
            joints, or one per joint class (K,).
        outside (Tensor): bool (B, K), from :func:`joints_outside_boxes`.
        outside_box_margin (float): The margin of the joints outside.

    Returns:
        Tensor: (B, K) float64 margins, for :func:`expected_gain_gate`.
    """
    margin = torch.as_tensor(margin, dtype=torch.float64, device=outside.device)
    if margin.ndim > 1 or (margin.ndim == 1 and margin.shape[0] != outside.shape[1]):
        raise ValueError(f'margin must be a number or one per joint class ({outside.shape[1]}), '
                         f'got shape {tuple(margin.shape)}')
    if not outside_box_margin >= 0:
        raise ValueError(f'outside_box_margin must be 0 or more, got {outside_box_margin}')
    margin = margin.expand(outside.shape)
    return torch.where(outside, margin.clamp(max=outside_box_margin), margin)


# margins tried by choose_gate_margins, in keypoint-similarity units; inf
# (keep the joint class where it is) is always tried
MARGIN_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, float('inf'))


def choose_gate_margins(gain: Tensor, input_cost: Tensor, reconstruction_cost: Tensor,
                        weight: Optional[Tensor] = None,
                        margins: Sequence[float] = MARGIN_GRID,
                        domains: Optional[Tensor] = None, z: float = 0.0,
                        clusters: Optional[Tensor] = None) -> List[float]:
    """Choose one gate margin per joint class on validation data (data the
    refiner was not trained on, with ground truth), for
    ``test_cfg.gate_margin``.

    For every joint class and every margin, the joints the gate would move
    (``gain > margin``) take their reconstruction's cost, the others their
    input's; the summed costs are compared lexicographically (the first
    criterion decides, the next ones break its ties). A finite margin is
    chosen only where it lowers the joint class's cost below leaving it
    where it is (``inf``); among equal costs the larger margin (fewer
    moves) wins.

    With ``domains`` (validations of different kinds, e.g. refiners
    validated on the predictions of a model whose errors they were not
    trained on, one domain per such pair) a finite margin must lower the
    cost in every domain, and the margin whose smallest improvement over
    ``inf`` (the worst domain's) is largest wins: the margins guard the
    worst case instead of the average.

    With ``z > 0`` lowering the cost is not enough: the improvement over
    ``inf`` (the summed cost saved by the moves) must exceed ``z`` times its
    standard error, on the first criterion on which it is not 0, in every
    domain; otherwise the joint class stays where it is. The standard error
    is that of a sum of independent paired differences (input's cost minus
    reconstruction's, 0 where a joint stays), with the samples of one
    ``clusters`` id summed first (correlated samples: a video's frames, an
    image's persons), so that a few lucky moves do not pass for a gain.

    Joints that a validation rarely shows, such as a method's placeholder
    at the image origin, are better left out of ``weight`` and given a
    margin of their own (:func:`outside_box_margins`).

    Args:
        gain (Tensor): (N, K) expected gain of the reconstruction over the
            input (``quality[..., 1] - quality[..., 0]``, see
            :func:`expected_gain_gate`).
        input_cost (Tensor): (N, K) or (N, K, C) cost of each input position
            (lower is better; e.g. 1 for a joint outside the PCK tolerance,
            then its distance to the truth as a second criterion).
        reconstruction_cost (Tensor): the same for the reconstructions.
        weight (Tensor, optional): bool (N, K), the joints to count
            (default all).
        margins (sequence[float]): The margins to try.
        domains (Tensor, optional): int (N,), the domain of each sample
            (default one domain).
        z (float): Standard errors by which a finite margin's improvement
            must beat ``inf``'s (default 0: any improvement).
        clusters (Tensor, optional): int (N,), samples whose differences
            are summed before the standard error (default each its own).

    Returns:
        list[float]: K margins (``inf`` for the joint classes kept where
        they are).
    """
    gain = torch.as_tensor(gain, dtype=torch.float64)
    input_cost = torch.as_tensor(input_cost, dtype=torch.float64)
    reconstruction_cost = torch.as_tensor(reconstruction_cost, dtype=torch.float64)
    if input_cost.ndim == 2:
        input_cost, reconstruction_cost = input_cost[..., None], reconstruction_cost[..., None]
    if gain.ndim != 2 or input_cost.shape[:2] != gain.shape or (
            reconstruction_cost.shape != input_cost.shape):
        raise ValueError(f'gain must be (N, K) and the costs (N, K) or (N, K, C) alike, got '
                         f'{tuple(gain.shape)}, {tuple(input_cost.shape)}, '
                         f'{tuple(reconstruction_cost.shape)}')
    weight = torch.ones(gain.shape, dtype=torch.bool) if weight is None else torch.as_tensor(
        weight, dtype=torch.bool)
    if not (torch.isfinite(input_cost) & torch.isfinite(reconstruction_cost))[weight].all():
        raise ValueError('the costs of the counted joints must be finite')
    if not z >= 0:
        raise ValueError(f'z must be 0 or more, got {z}')
    n = gain.shape[0]
    domains = torch.zeros(n, dtype=torch.long) if domains is None else torch.as_tensor(domains)
    clusters = torch.arange(n) if clusters is None else torch.as_tensor(clusters)
    for name, ids in (('domains', domains), ('clusters', clusters)):
        if ids.shape != (n,):
            raise ValueError(f'{name} must be (N,) = ({n},), got {tuple(ids.shape)}')
    _, domains = torch.unique(domains, return_inverse=True)
    _, clusters = torch.unique(clusters, return_inverse=True)
    num_domains = int(domains.max()) + 1 if n else 1
    # a cluster belongs to one domain: the same id in two domains is two clusters
    _, group = torch.unique(torch.stack([domains, clusters], 1), dim=0, return_inverse=True)
    num_groups = int(group.max()) + 1 if n else 0
    group_domain = torch.zeros(num_groups, dtype=torch.long).scatter_(0, group, domains)
    # cost lowered by moving, per joint: 0 where the joint stays
    saving = (input_cost - reconstruction_cost) * weight[..., None]
    # largest first: a later margin must be strictly better to win
    grid = sorted({float(m) for m in margins} | {float('inf')}, reverse=True)
    num_k = gain.shape[1]
    worst = [[[0.0] * saving.shape[2]] * num_k]  # inf: no improvement
    eligible = [[False] * num_k]
    for margin in grid[1:]:
        moved = (gain > margin)[..., None]
        sums = torch.zeros(num_groups, *saving.shape[1:], dtype=saving.dtype)
        sums.index_add_(0, group, saving * moved)  # (G, K, C)
        improvement = torch.zeros(num_domains, *saving.shape[1:], dtype=saving.dtype)
        improvement.index_add_(0, group_domain, sums)  # (D, K, C)
        bound = torch.zeros_like(improvement)
        if z > 0:
            for d in range(num_domains):
                s = sums[group_domain == d]
                bound[d] = z * (s - s.mean(0)).square().sum(0).mul(
                    len(s) / (len(s) - 1)).sqrt() if len(s) > 1 else float('inf')
        worst.append([min(improvement[:, k].tolist()) for k in range(num_k)])
        eligible.append([all(_beats_staying(improvement[d, k], bound[d, k])
                             for d in range(num_domains)) for k in range(num_k)])
    chosen = []
    for k in range(num_k):
        best = 0
        for i in range(1, len(grid)):
            if eligible[i][k] and worst[i][k] > worst[best][k]:
                best = i
        chosen.append(grid[best])
    return chosen


def _beats_staying(improvement: Tensor, bound: Tensor) -> bool:
    """Whether an improvement (C,) over leaving a joint class where it is
    exceeds its bound (C,) on its first criterion that is not 0."""
    for imp, b in zip(improvement.tolist(), bound.tolist()):
        if imp != 0:
            return imp > b
    return False
