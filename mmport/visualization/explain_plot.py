"""Picture of one refined joint and the joints its reconstruction relied on
(matplotlib's object-oriented API: pyplot and its backend are left alone)."""
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D


def plot_explanation(init: np.ndarray, refined: np.ndarray, replaced: np.ndarray,
                     attention: np.ndarray, joint: int, skeleton_links: Sequence[Sequence[int]],
                     out_file: str, keypoint_names: Optional[Sequence[str]] = None,
                     image: Optional[np.ndarray] = None, gt: Optional[np.ndarray] = None,
                     title: str = '') -> str:
    """Draw initial and refined skeletons and, for ``joint``, its attention
    over the other joints as lines whose width and opacity grow with weight.

    Args:
        init (np.ndarray): (K, 2) detector keypoints.
        refined (np.ndarray): (K, 2) refined keypoints.
        replaced (np.ndarray): bool (K,).
        attention (np.ndarray): (K,) attention of ``joint`` over all joints
            (a row of the head-averaged attention matrix).
        joint (int): The refined joint to explain.
        skeleton_links (sequence): 0-based links.
        out_file (str): PNG path.
        keypoint_names (sequence[str], optional): For labels.
        image (np.ndarray, optional): RGB image to draw on.
        gt (np.ndarray, optional): (K, 2) ground truth.
        title (str): Figure title.

    Returns:
        str: ``out_file``.
    """
    fig = Figure(figsize=(7, 7))
    ax = fig.subplots()
    if image is not None:
        ax.imshow(image)
    pts = np.concatenate([init, refined] + ([gt] if gt is not None else []))
    pad = 0.25 * (pts.max(0) - pts.min(0)).max() + 5
    ax.set_xlim(pts[:, 0].min() - pad, pts[:, 0].max() + pad)
    ax.set_ylim(pts[:, 1].max() + pad, pts[:, 1].min() - pad)
    weights = attention / max(attention.max(), 1e-9)
    for j in np.argsort(attention):
        if j == joint:
            continue
        ax.plot([refined[joint, 0], refined[j, 0]], [refined[joint, 1], refined[j, 1]],
                color='tab:orange', lw=0.5 + 6 * weights[j], alpha=0.2 + 0.8 * weights[j],
                zorder=2)
    for a, b in skeleton_links:
        if gt is not None:
            ax.plot(gt[[a, b], 0], gt[[a, b], 1], color='tab:blue', lw=1.2, zorder=3)
        ax.plot(init[[a, b], 0], init[[a, b], 1], color='tab:red', lw=1.2, ls='--', zorder=3)
        ax.plot(refined[[a, b], 0], refined[[a, b], 1], color='tab:green', lw=1.8, zorder=4)
    ax.scatter(refined[replaced, 0], refined[replaced, 1], s=70, facecolors='none',
               edgecolors='tab:green', linewidths=1.5, zorder=5)
    ax.scatter(*refined[joint], s=160, marker='*', color='gold', edgecolors='k', zorder=6)
    ax.annotate('', xy=refined[joint], xytext=init[joint],
                arrowprops=dict(arrowstyle='->', color='k', lw=1.2), zorder=6)
    top = [j for j in np.argsort(-attention) if j != joint][:3]
    for j in top:
        label = keypoint_names[j] if keypoint_names is not None else str(j)
        ax.annotate(f'{label} {attention[j]:.2f}', refined[j], fontsize=8, color='tab:orange',
                    xytext=(4, 4), textcoords='offset points', zorder=7)
    handles = [Line2D([], [], color='tab:red', ls='--', label='initial'),
               Line2D([], [], color='tab:green', label='refined'),
               Line2D([], [], color='tab:orange', lw=4, label='attention of the starred joint')]
    if gt is not None:
        handles.insert(0, Line2D([], [], color='tab:blue', label='ground truth'))
    ax.legend(handles=handles, fontsize=8, loc='lower right')
    name = keypoint_names[joint] if keypoint_names is not None else str(joint)
    ax.set_title(title or f'refined joint: {name}', fontsize=10)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    return out_file
