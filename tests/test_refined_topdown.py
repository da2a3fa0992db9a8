"""The refined config is an MMPose top-down model: MMPose's MobileNetV2 COCO
estimator (randomly initialised, saved as a model-zoo checkpoint) plus a
small PORT refiner (saved as a refiner checkpoint), run through MMPose's
own APIs and tools/test.py on MMPose's real COCO test images."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

import mmport  # noqa: F401
from mmport.utils import safe_load_pickle
from tests.conftest import REPO

CONFIG = 'configs/port/port_td-hm_mobilenetv2_coco-256x192.py'
MMPOSE_CFG = ('mmpose::body_2d_keypoint/topdown_heatmap/coco/'
              'td-hm_mobilenetv2_8xb64-210e_coco-256x192.py')
REFINER_CFG = 'configs/port/port_coco_keypoints-only.py'
COCO_DIR = osp.join(REPO, 'tests', 'data', 'coco')
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


def _coco_boxes():
    """{image path: gt boxes (n, 4) xywh} of the annotated people (those
    CocoDataset keeps: with keypoints)."""
    with open(osp.join(COCO_DIR, 'test_coco.json')) as f:
        coco = json.load(f)
    boxes = {}
    for img in coco['images']:
        anns = [a['bbox'] for a in coco['annotations']
                if a['image_id'] == img['id'] and a['num_keypoints'] > 0]
        boxes[osp.join(COCO_DIR, img['file_name'])] = np.array(anns, dtype=np.float32)
    return boxes


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """An MMPose estimator checkpoint (keys backbone.*, head.*, as in the
    model zoo), a refiner checkpoint (weights and config text, as the
    shipped ones) and a user's refined config pointing at the latter."""
    out = tmp_path_factory.mktemp('ckpt')
    init_default_scope('mmpose')
    torch.manual_seed(0)
    est_cfg = get_config(MMPOSE_CFG).model
    est_cfg.backbone.init_cfg = None
    estimator = MODELS.build(est_cfg)
    estimator.init_weights()
    estimator_path = str(out / 'estimator.pth')
    torch.save(dict(meta=dict(), state_dict=estimator.state_dict()), estimator_path)

    ref_cfg = Config.fromfile(REFINER_CFG)
    ref_cfg.model.network.embed_dim = 32
    ref_cfg.model.network.depth = 2
    refiner = MODELS.build(ref_cfg.model)
    torch.nn.init.normal_(refiner.network.head.weight, std=0.1)  # not the identity
    refiner_path = str(out / 'refiner.pth')
    torch.save(dict(meta=dict(cfg=ref_cfg.pretty_text), state_dict=refiner.state_dict()),
               refiner_path)

    config = out / 'refined_config.py'  # what a user writes, with a local refiner
    config.write_text(f"_base_ = ['{osp.join(REPO, CONFIG)}']\n"
                      f"model = dict(refiner_checkpoint='{refiner_path}')\n")
    return dict(estimator=estimator_path, refiner=refiner_path, config=str(config))


def _score_thr(model, boxes):
    """The median score of the estimator on the test images: half of the
    joints of the random estimator are refined."""
    from mmpose.apis import inference_topdown
    scores = [s.pred_instances.keypoint_scores for img, b in boxes.items()
              for s in inference_topdown(model, img, b, bbox_format='xywh')]
    return float(np.median(np.concatenate(scores)))


def test_config_is_the_mmpose_config_plus_a_refiner():
    cfg = Config.fromfile(CONFIG)
    base = get_config(MMPOSE_CFG)
    assert cfg.model.type == 'RefinedTopdownPoseEstimator'
    assert cfg.model.refiner_checkpoint.startswith('checkpoints/')
    for key in ('backbone', 'head', 'data_preprocessor', 'test_cfg'):
        assert cfg.model[key] == base.model[key], key
    assert set(cfg.model) - {'_scope_'} == set(base.model) | {'refiner_checkpoint'}
    assert '_base_.model' not in open(CONFIG).read()  # no copy of the base model
    assert cfg.visualizer.type == 'RefinedPoseLocalVisualizer'


