"""The do-no-harm gate's runtime maths: per-joint quality estimates, their
training loss, and the gate that lets a joint move only where moving is
expected to help. Pure functions on tensors. (Choosing the gate's margins
on validation data is :mod:`mmport.fitting.gate_margins`.)

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
from typing import Optional, Sequence, Union

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
