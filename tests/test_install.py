"""The installed stack: mmpose's models import (compiled mmcv, mmdet), an
MMPose top-down model from an mmpose:: config runs on a real image, and
mmport's modules are visible through mmpose.registry."""
import numpy as np
import torch
from mmengine.hub import get_config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmpose.registry import DATASETS, METRICS, MODELS, TRANSFORMS

import mmport

MMPOSE_CFG = ('mmpose::body_2d_keypoint/topdown_heatmap/coco/'
              'td-hm_mobilenetv2_8xb64-210e_coco-256x192.py')


def test_compiled_mmcv_ops_run_on_cpu():
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]


def test_mmport_registers_into_mmpose_registries():
    assert mmport.__version__
    for registry, names in ((MODELS, ['PORTRefiner', 'PoseRelationTransformer',
                                      'RefinedTopdownPoseEstimator']),
                            (TRANSFORMS, ['MaskJoints', 'SetRefinerInputs', 'SynthesizePoseErrors',
                                          'KeypointRandomAffine', 'KeypointRandomFlip',
                                          'PackRefinerInputs', 'LoadInitialPredictions',
                                          'LoadOcclusionFlags']),
                            (METRICS, ['RefinementMetric']),
                            (DATASETS, ['GroupedFoldDataset'])):
        for name in names:
            assert registry.get(name) is not None, f'{name} not in mmpose {registry.name}'
    assert MODELS.get('PORTRefiner').__module__.startswith('mmport.')


def test_mmpose_topdown_model_runs_on_a_real_image():
    init_default_scope('mmpose')
    cfg = get_config(MMPOSE_CFG)
    cfg.model.backbone.init_cfg = None  # no download: random weights
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    assert 9.0e6 < sum(p.numel() for p in model.parameters()) < 10.0e6
    dataset = DATASETS.build(dict(
        type='CocoDataset', data_root='tests/data/coco/', ann_file='test_coco.json',
        data_prefix=dict(img=''), test_mode=True, pipeline=cfg.val_pipeline))
    assert len(dataset) == 12
    batch = pseudo_collate([dataset[0], dataset[1]])
    with torch.no_grad():
        out = model.test_step(batch)
    assert len(out) == 2
    kpts = out[0].pred_instances.keypoints
    assert kpts.shape == (1, 17, 2) and np.isfinite(kpts).all()
    # predictions land in the person's box (image coordinates, not heatmap ones)
    x1, y1, x2, y2 = out[0].gt_instances.bboxes[0]
    w, h = x2 - x1, y2 - y1
    assert ((kpts[0, :, 0] > x1 - w) & (kpts[0, :, 0] < x2 + w)).all()
    assert ((kpts[0, :, 1] > y1 - h) & (kpts[0, :, 1] < y2 + h)).all()