def test_init_model_loads_every_estimator_weight(checkpoints):
    from mmpose.apis import init_model
    model = init_model(checkpoints['config'], checkpoints['estimator'], device='cpu')
    state = model.state_dict()
    est = torch.load(checkpoints['estimator'], weights_only=True)['state_dict']
    ref = torch.load(checkpoints['refiner'], weights_only=True)['state_dict']
    assert set(state) == set(est) | {f'refiner.{k}' for k in ref}
    for key, value in est.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    for key, value in ref.items():
        torch.testing.assert_close(state[f'refiner.{key}'], value, rtol=0, atol=0, msg=key)
    assert not model.training and not model.refiner.training
    # the refiner's architecture (the keys above) and test settings came
    # from its checkpoint
    assert model.refiner.rule.score_thr == 0.3
    assert model.test_cfg['flip_test'] is True  # MMPose's flip test, the estimator's


def test_inference_topdown_refines_and_refine_off_is_plain_mmpose(checkpoints):
    from mmpose.apis import inference_topdown, init_model
    boxes = _coco_boxes()
    plain = init_model(get_config(MMPOSE_CFG), checkpoints['estimator'], device='cpu')
    thr = _score_thr(plain, boxes)
    off = init_model(checkpoints['config'], checkpoints['estimator'], device='cpu',
                     cfg_options=dict(model=dict(refine=False)))
    on = init_model(checkpoints['config'], checkpoints['estimator'], device='cpu',
                    cfg_options=dict(model=dict(refine_cfg=dict(score_thr=thr))))
    refined_total = 0
    for img, b in boxes.items():
        want = inference_topdown(plain, img, b, bbox_format='xywh')
        got_off = inference_topdown(off, img, b, bbox_format='xywh')
        got_on = inference_topdown(on, img, b, bbox_format='xywh')
        assert len(want) == len(got_off) == len(got_on) == len(b)
        for w, a, r in zip(want, got_off, got_on):
            w, a, r = w.pred_instances, a.pred_instances, r.pred_instances
            for key in w.keys():  # refinement off: exactly MMPose's output
                np.testing.assert_array_equal(a.get(key), w.get(key), err_msg=key)
            assert not a.refined_mask.any()
            np.testing.assert_array_equal(r.keypoints_init, w.keypoints)
            np.testing.assert_array_equal(r.keypoint_scores, w.keypoint_scores)
            np.testing.assert_array_equal(r.keypoint_scores_init, w.keypoint_scores)
            changed = (r.keypoints != w.keypoints).any(-1)
            np.testing.assert_array_equal(changed, r.refined_mask)
            assert not (r.refined_mask & (w.keypoint_scores >= thr)).any()
            refined_total += r.refined_mask.sum()
    assert refined_total > 0


def test_a_rescoring_refiner_rescores_the_instances(checkpoints):
    """The shipped body refiner (it estimates keypoint similarities) with
    ``refine_cfg.rescore``: each instance's ``bbox_scores`` (1 for given
    boxes) become the refiner's expected OKS; the estimator's are kept."""
    from mmpose.apis import inference_topdown, init_model
    model = init_model(osp.join(REPO, CONFIG), checkpoints['estimator'], device='cpu',
                       cfg_options=dict(model=dict(refine_cfg=dict(rescore=dict(weight=1.0)))))
    img, b = next((img, b) for img, b in _coco_boxes().items() if len(b) > 1)
    out = [s.pred_instances for s in inference_topdown(model, img, b, bbox_format='xywh')]
    init = np.concatenate([p.bbox_scores_init for p in out])
    rescored = np.concatenate([p.bbox_scores for p in out])
    np.testing.assert_array_equal(init, 1.0)
    assert ((rescored > 0) & (rescored < 1)).all() and np.unique(rescored).size == len(b)
    kpts = torch.from_numpy(np.concatenate([p.keypoints_init for p in out])).float()
    scores = torch.from_numpy(np.concatenate([p.keypoint_scores for p in out])).float()
    boxes = torch.from_numpy(np.concatenate([p.bboxes for p in out])).float()
    _, _, expected = model.refiner.refine_and_rescore(kpts, scores, boxes, torch.ones(len(b)))
    np.testing.assert_allclose(rescored, expected.numpy(), rtol=1e-5)


