"""The COCO-17 body benchmark on the bundled real COCO val2017 subset.

Grouped (by image) 5-fold cross-validation: the refiner is trained on the
ground truth of four folds (corrupted on the fly by SynthesizePoseErrors);
the held-out fold's ground truth is corrupted by the same scheme with a fixed
seed (real v=1 joints the most likely corrupted) and refined. Prints initial
vs refined errors over all joints and over occluded joints, and COCO AP;
writes ``<work-dir>/coco_subset.json``. Then trains a COCO-17 refiner on the
whole subset and saves it as ``<work-dir>/port_coco17_refiner.pth`` for
``tools/refine_results.py`` and the chained COCO config.

    python -m benchmarks.benchmark_coco [--config CFG] [--work-dir DIR]
"""
import argparse
import copy
import json
import os.path as osp
import shutil

import numpy as np
from mmengine.config import DictAction

from benchmarks.cross_validation import (build_quiet_runner, experiment_setup,
                                         grouped_cross_validation, log_to_file,
                                         printed_to_file, stack_fields)
import mmport  # noqa: F401  (registers mmport's modules)
from mmport.apis import prepare_runner_cfg
from mmport.evaluation import coco_keypoint_ap, pose_errors
from mmport.utils import positive_int


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='PORT COCO-17 body benchmark')
    parser.add_argument('--config', default='configs/port/port_coco_keypoints-only.py')
    parser.add_argument('--work-dir', default='work_dirs/benchmark')
    parser.add_argument('--num-folds', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workers', type=positive_int, default=2,
                        help='folds trained at once (processes); results do not depend on it')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def coco_records(samples, keypoints, scores):
    """COCO results records, one per instance; instance score = mean of the
    keypoint scores above 0.2 (MMPose's rescoring with a box score of 1)."""
    records = []
    for s, kp, sc in zip(samples, keypoints, scores):
        good = sc > 0.2
        records.append(dict(image_id=int(s['img_id']), category_id=1,
                            keypoints=np.concatenate([kp, sc[:, None]], 1).reshape(-1).tolist(),
                            score=float(sc[good].mean()) if good.any() else 0.0))
    return records


def errors(pred, gt, visible, occluded, bboxes):
    size = (bboxes[:, 2:] - bboxes[:, :2]).max(1)
    norm = {'bbox': np.repeat(size[:, None], 2, 1)}
    out = {}
    for suffix, mask in (('', visible), ('_occluded', visible & occluded)):
        e = pose_errors(pred, gt, mask, 0.05, norm)
        out['EPE' + suffix] = e['EPE']
        out['PCK@0.05' + suffix] = e['PCK@0.05']
        out['PCK@0.1' + suffix] = pose_errors(pred, gt, mask, 0.1, norm)['PCK@0.1']
        d = np.linalg.norm(pred - gt, axis=-1) / size[:, None]
        out['EPE_bbox_normalised' + suffix] = float(d[mask].mean())
    return out


def main(argv=None):
    args = parse_args(argv)
    cfg, logger = experiment_setup(args.config, args.cfg_options, args.work_dir,
                                   'coco_benchmark')
    cv = grouped_cross_validation(cfg, osp.join(args.work_dir, 'coco'), args.num_folds,
                                  args.seed, None, workers=args.workers, logger=logger)
    init, refined, scores, gt, vis, occ, boxes, replaced = stack_fields(
        cv.samples, 'pred_instances.keypoints_init', 'pred_instances.keypoints',
        'pred_instances.keypoint_scores', 'gt_instances.keypoints',
        'gt_instances.keypoints_visible', 'gt_instances.keypoints_occluded',
        'pred_instances.bboxes', 'pred_instances.refined_mask')
    vis, occ = vis > 0, occ.astype(bool)
    ann_file = osp.join(cfg.data_root, cfg.ann_file)
    sigmas = cv.metainfo['sigmas']
    result = {}
    for name, pred in (('initial', init), ('refined', refined)):
        result[name] = errors(pred, gt, vis, occ, boxes)
        result[name].update(coco_keypoint_ap(ann_file, coco_records(cv.samples, pred, scores),
                                             sigmas))
        result[name]['EPE_replaced'] = float(
            np.linalg.norm(pred - gt, axis=-1)[vis & replaced].mean())
    result.update(instances=len(cv.samples), occluded_joints=int((vis & occ).sum()),
                  replaced_joints=int((vis & replaced).sum()),
                  occluded_replaced=int((vis & occ & replaced).sum()),
                  train_seconds=cv.train_seconds, params=cv.params, seed=args.seed,
                  config=args.config, score_thr=cv.thresholds[0])
    with open(osp.join(args.work_dir, 'coco_subset.json'), 'w') as f:
        json.dump(result, f, indent=2)

    rows = [('metric', 'initial', 'refined')]
    for key in ('AP', 'AP@0.5', 'EPE', 'EPE_occluded', 'EPE_replaced', 'PCK@0.05', 'PCK@0.1',
                'PCK@0.1_occluded'):
        rows.append((key, f'{result["initial"][key]:.4f}', f'{result["refined"][key]:.4f}'))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    table = '\n'.join('  '.join(c.ljust(w) for c, w in zip(r, width)) for r in rows)
    table += (f'\n{result["instances"]} instances, {result["occluded_joints"]} occluded (v=1) '
              f'joints; {result["replaced_joints"]} joints replaced '
              f'({result["occluded_replaced"]} of them occluded); training '
              f'{cv.train_seconds:.0f} s')
    log_to_file(logger, 'COCO-17 benchmark (synthesised detector errors):\n' + table)

    # a COCO-17 refiner trained on the whole subset, for users
    full = copy.deepcopy(cfg)
    full.work_dir = osp.join(args.work_dir, 'coco', 'all_folds')
    full.train_dataloader.dataset.folds = list(range(args.num_folds))
    full.val_cfg = full.val_dataloader = full.val_evaluator = None
    full.test_cfg = full.test_dataloader = full.test_evaluator = None
    full.randomness = dict(seed=args.seed)
    logger.info(f'training the COCO-17 refiner on all {args.num_folds} folds (log: '
                f'{full.work_dir})')
    runner = build_quiet_runner(prepare_runner_cfg(full))
    with printed_to_file(full.work_dir):
        runner.train()
    ckpt = osp.join(args.work_dir, 'port_coco17_refiner.pth')
    shutil.copy(osp.join(full.work_dir, f'iter_{full.train_cfg.max_iters}.pth'), ckpt)
    print(f'\nCOCO-17 benchmark (bundled val2017 subset, synthesised detector errors)\n{table}\n'
          f'wrote {osp.join(args.work_dir, "coco_subset.json")} and the refiner {ckpt}',
          flush=True)


if __name__ == '__main__':
    main()
