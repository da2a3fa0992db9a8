# MMPose's MobileNetV2 COCO top-down model, refined by PORT.
#
# The pattern for any MMPose top-down config: inherit it, change the model's
# type, name the refiner checkpoint (its architecture and test-time rule come
# from it). Test with MMPose's model-zoo estimator checkpoint:
#   python tools/test.py configs/port/port_td-hm_mobilenetv2_coco-256x192.py \
#       ESTIMATOR.pth [--show-dir vis]
# Options: model.refine=False (the estimator's output unchanged),
# model.refine_cfg.rescore=None (keep the estimator's instance scores),
# model.refiner_checkpoint=OTHER_REFINER.pth. The same config works with
# mmpose.apis.init_model / inference_topdown and MMPoseInferencer.
_base_ = ['mmpose::body_2d_keypoint/topdown_heatmap/coco/'
          'td-hm_mobilenetv2_8xb64-210e_coco-256x192.py']
custom_imports = dict(imports=['mmport'], allow_failed_imports=False)

# the shipped COCO-17 body refiner (trained keypoints-only on COCO train2017
# by python -m benchmarks.train_shipped_refiners --only body): its rule moves
# nothing; a refiner fitted to this estimator's predictions
# (tools/fit_refiner.py RESULTS --ann ANN --out FITTED.pth, RESULTS from
# tools/test.py --dump of the unrefined model) is what changes its output
coco17_refiner_checkpoint = 'checkpoints/port_coco17_refiner.pth'

model = dict(type='RefinedTopdownPoseEstimator', refiner_checkpoint=coco17_refiner_checkpoint)

# --show-dir: one drawing per image (all its people); refined joints get a
# ring and a line from the estimator's position
visualizer = dict(type='RefinedPoseLocalVisualizer')
default_hooks = dict(visualization=dict(type='PerImagePoseVisualizationHook'))

val_evaluator = [
    {{_base_.val_evaluator}},
    dict(type='RefinementMetric', pck_thr=0.05, norm_items=['bbox']),
]
test_evaluator = val_evaluator

# Training this config trains the refiner alone (the estimator is frozen) on
# the estimator's own predictions:
#   python tools/train.py CFG --cfg-options load_from=ESTIMATOR.pth
# MMPose's crop augmentation without heatmap targets (the estimator's loss is
# not computed); the crop-space ground truth is packed for the refiner's loss.
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
    dict(type='TopdownAffine', input_size={{_base_.codec.input_size}}),
    dict(type='PackPoseInputs', pack_transformed=True),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05))