def test_mmpose_inferencer_returns_refined_instances(checkpoints, tmp_path):
    from mmpose.apis import MMPoseInferencer, inference_topdown, init_model
    img = osp.join(COCO_DIR, '000000000785.jpg')
    # no detector weights can be downloaded here: the whole image is the box
    inferencer = MMPoseInferencer(pose2d=checkpoints['config'],
                                  pose2d_weights=checkpoints['estimator'],
                                  det_model='whole_image', device='cpu')
    result = next(inferencer(img, return_datasamples=True, vis_out_dir=str(tmp_path)))
    pred = result['predictions'][0].pred_instances
    assert pred.refined_mask.shape == (1, 17) and pred.keypoints_init.shape == (1, 17, 2)
    model = init_model(checkpoints['config'], checkpoints['estimator'], device='cpu')
    want = inference_topdown(model, img, np.array([[0, 0, 640, 425]]))[0].pred_instances
    np.testing.assert_allclose(pred.keypoints, want.keypoints, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(pred.refined_mask, want.refined_mask)
    assert os.listdir(tmp_path) == ['000000000785.jpg']


def test_tools_test_loads_a_zoo_checkpoint_and_shows_refined_joints(checkpoints, tmp_path):
    from mmpose.apis import inference_topdown, init_model
    boxes = _coco_boxes()
    estimator = init_model(get_config(MMPOSE_CFG), checkpoints['estimator'], device='cpu')
    thr = _score_thr(estimator, boxes)
    dump = str(tmp_path / 'dump.pkl')
    cmd = [sys.executable, 'tools/test.py', checkpoints['config'], checkpoints['estimator'],
           '--work-dir', str(tmp_path), '--dump', dump, '--show-dir', 'vis', '--badcase',
           '--cfg-options', *COCO_TEST, f'model.refine_cfg.score_thr={thr}']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'coco/AP' in log and 'EPE_replaced' in log
    results = safe_load_pickle(dump)
    assert len(results) == 12  # CocoDataset keeps the 12 instances with keypoints

    # the estimator's weights were loaded: the same keypoints as MMPose's API
    # gives with that checkpoint on the same boxes
    model = init_model(checkpoints['config'], checkpoints['estimator'], device='cpu',
                       cfg_options=dict(model=dict(refine_cfg=dict(score_thr=thr))))
    by_image = {}
    for s in results:
        by_image.setdefault(s['img_path'], []).append(s['pred_instances'])
    for img, preds in by_image.items():
        xyxy = np.concatenate([p['bboxes'] for p in preds])
        want = inference_topdown(model, img, xyxy, bbox_format='xyxy')
        for p, w in zip(preds, want):
            np.testing.assert_allclose(p['keypoints_init'], w.pred_instances.keypoints_init,
                                       rtol=0, atol=1e-3)
            np.testing.assert_array_equal(p['refined_mask'], w.pred_instances.refined_mask)
    assert sum(p['refined_mask'].sum() for preds in by_image.values() for p in preds) > 0

    # --show-dir: one drawing per image; --badcase (MMPose's hook, which
    # reads model.head.loss): one per instance above its loss threshold
    drawn = {osp.basename(d): files for d, _, files in os.walk(tmp_path)}
    assert sorted(drawn['vis']) == sorted(osp.basename(p) for p in by_image)
    assert any(f.endswith('.jpg') for f in drawn['badcase'])


def test_loss_trains_the_refiner_only_and_keeps_the_estimator_frozen(checkpoints):
    from mmengine.dataset import pseudo_collate
    from mmpose.registry import DATASETS
    cfg = Config.fromfile(checkpoints['config'])
    init_default_scope('mmpose')
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'  # not fetched: nothing downloads
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()  # as Runner.train: leaves the loaded refiner and the estimator
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    model.train()
    assert model.training and model.refiner.training
    assert not model.backbone.training and not model.head.training  # BatchNorm frozen
    dataset = DATASETS.build(dict(
        type='CocoDataset', data_root='tests/data/coco/', ann_file='test_coco.json',
        data_prefix=dict(img=''), pipeline=cfg.train_pipeline))
    batch = model.data_preprocessor(pseudo_collate([dataset[i] for i in range(4)]), True)
    bn = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    running_mean = bn.running_mean.clone()
    losses = model(**batch, mode='loss')
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert all(p.grad is None and not p.requires_grad for n, p in model.named_parameters()
               if not n.startswith('refiner.'))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.refiner.parameters())
    torch.testing.assert_close(bn.running_mean, running_mean)


