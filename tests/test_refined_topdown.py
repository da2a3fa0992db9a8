"""A real MMPose top-down model (MobileNetV2 from an inherited mmpose::
config, randomly initialised) chained with PORT, run by tools/test.py on
MMPose's real COCO test images, refinement on and off."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

import mmport  # noqa: F401
from mmport.utils import safe_load_pickle
from tests.conftest import REPO

CONFIG = 'configs/port/port_td-hm_mobilenetv2_coco-256x192.py'
COCO_TEST = [
    'test_dataloader.dataset.data_root=tests/data/coco/',
    'test_dataloader.dataset.ann_file=test_coco.json',
    'test_dataloader.dataset.bbox_file=None',
    'test_dataloader.dataset.data_prefix.img=',
    'test_dataloader.batch_size=4',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'test_evaluator.0.ann_file=tests/data/coco/test_coco.json',
]


def test_chained_config_inherits_the_mmpose_model():
    cfg = Config.fromfile(CONFIG)
    assert cfg.model.type == 'RefinedTopdownPoseEstimator'
    assert cfg.model.estimator.type == 'TopdownPoseEstimator'
    assert cfg.model.estimator.backbone.type == 'MobileNetV2'
    assert cfg.test_dataloader.dataset.type == 'CocoDataset'


@pytest.fixture(scope='module')
def random_checkpoints(tmp_path_factory):
    """Randomly initialised estimator and refiner, saved as checkpoints."""
    out = tmp_path_factory.mktemp('ckpt')
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmpose')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    torch.nn.init.normal_(model.refiner.network.head.weight, std=0.1)  # not the identity
    paths = {}
    for part in ('estimator', 'refiner'):
        paths[part] = str(out / f'{part}.pth')
        torch.save({'state_dict': getattr(model, part).state_dict()}, paths[part])
    return paths


def _run_test(work_dir, ckpts, *options):
    dump = osp.join(work_dir, 'dump.pkl')
    cmd = [sys.executable, 'tools/test.py', CONFIG, '--work-dir', str(work_dir), '--dump', dump,
           '--out', osp.join(work_dir, 'metrics.json'), '--cfg-options', *COCO_TEST,
           f'model.estimator_checkpoint={ckpts["estimator"]}',
           f'model.refiner_checkpoint={ckpts["refiner"]}', *options]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return safe_load_pickle(dump), proc.stdout + proc.stderr


def test_tools_test_refines_only_low_confidence_joints(tmp_path, random_checkpoints):
    off, _ = _run_test(tmp_path / 'off', random_checkpoints, 'model.refine=False')
    assert len(off) == 12  # CocoDataset keeps 12 of the 14 instances
    scores = np.concatenate([s['pred_instances']['keypoint_scores'] for s in off])
    thr = float(np.median(scores))
    for s in off:  # refinement off: the estimator's output, untouched
        p = s['pred_instances']
        np.testing.assert_array_equal(p['keypoints'], p['keypoints_init'])
        assert not p['refined_mask'].any()

    on, log = _run_test(tmp_path / 'on', random_checkpoints, f'model.test_cfg.score_thr={thr}')
    assert 'coco/AP' in log and 'EPE_replaced' in log
    replaced_total = 0
    for a, b in zip(off, on):
        assert a['img_path'] == b['img_path']
        pa, pb = a['pred_instances'], b['pred_instances']
        np.testing.assert_allclose(pb['keypoints_init'], pa['keypoints'], rtol=1e-5, atol=1e-3)
        changed = ~np.isclose(pb['keypoints'], pb['keypoints_init'], atol=1e-3).all(-1)
        replaced = pb['refined_mask']
        # refined keypoints differ exactly at the replaced joints
        np.testing.assert_array_equal(changed, replaced)
        np.testing.assert_array_equal(replaced, (pb['keypoint_scores'] < thr) & replaced)
        replaced_total += replaced.sum()
    assert replaced_total > 0


def test_loss_trains_the_refiner_only_and_keeps_the_estimator_frozen():
    from mmengine.dataset import pseudo_collate
    from mmpose.registry import DATASETS
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmpose')
    cfg.model.estimator.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    assert not model.estimator.training  # frozen: BatchNorm in eval mode
    dataset = DATASETS.build(dict(
        type='CocoDataset', data_root='tests/data/coco/', ann_file='test_coco.json',
        data_prefix=dict(img=''), pipeline=cfg.train_pipeline))
    batch = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(4)]), True)
    bn = next(m for m in model.estimator.modules() if isinstance(m, torch.nn.BatchNorm2d))
    running_mean = bn.running_mean.clone()
    losses = model(**batch, mode='loss')
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert all(p.grad is None for p in model.estimator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.refiner.parameters())
    torch.testing.assert_close(bn.running_mean, running_mean)
