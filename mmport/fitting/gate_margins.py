"""Choosing the do-no-harm gate's margins on validation data: the
statistics behind a refinement rule, which the tools that fit a refiner and
the benchmarks call (the runtime gate is
:mod:`mmport.models.do_no_harm`)."""
from typing import List, Optional, Sequence

import torch
from torch import Tensor

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
    a rule's ``gate.margin`` (:class:`mmport.models.refinement_rule.GateRule`).

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
    margin of their own (:func:`mmport.models.do_no_harm.outside_box_margins`).

    Args:
        gain (Tensor): (N, K) expected gain of the reconstruction over the
            input (``quality[..., 1] - quality[..., 0]``, see
            :func:`mmport.models.do_no_harm.expected_gain_gate`).
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
