"""tools/dist_train.sh and tools/dist_test.sh with 2 processes (gloo on CPU)."""
import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO

CONFIG = 'configs/port/port_panoptic-hand2d_keypoints-only.py'
SMALL = ['train_cfg.max_iters=6', 'train_cfg.val_interval=6', 'train_dataloader.batch_size=8',
         'default_hooks.checkpoint.interval=6', 'default_hooks.logger.interval=1',
         'model.network.embed_dim=32', 'model.network.depth=2']


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def _run(cmd, **env):
    full_env = dict(os.environ, PYTHON=sys.executable, PORT=_free_port(), OMP_NUM_THREADS='1',
                    **env)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=full_env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def dist_checkpoint(tmp_path_factory):
    work = tmp_path_factory.mktemp('dist_train')
    log = _run(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', str(work),
                '--cfg-options', *SMALL])
    assert 'Distributed training: True' in log
    assert "dist_cfg: {'backend': 'gloo'}" in log  # chosen automatically: no GPU here
    return str(work / 'iter_6.pth'), log


def test_two_process_training_runs_through_ddp(dist_checkpoint):
    ckpt, log = dist_checkpoint
    assert os.path.exists(ckpt)
    assert 'Distributed launcher: pytorch' in log
    assert 'MMDistributedDataParallel' in log


def test_two_process_test_equals_single_process(dist_checkpoint, tmp_path):
    ckpt, _ = dist_checkpoint
    one, two = tmp_path / 'one.json', tmp_path / 'two.json'
    _run([sys.executable, 'tools/test.py', CONFIG, ckpt, '--work-dir', str(tmp_path / 'w1'),
          '--out', str(one), '--cfg-options', *SMALL])
    _run(['bash', 'tools/dist_test.sh', CONFIG, ckpt, '2', '--work-dir', str(tmp_path / 'w2'),
          '--out', str(two), '--cfg-options', *SMALL])
    m1, m2 = json.loads(one.read_text()), json.loads(two.read_text())
    assert m1['num_instances'] == m2['num_instances'] == 170
    for key in ('EPE', 'init_EPE', 'EPE_replaced', 'PCKh@0.7', 'AUC'):
        assert m2[key] == pytest.approx(m1[key], rel=1e-6), key
