# Fit the COCO-17 refiner to your detector through MMPose's tools: the same
# fine-tuning as tools/fit_refiner.py (from checkpoints/port_coco17_refiner.pth,
# on the detector's real errors, transplanted real errors and masked joints,
# Welsch loss), run by tools/train.py or tools/dist_train.sh. The rule it
# writes moves nothing: choose one by cross-validation with
# tools/fit_refiner.py (the tool does both), or set model.test_cfg.rule.
#
#   python tools/train.py configs/port/port_fit_coco_keypoints-only.py \
#       --cfg-options train_dataloader.dataset.ann_file=ANN.json \
#       train_dataloader.dataset.pipeline.0.results_file=RESULTS.json
#
# RESULTS: your detector's predictions on the persons of ANN (COCO keypoint
# results with the box it ran on, an MMPose dump or an MMPose 0.x pickle);
# ANN: their COCO annotations. Each person is framed by the results' box.
_base_ = ['./_base_/keypoints-only_runtime.py']  # MMPose's runtime + schedule

metainfo = dict(from_file='configs/_base_/datasets/coco.py')
load_from = 'checkpoints/port_coco17_refiner.pth'

# the architecture of the pretrained file; a doubtful joint's position
# stays an input (hint mode) and the network estimates its own errors (the
# do-no-harm gate's input)
model = dict(
    type='PORTRefiner',
    metainfo=metainfo,
    quality_kind='keypoint_similarity',
    network=dict(type='PoseRelationTransformer', embed_dim=32, depth=4, num_heads=1,
                 mlp_ratio=2.0, proj_hops=1, use_scores=True, mask_mode='hint',
                 predict_errors=True),
    # saturates beyond about twice its scale (frame units: the box's longer
    # side is 1): trains for OKS, not for the mean distance
    train_cfg=dict(visible_loss_weight=0.1, loss_type='welsch', loss_scale=0.03),
    test_cfg=dict(rule=dict(candidates='all', score_thr=None, gate=dict(margin='never'))))

train_pipeline = [
    dict(type='LoadInitialPredictions', results_file=None),
    # the detector's own predictions half of the time, its real errors laid
    # onto other persons' ground truth otherwise
    dict(type='SetRefinerInputs', init_prob=0.5, synthetic='transplant'),
    dict(type='KeypointRandomFlip', prob=0.5),
    dict(type='KeypointRandomAffine', rotate_factor=20, scale_range=(0.85, 1.15),
         shift_factor=0.05),
    dict(type='MaskJoints', ratio=(0.05, 0.2), strategies=('random', ), score_thr=0.5,
         erase=True),
    dict(type='PackRefinerInputs'),
]
train_dataloader = dict(
    batch_size=128, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root='', data_mode='topdown', ann_file=None,
                 data_prefix=dict(img=''), pipeline=train_pipeline))
# fine-tuning: a lower peak rate than training from scratch
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05))
val_cfg = val_dataloader = val_evaluator = None
test_cfg = test_dataloader = test_evaluator = None
