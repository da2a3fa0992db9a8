import os
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEST_DATA = osp.join(REPO, 'tests', 'data')
PANOPTIC_ANN = osp.join(REPO, 'data', 'panoptic', 'annotations', 'panoptic_test.json')
PANOPTIC_PRED = osp.join(REPO, 'data', 'panoptic', 'mobilenetv2_panoptic_256x256_test.pkl')


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    # configs name data paths relative to the repository root, as tools do
    monkeypatch.chdir(REPO)
    os.environ.setdefault('OMP_NUM_THREADS', '2')


def train_refiner(config, work_dir, iters=4):
    """A refiner trained for a few iterations through the Runner (small net)."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmport.apis import prepare_runner_cfg
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters + 1
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=iters)
    cfg.train_dataloader.batch_size = 16
    cfg.model.network.embed_dim = 32
    cfg.model.network.depth = 2
    cfg.model.test_cfg.rule.score_thr = 0.3
    Runner.from_cfg(prepare_runner_cfg(cfg)).train()
    return str(work_dir / f'iter_{iters}.pth')


@pytest.fixture(scope='session')
def coco_ckpt(tmp_path_factory):
    os.chdir(REPO)
    return train_refiner('configs/port/port_coco_keypoints-only.py',
                         tmp_path_factory.mktemp('coco_refiner'))


@pytest.fixture(scope='session')
def hand_ckpt(tmp_path_factory):
    os.chdir(REPO)
    return train_refiner('configs/port/port_panoptic-hand2d_keypoints-only.py',
                         tmp_path_factory.mktemp('hand_refiner'))


# The shipped COCO-17 body refiner ships with a rule that moves nothing
# (RefinementRule.keep_input()); the rule it shipped with before, over the
# same weights: tests of gating, moving and rescoring through the body file
# apply it to the loaded refiner (or to a copy of the file).
BODY = 'checkpoints/port_coco17_refiner.pth'
GATED_BODY_RULE = dict(candidates='all', score_thr=None,
                       gate=dict(kind='expected_gain', margin=0.05, outside_box=None),
                       rescore=dict(weight=0.75, needs_box=True, calibration=None),
                       blend='replace', min_confident=0, flip_test=False)


def gated_body_refiner():
    """The shipped body refiner's weights with ``GATED_BODY_RULE``."""
    from mmport.apis import load_refiner
    refiner = load_refiner(BODY)
    refiner.rule = GATED_BODY_RULE
    return refiner


def write_gated_body_checkpoint(directory):
    """A copy of the shipped body refiner file whose stored rule is
    ``GATED_BODY_RULE`` (for tools that read a checkpoint path)."""
    import torch
    from mmengine.config import Config
    ckpt = torch.load(osp.join(REPO, BODY), map_location='cpu', weights_only=False)
    cfg = Config.fromstring(ckpt['meta']['cfg'], '.py')
    cfg.model.test_cfg = dict(rule=GATED_BODY_RULE)
    ckpt['meta']['cfg'] = Config(dict(model=cfg.model.to_dict())).pretty_text
    path = osp.join(str(directory), 'port_coco17_refiner_gated.pth')
    torch.save(ckpt, path)
    return path
