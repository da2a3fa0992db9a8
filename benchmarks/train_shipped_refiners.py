"""Train the refiners shipped in ``checkpoints/`` (the model zoo).

* ``port_coco17_refiner.pth``: COCO-17 body refiner, trained on
  ``BODY_PERSONS`` persons drawn from the bundled COCO train2017 ground truth
  (data/coco_train2017, without the images of the BlazePose COCO set; never
  COCO val2017, where MMPose users evaluate), half of the time corrupted by synthetic
  PoseFix errors, half by the real errors of three published MPII models
  transplanted onto it (:mod:`benchmarks.mpii_body_donors`), in the body
  benchmark's plain PyTorch loop. No BlazePose prediction is used, so
  ``benchmarks.benchmark_body_real``'s drop-in part is a fair test of it.
* ``port_panoptic_hand21.pth``: hand refiner, trained through an mmengine
  Runner with ``configs/port/port_panoptic-hand2d_keypoints-only.py`` on
  all 846 bundled Panoptic hands (real MobileNetV2 predictions).

Each file holds the refiner's config (``meta.cfg``, so that ``load_refiner``
and ``RefinedTopdownPoseEstimator`` build it from the file alone, default
threshold and gate included), its weights, and how it was trained.

    python -m benchmarks.train_shipped_refiners [--only body|hand] [--out-dir checkpoints]
"""
import argparse
import os
import os.path as osp
import time
from typing import Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config

import mmport  # noqa: F401  (registers mmport's modules)
from mmport.apis import prepare_runner_cfg
from mmport.datasets import grouped_folds

from .body_data import BLAZEPOSE_SETS, BodySet, load_blazepose_set, load_coco_train2017
from .body_refiner_setup import (EVERY_JOINT, RESCORE_WEIGHTS, blend_scores, body_rule,
                                 build_refiner, coco_metainfo, refine_with_rule)
from .body_scoring import refinement_scores
from .cross_validation import build_quiet_runner, printed_to_file
from .mpii_body_donors import MPII_PREDICTIONS, mpii_error_donors
from .tensor_training import (TrainingSettings, build_pool, image_neighbours, synthetic_bank,
                              train_refiner)

HAND_CONFIG = 'configs/port/port_panoptic-hand2d_keypoints-only.py'
# the threshold the Panoptic benchmark's per-fold selection chose most often
HAND_SCORE_THR = 0.3
BODY_SETTINGS = TrainingSettings(iters=3000, batch_size=128, real=0.0, transplant=0.5,
                                 synthetic=0.5, seed=0)
# candidate rules (score threshold, gate margin); EVERY_JOINT makes every
# joint a candidate and leaves the decision to the gate
BODY_RULES = [(thr, margin) for thr in (0.3, 0.5, 0.9, EVERY_JOINT)
              for margin in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)]
VALIDATION_SEED = 1234
# COCO train2017 persons drawn for the body refiner: its synthetic error
# bank is built person by person, and more persons than this add little to
# 3000 iterations of 128 poses
BODY_PERSONS = 30000
# held-out persons the body rule is chosen on (each candidate rule is scored
# by COCO AP on three corrupted copies of them)
RULE_PERSONS = 1500


def save_refiner(refiner, model_cfg: dict, path: str, how: str, data: str) -> None:
    """Write a checkpoint that ``mmport.apis.load_refiner`` reads alone:
    the config with the refiner's rule, its weights, the command that
    trained it (``how``) and on what (``data``)."""
    model_cfg = dict(model_cfg, test_cfg=dict(rule=refiner.rule.to_config()))
    cfg_text = Config(dict(model=model_cfg)).pretty_text
    state = {k: v.detach().cpu() for k, v in refiner.state_dict().items()}
    meta = dict(cfg=cfg_text, mmport=dict(trained_by=how, training_data=data,
                                          date=time.strftime('%Y-%m-%d')))
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    torch.save(dict(meta=meta, state_dict=state), path)
    print(f'wrote {path} ({osp.getsize(path) / 1e3:.0f} kB)')


