"""mmport's figures are written without touching matplotlib's process-wide
backend (a user's interactive session keeps its own)."""
import os
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = r'''
import sys
import matplotlib
import numpy as np
import mmport  # noqa: F401
from mmport.visualization import plot_explanation, plot_refinements
assert matplotlib.get_backend().lower() == 'svg', matplotlib.get_backend()
rng = np.random.default_rng(0)
gt = rng.uniform(0, 100, (3, 5, 2))
init = gt + rng.normal(0, 5, gt.shape)
replaced = np.zeros((3, 5), bool)
replaced[:, 1] = True
links = [(0, 1), (1, 2), (2, 3), (3, 4)]
plot_refinements(gt, init, gt, replaced, links, sys.argv[1], titles=['a', 'b', 'c'])
plot_explanation(init[0], gt[0], replaced[0], np.full(5, 0.2), 1, links, sys.argv[2])
print(matplotlib.get_backend().lower())
'''


def test_figures_leave_the_matplotlib_backend_alone(tmp_path):
    import matplotlib.image
    files = [str(tmp_path / 'refinements.png'), str(tmp_path / 'explanation.png')]
    env = {**os.environ, 'MPLBACKEND': 'svg'}
    proc = subprocess.run([sys.executable, '-c', SCRIPT, *files], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == 'svg'  # after drawing, too
    height, width, _ = matplotlib.image.imread(files[0]).shape
    assert (width, height) == (1200, 400)  # 3 panels of 4 x 4 inches at 100 dpi
    assert matplotlib.image.imread(files[1]).shape[:2] == (770, 770)
