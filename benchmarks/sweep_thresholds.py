"""Cross-validate a keypoints-only refiner config and score it at fixed
confidence thresholds: the tool behind the README's third design table.

Same grouped folds and Runner training as ``benchmarks.benchmark_panoptic``,
but without threshold selection (one training per fold): each held-out fold
is refined at every threshold given, and the pooled result is printed as
the change of the EPE and of the replaced joints' EPE against the detector.

    python -m benchmarks.sweep_thresholds CONFIG [--thresholds 0.3 0.4 0.5]
        [--train-seed N] [--work-dir DIR] [--cfg-options KEY=VALUE ...]
"""
import argparse
import json
import os.path as osp

from mmengine.config import DictAction

from benchmarks.cross_validation import (experiment_setup,
                                         grouped_cross_validation, stack_fields)
import mmport  # noqa: F401  (registers mmport's modules)
from mmport.evaluation import pose_errors
from mmport.utils import positive_int


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Refiner EPE at fixed thresholds (grouped CV)')
    parser.add_argument('config')
    parser.add_argument('--thresholds', type=float, nargs='+', default=[0.3, 0.4, 0.5])
    parser.add_argument('--work-dir', default='work_dirs/threshold_sweep')
    parser.add_argument('--num-folds', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0, help='seed of the fold split')
    parser.add_argument('--train-seed', type=int,
                        help='seed of the trainings (default: --seed); same folds, another draw')
    parser.add_argument('--workers', type=positive_int, default=2)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def sweep_table(samples: list, sweep: dict) -> dict:
    """EPE and replaced-joint EPE, detector vs refined, per threshold.

    Args:
        samples (list[dict]): Pooled held-out data samples.
        sweep (dict): Threshold -> (refined (N, K, 2), replaced (N, K)).
    """
    init, gt, vis = stack_fields(samples, 'pred_instances.keypoints_init',
                                 'gt_instances.keypoints', 'gt_instances.keypoints_visible')
    vis = vis > 0
    base = pose_errors(init, gt, vis)['EPE']
    table = {}
    for thr, (refined, replaced) in sorted(sweep.items()):
        scored = vis & replaced
        table[thr] = {
            'EPE_init': base, 'EPE': pose_errors(refined, gt, vis)['EPE'],
            'EPE_replaced_init': pose_errors(init, gt, scored)['EPE'],
            'EPE_replaced': pose_errors(refined, gt, scored)['EPE'],
            'replaced_ratio': float(scored.sum() / vis.sum())}
    return table


def main(argv=None):
    args = parse_args(argv)
    cfg, logger = experiment_setup(args.config, args.cfg_options, args.work_dir,
                                   'sweep')
    cv = grouped_cross_validation(cfg, args.work_dir, args.num_folds, args.seed,
                                  thr_candidates=None, workers=args.workers,
                                  sweep_thresholds=args.thresholds, train_seed=args.train_seed,
                                  logger=logger)
    table = sweep_table(cv.samples, cv.sweep)
    lines = [f'{args.config} {args.cfg_options or ""} train seed '
             f'{args.seed if args.train_seed is None else args.train_seed}',
             f'params {cv.params:,}, training {cv.train_seconds:.0f} s',
             'thr  EPE (change)          replaced joints: EPE (change)  replaced']
    for thr, row in table.items():
        lines.append(
            f'{thr:<4} {row["EPE_init"]:.4f} -> {row["EPE"]:.4f} '
            f'({100 * (row["EPE"] / row["EPE_init"] - 1):+.2f}%)  '
            f'{row["EPE_replaced_init"]:.4f} -> {row["EPE_replaced"]:.4f} '
            f'({100 * (row["EPE_replaced"] / row["EPE_replaced_init"] - 1):+.2f}%)  '
            f'{100 * row["replaced_ratio"]:.1f}%')
    with open(osp.join(args.work_dir, 'sweep.json'), 'w') as f:
        json.dump({'config': args.config, 'cfg_options': dict(args.cfg_options or {}),
                   'seed': args.seed, 'train_seed': args.train_seed,
                   'params': cv.params, 'train_seconds': cv.train_seconds,
                   'thresholds': {str(t): r for t, r in table.items()}}, f, indent=2)
    logger.info('\n'.join(lines))


if __name__ == '__main__':
    main()
