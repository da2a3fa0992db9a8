"""Exactly invertible mapping between image pixels and the refiner's frame.

The refiner sees every instance in a frame centred on its bounding box and
scaled by the box's longer side (aspect ratio kept), so that it is invariant
to where the instance is in the image and how big it is. Optionally the
frame is also rotated so that a reference bone (e.g. wrist -> middle finger
base) points up, as PORT's own code canonicalises poses.
"""
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor


class KeypointFrame(NamedTuple):
    """Per-instance frame parameters.

    Attributes:
        center (Tensor): Box centres in pixels, shape (B, 2).
        size (Tensor): Box longer side in pixels, shape (B,).
        cos (Tensor): Cosine of the frame rotation, shape (B,).
        sin (Tensor): Sine of the frame rotation, shape (B,).
    """
    center: Tensor
    size: Tensor
    cos: Tensor
    sin: Tensor


def valid_bboxes(bboxes: Tensor) -> Tensor:
    """Which boxes can define a frame: finite, with positive width and height.

    Args:
        bboxes (Tensor): Boxes (x1, y1, x2, y2), shape (B, 4).

    Returns:
        Tensor: bool, shape (B,).
    """
    wh = bboxes[:, 2:] - bboxes[:, :2]
    return torch.isfinite(bboxes).all(dim=1) & (wh > 0).all(dim=1)


def frame_from_bboxes(bboxes: Tensor,
                      keypoints: Optional[Tensor] = None,
                      rotate_axis: Optional[Tuple[int, int]] = None,
                      check: bool = True) -> KeypointFrame:
    """Build the frames of a batch of instances.

    Args:
        bboxes (Tensor): Boxes (x1, y1, x2, y2) in pixels, shape (B, 4); all
            must be valid (see :func:`valid_bboxes`).
        keypoints (Tensor, optional): Pixel keypoints (B, K, 2), needed only
            when ``rotate_axis`` is set.
        rotate_axis (tuple[int, int], optional): Joints (root, ref); the frame
            is rotated so that root -> ref points along -y (up).
        check (bool): Raise on invalid boxes (off inside traced/exported
            graphs, whose callers replace invalid boxes beforehand).

    Returns:
        KeypointFrame: The frames.
    """
    if check and not bool(valid_bboxes(bboxes).all()):
        raise ValueError('frame_from_bboxes needs finite boxes with positive '
                         'width and height')
    center = (bboxes[:, :2] + bboxes[:, 2:]) / 2
    size = (bboxes[:, 2:] - bboxes[:, :2]).amax(dim=1)
    ones = torch.ones_like(size)
    cos, sin = ones, torch.zeros_like(size)
    if rotate_axis is not None:
        if keypoints is None:
            raise ValueError('rotate_axis needs keypoints')
        bone = keypoints[:, rotate_axis[1]] - keypoints[:, rotate_axis[0]]
        norm = bone.norm(dim=-1)
        ok = norm > 1e-6
        # angle of the bone measured from "up" (0, -1); rotating by -angle
        # brings the bone onto the up axis.
        cos = torch.where(ok, -bone[:, 1] / norm.clamp_min(1e-6), ones)
        sin = torch.where(ok, bone[:, 0] / norm.clamp_min(1e-6), torch.zeros_like(size))
    return KeypointFrame(center, size, cos, sin)


def to_frame(keypoints: Tensor, frame: KeypointFrame) -> Tensor:
    """Map pixel keypoints (B, K, 2) into the normalised frame (B, K, 2)."""
    xy = (keypoints - frame.center[:, None]) / frame.size[:, None, None]
    c, s = frame.cos[:, None], frame.sin[:, None]
    # rotate by -theta
    return torch.stack([c * xy[..., 0] + s * xy[..., 1],
                        -s * xy[..., 0] + c * xy[..., 1]], dim=-1)


def from_frame(normalized: Tensor, frame: KeypointFrame) -> Tensor:
    """Map normalised keypoints (B, K, 2) back to pixels (B, K, 2)."""
    c, s = frame.cos[:, None], frame.sin[:, None]
    xy = torch.stack([c * normalized[..., 0] - s * normalized[..., 1],
                      s * normalized[..., 0] + c * normalized[..., 1]], dim=-1)
    return xy * frame.size[:, None, None] + frame.center[:, None]
