# PORT refiner for COCO-17 bodies, trained keypoints-only (no images) on
# COCO person annotations whose poses are corrupted the way detectors err
# (SynthesizePoseErrors, PoseFix's scheme) and masked (MaskJoints).
#
# As shipped it trains on the bundled real COCO val2017 subset
# (data/coco_val_subset). With the full COCO train set:
#   --cfg-options data_root=data/coco/ \
#     train_dataloader.dataset.ann_file=annotations/person_keypoints_train2017.json
# (and point SynthesizePoseErrors.ann_file at the same file).
_base_ = ['./_base_/keypoints-only_runtime.py']  # MMPose's runtime + schedule

metainfo = dict(from_file='configs/_base_/datasets/coco.py')
data_root = 'data/coco_val_subset/'
ann_file = 'annotations/person_keypoints_val2017_subset.json'
score_thr = 0.3

model = dict(
    type='PORTRefiner',
    metainfo=metainfo,
    network=dict(type='PoseRelationTransformer', embed_dim=64, depth=4, num_heads=4,
                 mlp_ratio=2.0, proj_hops=1, use_scores=True, mask_mode='token'),
    train_cfg=dict(visible_loss_weight=0.1),
    # refine the joints below the threshold of instances with at least 3
    # joints above it
    test_cfg=dict(rule=dict(candidates='below_score', score_thr=score_thr, min_confident=3)))


train_pipeline = [
    dict(type='LoadOcclusionFlags'),
    dict(type='SynthesizePoseErrors', metainfo=metainfo, ann_file=data_root + ann_file),
    dict(type='KeypointRandomFlip', prob=0.5),
    dict(type='KeypointRandomAffine', rotate_factor=30, scale_range=(0.8, 1.2),
         shift_factor=0.05),
    dict(type='MaskJoints', ratio=(0.3, 0.4), score_thr=score_thr),
    dict(type='PackRefinerInputs'),
]
# held-out poses corrupted with a fixed seed: the same inputs on every run
test_pipeline = [
    dict(type='LoadOcclusionFlags'),
    dict(type='SynthesizePoseErrors', metainfo=metainfo, ann_file=data_root + ann_file,
         seed=1234),
    dict(type='PackRefinerInputs'),
]
base_dataset = dict(type='CocoDataset', data_root=data_root, data_mode='topdown',
                    ann_file=ann_file, data_prefix=dict(img=''))
# batch 64: error synthesis makes this pipeline about twice the hand one's cost
train_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='GroupedFoldDataset', folds=[1, 2, 3, 4],
                 dataset=dict(base_dataset, pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=256, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(type='GroupedFoldDataset', folds=[0],
                 dataset=dict(base_dataset, pipeline=test_pipeline, test_mode=True)))
test_dataloader = val_dataloader
val_evaluator = dict(type='RefinementMetric', pck_thr=0.1, norm_items=['bbox', 'torso'])
test_evaluator = val_evaluator
