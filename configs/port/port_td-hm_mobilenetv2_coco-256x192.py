# MMPose's MobileNetV2 COCO top-down model, refined by PORT.
#
# The pattern for any top-down config: inherit it, wrap its model.
#   python tools/test.py configs/port/port_td-hm_mobilenetv2_coco-256x192.py \
#       ESTIMATOR.pth --cfg-options model.refiner_checkpoint=REFINER.pth \
#       model.test_cfg.score_thr=0.3
# (or set model.estimator_checkpoint and pass the refiner checkpoint as the
# positional one). model.refine=False gives the estimator's output unchanged.
_base_ = ['mmpose::body_2d_keypoint/topdown_heatmap/coco/'
          'td-hm_mobilenetv2_8xb64-210e_coco-256x192.py']
custom_imports = dict(imports=['mmport'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='RefinedTopdownPoseEstimator',
    estimator={{_base_.model}},
    estimator_checkpoint=None,
    # e.g. the COCO-17 refiner that `make benchmark` trains on the bundled
    # COCO subset: work_dirs/benchmark/port_coco17_refiner.pth
    refiner_checkpoint=None,
    refine=True,
    refiner=dict(
        type='PORTRefiner',
        metainfo=dict(from_file='configs/_base_/datasets/coco.py'),
        network=dict(type='PoseRelationTransformer', embed_dim=64, depth=4, num_heads=4,
                     mlp_ratio=2.0, proj_hops=1, use_scores=True, mask_mode='token'),
        test_cfg=dict(score_thr=0.3, blend='replace', min_confident=3)),
    test_cfg=dict())

# the estimator is frozen: a refined config trains the refiner on the
# estimator's own predictions (PoseFix-style) with the base pipeline
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05))
val_evaluator = [
    {{_base_.val_evaluator}},
    dict(type='RefinementMetric', pck_thr=0.05, norm_items=['bbox']),
]
test_evaluator = val_evaluator
