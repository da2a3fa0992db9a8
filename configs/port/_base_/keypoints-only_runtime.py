# Runtime shared by mmport's keypoints-only refiner configs: MMPose's default
# runtime, an iteration-based AdamW schedule (linear warm-up, cosine decay),
# iteration logging and checkpoints, a fixed seed.
_base_ = ['mmpose::_base_/default_runtime.py']
custom_imports = dict(imports=['mmport'], allow_failed_imports=False)

max_iters = 1000
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters,
         T_max=max_iters - 100, eta_min=1e-5),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
