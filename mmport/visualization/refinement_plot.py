"""Matplotlib figures of refined poses (no image needed).

Figures are drawn with matplotlib's object-oriented API and written to
files: pyplot and its process-wide backend are left alone.
"""
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

STYLES = {
    'ground truth': dict(color='tab:blue', lw=1.5),
    'initial': dict(color='tab:red', lw=1.2, ls='--'),
    'refined': dict(color='tab:green', lw=1.5),
}


def _draw(ax, kpts: np.ndarray, links, style: dict, label: str):
    for a, b in links:
        ax.plot(kpts[[a, b], 0], kpts[[a, b], 1], **style)
    ax.plot([], [], label=label, **style)


def plot_refinements(gt: np.ndarray, init: np.ndarray, refined: np.ndarray,
                     replaced: np.ndarray, skeleton_links: Sequence[Sequence[int]],
                     out_file: str, titles: Optional[Sequence[str]] = None,
                     cols: int = 3) -> str:
    """Draw initial vs refined vs ground-truth skeletons, one panel each.

    Args:
        gt (np.ndarray): (N, K, 2) ground truth, pixels.
        init (np.ndarray): (N, K, 2) detector predictions.
        refined (np.ndarray): (N, K, 2) refined predictions.
        replaced (np.ndarray): bool (N, K), joints the refiner replaced
            (drawn as rings with an arrow from the initial position).
        skeleton_links (sequence): 0-based joint links.
        out_file (str): PNG path.
        titles (sequence[str], optional): Panel titles.
        cols (int): Panels per row.

    Returns:
        str: ``out_file``.
    """
    n = len(gt)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4 * cols, 4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        _draw(ax, gt[i], skeleton_links, STYLES['ground truth'], 'ground truth')
        _draw(ax, init[i], skeleton_links, STYLES['initial'], 'initial')
        _draw(ax, refined[i], skeleton_links, STYLES['refined'], 'refined')
        r = np.flatnonzero(replaced[i])
        ax.scatter(refined[i, r, 0], refined[i, r, 1], s=60, facecolors='none',
                   edgecolors='tab:green', linewidths=1.5, label='replaced joint')
        for j in r:
            ax.annotate('', xy=refined[i, j], xytext=init[i, j],
                        arrowprops=dict(arrowstyle='->', color='0.4', lw=0.8))
        ax.invert_yaxis()
        ax.set_aspect('equal')
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
        if i == 0:
            ax.legend(fontsize=7, loc='best')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    return out_file
