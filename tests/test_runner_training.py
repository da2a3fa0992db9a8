"""Keypoints-only training of the refiner through mmengine's Runner, from the
shipped config, with checkpoint save / load / resume under torch >= 2.6."""

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint

from mmport.apis import prepare_runner_cfg

CONFIG = 'configs/port/port_panoptic-hand2d_keypoints-only.py'


def _cfg(work_dir, max_iters=6, **overrides):
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=2),
                           dict(type='CosineAnnealingLR', by_epoch=False, begin=2,
                                end=max_iters, T_max=max_iters - 2)]
    cfg.train_dataloader.batch_size = 16
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=3)
    cfg.default_hooks.logger.interval = 1
    cfg.model.network.embed_dim = 32
    cfg.model.network.depth = 2
    cfg.merge_from_dict(overrides)
    return prepare_runner_cfg(cfg)


def test_config_inherits_mmpose_runtime():
    cfg = Config.fromfile(CONFIG)
    assert cfg.default_scope == 'mmpose'  # from mmpose::_base_/default_runtime.py
    assert cfg.visualizer.type == 'PoseLocalVisualizer'
    assert cfg.custom_imports == dict(imports=['mmport'], allow_failed_imports=False)


def test_train_validate_checkpoint_and_resume(tmp_path):
    runner = Runner.from_cfg(_cfg(tmp_path / 'run'))
    runner.train()
    ckpt = tmp_path / 'run' / 'iter_6.pth'
    assert ckpt.exists() and (tmp_path / 'run' / 'iter_3.pth').exists()
    metrics = runner.val_loop.run()
    assert {'EPE', 'init_EPE', 'EPE_replaced', 'PCKh@0.7', 'AUC'} <= set(metrics)
    assert metrics['init_EPE'] == pytest.approx(6.03, abs=0.01)  # fold 0 baseline
    assert metrics['num_instances'] == 170

    # mmengine's loader (torch >= 2.6) reads it through mmport's allowlist
    state = _load_checkpoint(str(ckpt), map_location='cpu')
    assert 'message_hub' in state and state['meta']['iter'] == 6
    weights = state['state_dict']

    # resume from iteration 3 and continue to 6: same weights as the straight run
    resumed = Runner.from_cfg(_cfg(tmp_path / 'resumed', resume=True,
                                   load_from=str(tmp_path / 'run' / 'iter_3.pth')))
    resumed.train()
    assert resumed.iter == 6
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, weights[key], msg=key)

    # Runner.test loads the checkpoint itself (load_from): same metric
    tested = Runner.from_cfg(_cfg(tmp_path / 'test', load_from=str(ckpt)))
    again = tested.test()
    assert again['EPE'] == pytest.approx(metrics['EPE'], rel=1e-6)


def test_killed_training_resumes_to_the_same_result(tmp_path):
    """tools/train.py killed mid-way (SIGKILL), then --resume: the final
    weights and metric equal those of an uninterrupted run with the seed."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO
    opts = ['train_cfg.max_iters=200', 'train_cfg.val_interval=200',
            'train_dataloader.batch_size=8', 'default_hooks.checkpoint.interval=10',
            'default_hooks.checkpoint.save_best=None', 'model.network.embed_dim=32',
            'model.network.depth=2', 'randomness.seed=7']

    def train(work, *extra):
        return [sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(work), *extra,
                '--cfg-options', *opts]

    killed = tmp_path / 'killed'
    proc = subprocess.Popen(train(killed), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / 'iter_20.pth').exists():
        assert proc.poll() is None and time.time() < deadline, 'training ended before the kill'
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / 'iter_200.pth').exists()
    resumed = subprocess.run(train(killed, '--resume'), cwd=REPO, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed' in (resumed.stdout + resumed.stderr).lower()
    straight = tmp_path / 'straight'
    done = subprocess.run(train(straight), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a = _load_checkpoint(str(killed / 'iter_200.pth'), map_location='cpu')['state_dict']
    b = _load_checkpoint(str(straight / 'iter_200.pth'), map_location='cpu')['state_dict']
    for key in b:
        torch.testing.assert_close(a[key], b[key], msg=key)
