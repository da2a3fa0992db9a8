# PORT refiner trained keypoints-only (no images) on CMU Panoptic HandDB
# annotations plus MMPose MobileNetV2's real predictions on them.
#
# As shipped it runs on the bundled data (data/panoptic: the 846-hand test
# split with its real predictions) as fold 0 of the grouped 5-fold split the
# benchmark uses: trained on folds 1-4, tested on fold 0. With the full
# Panoptic HandDB, point the datasets at panoptic_train.json / a results
# file of your detector and drop the GroupedFoldDataset wrappers.
_base_ = ['./_base_/keypoints-only_runtime.py']  # MMPose's runtime + schedule

metainfo = dict(from_file='configs/_base_/datasets/panoptic_hand2d.py')
data_root = 'data/panoptic/'
ann_file = 'annotations/panoptic_test.json'
predictions = 'data/panoptic/mobilenetv2_panoptic_256x256_test.pkl'
score_thr = 0.4
# grouped 5-fold split of the bundled data (see GroupedFoldDataset)
train_folds = [1, 2, 3, 4]
test_folds = [0]

# model: half PORT's width and a single attention head. Measured on the
# benchmark's folds (README): as accurate as PORT's 64-wide, 4-head size,
# with a quarter of its parameters and well over twice its speed
model = dict(
    type='PORTRefiner',
    metainfo=metainfo,
    network=dict(
        type='PoseRelationTransformer',
        embed_dim=32,
        depth=4,
        num_heads=1,
        mlp_ratio=2.0,
        proj_hops=1,
        use_scores=True,
        mask_mode='hint'),
    # the euclidean joint error is what EPE measures (measured better than L1)
    train_cfg=dict(visible_loss_weight=0.1, loss_type='euclidean'),
    # hint mode sees the doubtful positions too, so even a hand whose joints
    # are all doubtful can be refined (measured: refining only hands with >= 3
    # confident joints left a third of the doubtful joints untouched)
    test_cfg=dict(rule=dict(candidates='below_score', score_thr=score_thr)))

# schedule: AdamW, linear warm-up then cosine decay
default_hooks = dict(checkpoint=dict(save_best='EPE', rule='less'))

# pipelines: keypoints only
train_pipeline = [
    dict(type='LoadInitialPredictions', results_file=predictions),
    # real predictions a quarter of the time, transplanted real errors
    # otherwise: fewer repeats of the same few hundred real hands (measured
    # better than half and half)
    dict(type='SetRefinerInputs', init_prob=0.25, synthetic='transplant'),
    dict(type='KeypointRandomFlip', prob=0.5),
    dict(type='KeypointRandomAffine', rotate_factor=30, scale_range=(0.8, 1.2),
         shift_factor=0.05),
    # besides the doubtful joints, 10-20% of the others, uniformly (measured
    # better than PORT's 30-40%), erased from the input so that they are
    # reconstructed from context, while doubtful joints stay hints (measured
    # better than hinting them too; README, third design table)
    dict(type='MaskJoints', ratio=(0.1, 0.2), strategies=('random', ), score_thr=score_thr,
         erase=True),
    dict(type='PackRefinerInputs'),
]
test_pipeline = [
    dict(type='LoadInitialPredictions', results_file=predictions),
    dict(type='SetRefinerInputs', init_prob=1.0),
    dict(type='PackRefinerInputs'),
]
base_dataset = dict(
    type='PanopticHand2DDataset', data_root=data_root, data_mode='topdown',
    ann_file=ann_file, data_prefix=dict(img=''))

train_dataloader = dict(
    batch_size=128, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='GroupedFoldDataset', folds=train_folds,
                 dataset=dict(base_dataset, pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=256, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(type='GroupedFoldDataset', folds=test_folds,
                 dataset=dict(base_dataset, pipeline=test_pipeline, test_mode=True)))
test_dataloader = val_dataloader
val_evaluator = dict(type='RefinementMetric', pck_thr=0.7, norm_items=['bbox', 'head'])
test_evaluator = val_evaluator
