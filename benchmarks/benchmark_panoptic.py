"""The Panoptic refinement benchmark on real MobileNetV2 predictions.

5-fold cross-validation over the 846 hands of the bundled CMU Panoptic
HandDB test split, folds grouped by source video / image. For each fold the
refiner's confidence threshold is chosen on the training folds only (a
refiner trained on three of them is scored on the fourth), then the refiner
trained (mmengine Runner, keypoints only) on all four training folds' ground
truth and real MobileNetV2 predictions refines the held-out fold's real
predictions. The pooled held-out predictions are scored against the
detector's. Prints one table; writes ``<work-dir>/panoptic.json`` and
``<work-dir>/panoptic_refined_hands.png``.

    python -m benchmarks.benchmark_panoptic [--config CFG] [--work-dir DIR]
"""
import argparse
import json
import os.path as osp

import numpy as np
from mmengine.config import DictAction

from benchmarks.cross_validation import (experiment_setup,
                                         grouped_cross_validation, log_to_file,
                                         stack_fields)
import mmport  # noqa: F401  (registers mmport's modules)
from mmport.evaluation.metrics import RefinementMetric
from mmport.utils import positive_int
from mmport.visualization import plot_refinements

MOBILENETV2_PARAMS = 9.57e6  # MMPose's MobileNetV2 top-down hand model
KEYS = ('EPE', 'PCKh@0.7', 'AUC', 'EPE_replaced')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='PORT Panoptic refinement benchmark')
    parser.add_argument('--config', default='configs/port/port_panoptic-hand2d_keypoints-only.py')
    parser.add_argument('--work-dir', default='work_dirs/benchmark')
    parser.add_argument('--num-folds', type=int, default=5)
    parser.add_argument('--thr-candidates', type=float, nargs='+', default=[0.3, 0.4, 0.5],
                        help='confidence thresholds tried on the training folds')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train-seed', type=int,
                        help='seed of the trainings (default: --seed); same folds, another draw')
    parser.add_argument('--workers', type=positive_int, default=2,
                        help='folds trained at once (processes); results do not depend on it')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def format_table(result: dict) -> str:
    b, r = result['baseline'], result['refined']
    rows = [('metric', 'MobileNetV2', 'refined', 'change')]
    names = {'EPE_replaced': 'EPE of replaced joints'}
    for key in KEYS:
        rows.append((names.get(key, key), f'{b[key]:.4f}', f'{r[key]:.4f}',
                     f'{100 * (r[key] / b[key] - 1):+.1f}%'))
    width = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ['  '.join(c.ljust(w) for c, w in zip(row, width)) for row in rows]
    lines.insert(1, '  '.join('-' * w for w in width))
    lines += [
        f'hands: {result["num_instances"]} (grouped {result["num_folds"]}-fold CV), joints '
        f'replaced: {100 * result["replaced_ratio"]:.1f}%, thresholds per fold: '
        f'{result["thresholds"]}',
        f'parameters: {result["params"]:,} ({100 * result["params_ratio_mobilenetv2"]:.2f}% '
        f'of MobileNetV2\'s 9.57 M); training time: {result["train_seconds"]:.0f} s '
        f'({2 * result["num_folds"]} trainings, 2 per fold)']
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    cfg, logger = experiment_setup(args.config, args.cfg_options, args.work_dir,
                                   'panoptic_benchmark')
    cv = grouped_cross_validation(cfg, osp.join(args.work_dir, 'panoptic'), args.num_folds,
                                  args.seed, args.thr_candidates, workers=args.workers,
                                  train_seed=args.train_seed, logger=logger)
    metric = RefinementMetric(pck_thr=0.7, norm_items=['head'])
    metric.dataset_meta = cv.metainfo
    metric.process({}, cv.samples)
    m = metric.compute_metrics(metric.results)
    result = {
        'baseline': {k: m[f'init_{k}'] for k in KEYS + ('PCKh@0.7_replaced', 'AUC_replaced')},
        'refined': {k: m[k] for k in KEYS + ('PCKh@0.7_replaced', 'AUC_replaced')},
        'params': cv.params,
        'params_ratio_mobilenetv2': cv.params / MOBILENETV2_PARAMS,
        'train_seconds': cv.train_seconds,
        'num_instances': m['num_instances'],
        'replaced_ratio': m['replaced_ratio'],
        'thresholds': cv.thresholds,
        'threshold_selection_epe': [{str(t): e for t, e in d.items()} for d in cv.threshold_epe],
        'num_folds': args.num_folds,
        'seed': args.seed,
        'train_seed': args.seed if args.train_seed is None else args.train_seed,
        'config': args.config,
        # LoadInitialPredictions frames each hand by the results' box (the
        # MMPose 0.x pickle's: the crop the detector ran on)
        'frames': 'results',
    }
    out_json = osp.join(args.work_dir, 'panoptic.json')
    with open(out_json, 'w') as f:
        json.dump(result, f, indent=2)
    table = format_table(result)
    log_to_file(logger, 'Panoptic benchmark, real MobileNetV2 predictions:\n' + table)

    # three hands refinement helped most and three it hurt most
    init, refined, gt, replaced = stack_fields(
        cv.samples, 'pred_instances.keypoints_init', 'pred_instances.keypoints',
        'gt_instances.keypoints', 'pred_instances.refined_mask')
    gain = (np.linalg.norm(init - gt, axis=-1) - np.linalg.norm(refined - gt, axis=-1)).mean(1)
    order = np.argsort(-gain)
    pick = np.concatenate([order[:3], order[::-1][:3]])
    titles = [f'{"most improved" if n < 3 else "most degraded"}: EPE '
              f'{np.linalg.norm(init[i] - gt[i], axis=-1).mean():.1f} -> '
              f'{np.linalg.norm(refined[i] - gt[i], axis=-1).mean():.1f} px'
              for n, i in enumerate(pick)]
    png = plot_refinements(gt[pick], init[pick], refined[pick], replaced[pick],
                           cv.metainfo['skeleton_links'],
                           osp.join(args.work_dir, 'panoptic_refined_hands.png'), titles)
    print(f'\nPanoptic benchmark (real MobileNetV2 predictions)\n{table}\n'
          f'wrote {out_json} and {png}', flush=True)


if __name__ == '__main__':
    main()
