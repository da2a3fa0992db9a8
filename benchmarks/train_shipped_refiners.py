"""Train the refiners shipped in ``checkpoints/`` (the model zoo).

* ``port_coco17_refiner.pth``: COCO-17 body refiner, trained on
  ``BODY_PERSONS`` persons drawn from the bundled COCO train2017 ground truth
  (data/coco_train2017, without the images of the BlazePose COCO set; never
  COCO val2017, where MMPose users evaluate), half of the time corrupted by synthetic
  PoseFix errors, half by the real errors of three published MPII models
  transplanted onto it (:mod:`benchmarks.mpii_body_donors`), in the body
  benchmark's plain PyTorch loop. No BlazePose prediction is used. Its rule
  moves nothing (``RefinementRule.keep_input``): it is the COCO-17 starting
  point of ``tools/fit_refiner.py``, which fits a rule to a detector.
* ``port_panoptic_hand21.pth``: hand refiner, trained through an mmengine
  Runner with ``configs/port/port_panoptic-hand2d_keypoints-only.py`` on
  all 846 bundled Panoptic hands (real MobileNetV2 predictions).

Each file holds the refiner's config (``meta.cfg``, so that ``load_refiner``
and ``RefinedTopdownPoseEstimator`` build it from the file alone, default
threshold and gate included), its weights, and how it was trained.

    python -m benchmarks.train_shipped_refiners [--only body|hand] [--out-dir checkpoints]
"""
import argparse
import os.path as osp

import torch
from mmengine.config import Config

import mmport  # noqa: F401  (registers mmport's modules)
from mmport.apis import prepare_runner_cfg
from mmport.models.refinement_rule import RefinementRule
from mmport.models.refiner_loading import save_refiner as write_refiner

from .body_data import BLAZEPOSE_SETS, load_blazepose_set, load_coco_train2017
from .body_refiner_setup import build_refiner, coco_metainfo
from .cross_validation import build_quiet_runner, printed_to_file
from .mpii_body_donors import mpii_error_donors
from .tensor_training import TrainingSettings, build_pool, train_refiner

HAND_CONFIG = 'configs/port/port_panoptic-hand2d_keypoints-only.py'
# the threshold the Panoptic benchmark's per-fold selection chose most often
HAND_SCORE_THR = 0.3
BODY_SETTINGS = TrainingSettings(iters=3000, batch_size=128, real=0.0, transplant=0.5,
                                 synthetic=0.5, seed=0)
# COCO train2017 persons drawn for the body refiner: its synthetic error
# bank is built person by person, and more persons than this add little to
# 3000 iterations of 128 poses
BODY_PERSONS = 30000


def save_refiner(refiner, model_cfg: dict, path: str, how: str, data: str) -> None:
    """Write a checkpoint that ``mmport.apis.load_refiner`` reads alone
    (:func:`mmport.models.refiner_loading.save_refiner`), naming the
    command that trained it (``how``) and on what (``data``)."""
    write_refiner(refiner, model_cfg, path, trained_by=how, training_data=data)
    print(f'wrote {path} ({osp.getsize(path) / 1e3:.0f} kB)')


def train_body(out_dir: str) -> str:
    meta = coco_metainfo()
    blazepose = {name: load_blazepose_set(name) for name in BLAZEPOSE_SETS}
    # the images of the BlazePose COCO photos (28 are train2017 images) are scored
    persons = load_coco_train2017(exclude_images=blazepose['coco'].image_ids,
                                  max_persons=BODY_PERSONS)
    pool = build_pool([persons], [], meta, synthetic_copies=8, seed=0,
                      donor_errors=mpii_error_donors(meta['sigmas']))
    torch.manual_seed(BODY_SETTINGS.seed)  # reproducible initial weights
    refiner, cfg = build_refiner()
    # a drop-in rule chosen on synthetic and transplanted errors did not carry
    # over to real detectors: the file moves nothing until a rule is fitted
    # to a detector (tools/fit_refiner.py), which starts from these weights
    refiner.rule = RefinementRule.keep_input()
    secs = train_refiner(refiner, pool, BODY_SETTINGS, meta['flip_indices'],
                         log=lambda m: print(f'  body refiner: {m}', flush=True))
    print(f'body refiner trained in {secs:.0f} s on {len(persons)} COCO train2017 persons '
          f'({len(pool.donor_errors)} MPII error donors)')
    path = osp.join(out_dir, 'port_coco17_refiner.pth')
    save_refiner(refiner, cfg, path, 'python -m benchmarks.train_shipped_refiners --only body',
                 f'{len(persons)} COCO train2017 persons (data/coco_train2017, without the '
                 'images of the BlazePose COCO photos) with synthetic PoseFix errors and the '
                 'real error vectors of three MPII models (data/mpii)')
    return path


def train_hand(out_dir: str) -> str:
    cfg = Config.fromfile(HAND_CONFIG)
    work_dir = osp.join('work_dirs', 'shipped_hand_refiner')
    cfg.work_dir = work_dir
    cfg.train_dataloader.dataset.folds = [0, 1, 2, 3, 4]
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=cfg.train_cfg.max_iters)
    cfg.model.test_cfg.rule.score_thr = HAND_SCORE_THR
    runner = build_quiet_runner(prepare_runner_cfg(cfg))
    with printed_to_file(work_dir, stdout=False):
        runner.train()
    path = osp.join(out_dir, 'port_panoptic_hand21.pth')
    model_cfg = cfg.model.to_dict()
    save_refiner(runner.model, model_cfg, path,
                 'python -m benchmarks.train_shipped_refiners --only hand',
                 'all 846 bundled CMU Panoptic test hands with MMPose MobileNetV2\'s real '
                 'predictions (data/panoptic)')
    print(f'hand refiner trained on all {len(runner.train_dataloader.dataset)} Panoptic hands '
          f'(log: {work_dir})')
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', choices=('body', 'hand'))
    parser.add_argument('--out-dir', default='checkpoints')
    args = parser.parse_args()
    if args.only in (None, 'body'):
        train_body(args.out_dir)
    if args.only in (None, 'hand'):
        train_hand(args.out_dir)


if __name__ == '__main__':
    main()
