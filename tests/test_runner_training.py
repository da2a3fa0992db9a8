"""Keypoints-only training of the refiner through mmengine's Runner, from the
shipped config, with checkpoint save / load / resume under torch >= 2.6."""
import copy
import os.path as osp

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