def corrupted_copy(body: BodySet, meta: dict, seed: int, scramble_scores: bool = False,
                   donors: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> BodySet:
    """``body`` with synthetic PoseFix errors as its predictions; with
    ``scramble_scores`` their scores are drawn uniformly, unrelated to the
    errors (a detector whose confidence this refiner cannot read); with
    ``donors`` (box-frame errors (D, K, 2), scores (D, K)) each person's
    labelled joints take a random donor's error and score where it has one
    (real errors of other detectors)."""
    kp, sc = synthetic_bank(body, meta, 1, seed, image_neighbours(body))
    out = body.subset(np.arange(len(body)))
    out.pred, out.pred_scores = kp[:, 0], sc[:, 0]
    if donors is not None:
        rng = np.random.default_rng(seed + 2)
        pick = rng.integers(len(donors[0]), size=len(body))
        err, err_sc = donors[0][pick], donors[1][pick]
        side = (body.frames[:, 2:] - body.frames[:, :2]).max(1)
        use = body.visible & np.isfinite(err[..., 0])
        out.pred = np.where(use[..., None], body.keypoints + err * side[:, None, None],
                            out.pred).astype(np.float32)
        out.pred_scores = np.where(use, err_sc, out.pred_scores).astype(np.float32)
    if scramble_scores:
        out.pred_scores = np.random.default_rng(seed + 1).random(sc[:, 0].shape).astype(
            np.float32)
    out.pred_instance_scores = out.pred_scores.mean(1)
    return out


def mpii_donor_split(meta: dict) -> Tuple[Tuple[np.ndarray, np.ndarray],
                                          Tuple[np.ndarray, np.ndarray]]:
    """MPII error donors of four fifths of the MPII validation images (to
    train the rule's refiner) and of the other fifth (to check the rule)."""
    image_ids = np.load(MPII_PREDICTIONS)['val_image_id']
    fold = grouped_folds([str(i) for i in image_ids], 5, seed=0)
    return tuple(mpii_error_donors(meta['sigmas'], seed=VALIDATION_SEED + part,
                                   persons=np.flatnonzero((fold == 0) == bool(part)))
                 for part in (0, 1))


def choose_body_rule(train: BodySet, val: BodySet, meta: dict) -> Tuple[float, float, float]:
    """The threshold, gate margin and rescoring weight for a detector
    nobody has seen: a refiner trained on ``train`` (with the MPII errors
    of four fifths of the MPII images) refines ``val`` three times: with
    synthetic errors and their synthetic scores, with the same errors and
    scrambled scores, and with the real errors of the MPII models on the
    other fifth of the MPII images. The rule whose worst AP change of the
    three is largest wins, if that change is not negative, by its worst
    EPE change; among rules that lower AP in a case, the one whose AP
    drops least. Only training data (COCO train2017 ground truth, MPII
    predictions) is used."""
    train_donors, check_donors = mpii_donor_split(meta)
    pool = build_pool([train], [], meta, synthetic_copies=8, seed=0, donor_errors=train_donors)
    settings = TrainingSettings(**dict(vars(BODY_SETTINGS), seed=1))
    # initial weights from the training seed, not from the process's
    # unseeded random state: the chosen rule is reproducible
    torch.manual_seed(settings.seed)
    refiner, _ = build_refiner()
    train_refiner(refiner, pool, settings, meta['flip_indices'])
    checks = [corrupted_copy(val, meta, VALIDATION_SEED, scramble_scores=True),
              corrupted_copy(val, meta, VALIDATION_SEED),
              corrupted_copy(val, meta, VALIDATION_SEED, donors=check_donors)]
    ranks = {}
    for thr, margin in BODY_RULES:
        # rescore=1 returns each person's expected OKS as its score
        outputs = [refine_with_rule(refiner, b, thr, margin, rescore=1.0) for b in checks]
        for weight in RESCORE_WEIGHTS:
            rows = [refinement_scores(b, out[0], out[1], blend_scores(b, out[2], weight),
                                      meta['sigmas']) for b, out in zip(checks, outputs)]
            worst_ap = min(r['refined']['AP'] - r['baseline']['AP'] for r in rows)
            worst_epe = max(r['refined']['EPE_norm'] - r['baseline']['EPE_norm'] for r in rows)
            ranks[(thr, margin, weight)] = (worst_ap >= 0, worst_ap, -worst_epe)
        print(f'  rule {thr}/{margin}: worst AP change for rescoring weights ' + ' / '.join(
                  f'{ranks[(thr, margin, w)][1]:+.4f}' for w in RESCORE_WEIGHTS)
              + f', worst EPE change {worst_epe:+.4f} (box units)', flush=True)
    return max(ranks, key=lambda r: ranks[r])


def train_body(out_dir: str) -> str:
    meta = coco_metainfo()
    blazepose = {name: load_blazepose_set(name) for name in BLAZEPOSE_SETS}
    # the images of the BlazePose COCO photos (28 are train2017 images) are scored
    persons = load_coco_train2017(exclude_images=blazepose['coco'].image_ids,
                                  max_persons=BODY_PERSONS)
    groups = [str(i) for i in persons.image_ids]
    fold = grouped_folds(groups, 5, seed=0)
    held_out = np.flatnonzero(fold == 0)
    held_out = np.sort(np.random.default_rng(0).choice(held_out, RULE_PERSONS, replace=False))
    thr, margin, weight = choose_body_rule(persons.subset(np.flatnonzero(fold != 0)),
                                           persons.subset(held_out), meta)
    print(f'body refiner rule (chosen on held-out COCO train2017 persons): threshold {thr}, '
          f'gate margin {margin}, rescoring weight {weight}', flush=True)
    pool = build_pool([persons], [], meta, synthetic_copies=8, seed=0,
                      donor_errors=mpii_error_donors(meta['sigmas']))
    torch.manual_seed(BODY_SETTINGS.seed)  # reproducible initial weights
    refiner, cfg = build_refiner(rule=body_rule(thr, margin, weight))
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