def test_loss_targets_are_in_the_frame_predictions_are_mapped_to(checkpoints):
    """Without rotation, MMPose's mapping of crop coordinates back to the
    image inverts the crop: the targets are the image's ground truth."""
    from mmpose.registry import DATASETS
    from mmport.models.refined_topdown import RefinedTopdownPoseEstimator
    cfg = Config.fromfile(checkpoints['config'])
    init_default_scope('mmpose')
    pipeline = [dict(t, rotate_prob=0.0) if t['type'] == 'RandomBBoxTransform' else t
                for t in cfg.train_pipeline]
    dataset = DATASETS.build(dict(
        type='CocoDataset', data_root='tests/data/coco/', ann_file='test_coco.json',
        data_prefix=dict(img=''), pipeline=pipeline))
    torch.manual_seed(0)
    np.random.seed(0)
    for i in range(4):
        sample = dataset[i]['data_samples']
        target = RefinedTopdownPoseEstimator._crop_to_image(sample, 'cpu').numpy()
        np.testing.assert_allclose(target, sample.gt_instances.keypoints, rtol=0, atol=0.05)


def test_tools_train_trains_the_refiner_from_a_zoo_estimator(checkpoints, tmp_path):
    """tools/train.py with load_from=ESTIMATOR.pth: no weights fetched, the
    estimator loaded and unchanged, the refiner trained; the saved
    checkpoint serves as a refiner checkpoint and as a whole model's."""
    from mmpose.apis import init_model
    from mmport.apis import load_refiner
    cmd = [sys.executable, 'tools/train.py', checkpoints['config'], '--work-dir', str(tmp_path),
           '--cfg-options', f'load_from={checkpoints["estimator"]}', 'train_cfg.max_epochs=1',
           'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
           'train_dataloader.persistent_workers=False',
           'train_dataloader.dataset.data_root=tests/data/coco/',
           'train_dataloader.dataset.ann_file=test_coco.json',
           'train_dataloader.dataset.data_prefix.img=', 'val_cfg=None', 'val_dataloader=None',
           'val_evaluator=None', 'param_scheduler=None']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trained = str(tmp_path / 'epoch_1.pth')
    state = torch.load(trained, weights_only=False)['state_dict']
    est = torch.load(checkpoints['estimator'], weights_only=True)['state_dict']
    ref = torch.load(checkpoints['refiner'], weights_only=True)['state_dict']
    for key, value in est.items():  # frozen, BatchNorm statistics included
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    assert any(not torch.equal(state[f'refiner.{k}'], v) for k, v in ref.items())
    refiner = load_refiner(trained)
    for key, value in refiner.state_dict().items():
        torch.testing.assert_close(value, state[f'refiner.{key}'], rtol=0, atol=0)
    model = init_model(checkpoints['config'], trained, device='cpu')
    for key, value in model.state_dict().items():  # refiner.* keys override the config's
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
