"""The same refinement after an MMPose bottom-up estimator: DEKR (HRNet-W32,
randomly initialised, saved as a model-zoo checkpoint) on a real COCO test
image through mmpose.apis.inference_bottomup. DEKR predicts no boxes, so
this also covers framing instances by their keypoints. (A random RTMO
predicts NaN keypoints and empty boxes: nothing to refine.)"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

import mmport  # noqa: F401
from tests.conftest import REPO

DEKR_CFG = 'mmpose::body_2d_keypoint/dekr/coco/dekr_hrnet-w32_8xb10-140e_coco-512x512.py'
REFINER_CFG = 'configs/port/port_coco_keypoints-only.py'
IMAGE = osp.join(REPO, 'tests', 'data', 'coco', '000000196141.jpg')


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp('ckpt')
    init_default_scope('mmpose')
    torch.manual_seed(0)
    est_cfg = get_config(DEKR_CFG).model
    est_cfg.backbone.init_cfg = est_cfg.head.rescore_cfg.init_cfg = None  # no downloads
    # PyTorch's default initialisation: DEKR's own gives no instance at all
    estimator = MODELS.build(est_cfg)
    estimator_path = str(out / 'dekr.pth')
    torch.save(dict(meta=dict(), state_dict=estimator.state_dict()), estimator_path)
    ref_cfg = Config.fromfile(REFINER_CFG)
    ref_cfg.model.network.embed_dim = 32
    ref_cfg.model.network.depth = 2
    ref_cfg.model.test_cfg.rule.score_thr = 0.0  # about half of the random scores
    refiner = MODELS.build(ref_cfg.model)
    torch.nn.init.normal_(refiner.network.head.weight, std=0.1)  # not the identity
    refiner_path = str(out / 'refiner.pth')
    torch.save(dict(meta=dict(cfg=ref_cfg.pretty_text), state_dict=refiner.state_dict()),
               refiner_path)
    config = out / 'refined_dekr.py'
    config.write_text(f"_base_ = ['{DEKR_CFG}']\n"
                      "custom_imports = dict(imports=['mmport'], allow_failed_imports=False)\n"
                      "model = dict(type='RefinedBottomupPoseEstimator', "
                      f"refiner_checkpoint='{refiner_path}')\n")
    return dict(estimator=estimator_path, config=str(config))


def test_inference_bottomup_refines_and_keeps_mmpose_output_otherwise(checkpoints):
    from mmpose.apis import inference_bottomup, init_model
    plain = init_model(get_config(DEKR_CFG), checkpoints['estimator'], device='cpu')
    model = init_model(checkpoints['config'], checkpoints['estimator'], device='cpu')
    want = inference_bottomup(plain, IMAGE)[0].pred_instances
    got_on = inference_bottomup(model, IMAGE)[0].pred_instances
    assert len(want) > 0
    for key in want.keys():  # all of MMPose's output but the refined joints
        if key != 'keypoints':
            np.testing.assert_array_equal(got_on.get(key), want.get(key), err_msg=key)
    np.testing.assert_array_equal(got_on.keypoints_init, want.keypoints)
    np.testing.assert_array_equal(got_on.keypoint_scores, want.keypoint_scores)
    changed = (got_on.keypoints != want.keypoints).any(-1)
    np.testing.assert_array_equal(changed, got_on.refined_mask)
    assert got_on.refined_mask.any()
    assert not (got_on.refined_mask & (want.keypoint_scores >= 0.0)).any()
