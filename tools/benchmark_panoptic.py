"""The Panoptic refinement benchmark on real MobileNetV2 predictions.

5-fold cross-validation over the 846 hands of the bundled CMU Panoptic
HandDB test split, folds grouped by source video / image. For each fold:

1. the refiner's confidence threshold is chosen on the training folds only:
   a refiner is trained (mmengine Runner, keypoints only) on three of them
   and the threshold that gives the lowest EPE on the fourth is kept;
2. the refiner is trained on all four training folds (their ground truth and
   their real MobileNetV2 predictions), then refines the held-out fold's
   real predictions with that threshold.

The held-out folds' predictions are pooled and scored against the
detector's. Prints one table; writes ``<work-dir>/panoptic.json`` and
``<work-dir>/panoptic_refined_hands.png``.

    python tools/benchmark_panoptic.py [--config CFG] [--work-dir DIR]
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import time

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import mmport  # noqa: E402,F401  (registers mmport's modules)
from mmport.apis import prepare_runner_cfg  # noqa: E402
from mmport.evaluation import pose_errors  # noqa: E402
from mmport.evaluation.metrics import RefinementMetric  # noqa: E402
from mmport.utils import safe_load_pickle  # noqa: E402
from mmport.visualization import plot_refinements  # noqa: E402

DEFAULT_CONFIG = 'configs/port/port_panoptic-hand2d_keypoints-only.py'


def parse_args():
    parser = argparse.ArgumentParser(description='PORT Panoptic refinement benchmark')
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default='work_dirs/benchmark')
    parser.add_argument('--num-folds', type=int, default=5)
    parser.add_argument('--thr-candidates', type=float, nargs='+',
                        default=[0.2, 0.3, 0.4, 0.5],
                        help='confidence thresholds tried on the training folds')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def fold_config(cfg: Config, work_dir: str, train_folds, test_folds, seed: int,
                num_folds: int) -> Config:
    """Config that trains on ``train_folds`` and tests on ``test_folds``."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed)
    cfg.train_dataloader.dataset.folds = list(train_folds)
    cfg.test_dataloader.dataset.folds = list(test_folds)
    for name in ('train_dataloader', 'test_dataloader'):
        cfg[name].dataset.num_folds = num_folds
        cfg[name].dataset.seed = seed
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=cfg.train_cfg.max_iters)
    cfg.test_evaluator = [
        dict(type='RefinementMetric', pck_thr=0.7, norm_items=['head']),
        dict(type='DumpResults', out_file_path=osp.join(work_dir, 'predictions.pkl')),
    ]
    return prepare_runner_cfg(cfg)


def train_and_test(cfg: Config):
    """Train, test and return (runner, seconds spent training, dumped samples)."""
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    runner.test()
    samples = safe_load_pickle(osp.join(cfg.work_dir, 'predictions.pkl'))
    return runner, seconds, samples


def stack(samples, *fields):
    """Concatenate ``pred_instances``/``gt_instances`` fields of dumped samples."""
    out = []
    for field in fields:
        group, key = field.split('.')
        out.append(np.concatenate([np.asarray(s[group][key]) for s in samples]))
    return out


def choose_threshold(runner, samples, candidates):
    """The candidate threshold with the lowest EPE on held-out training data."""
    init, scores, bboxes, gt, vis = stack(
        samples, 'pred_instances.keypoints_init', 'pred_instances.keypoint_scores_init',
        'pred_instances.bboxes', 'gt_instances.keypoints', 'gt_instances.keypoints_visible')
    model = runner.model.eval()
    epe = {}
    for thr in candidates:
        refined, _ = model.refine(torch.from_numpy(init).float(), torch.from_numpy(scores).float(),
                                  torch.from_numpy(bboxes).float(), score_thr=thr)
        epe[thr] = pose_errors(refined.numpy(), gt, vis > 0)['EPE']
    return min(epe, key=epe.get), epe


def pooled_metrics(samples, metainfo):
    metric = RefinementMetric(pck_thr=0.7, norm_items=['head'])
    metric.dataset_meta = metainfo
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    os.makedirs(args.work_dir, exist_ok=True)
    logger = MMLogger.get_instance('mmport_benchmark', log_file=osp.join(
        args.work_dir, 'panoptic_benchmark.log'))
    k = args.num_folds
    all_samples, train_seconds, thresholds, params = [], 0.0, [], None
    for fold in range(k):
        train_folds = [f for f in range(k) if f != fold]
        inner_val = train_folds[0]
        fold_dir = osp.join(args.work_dir, 'panoptic', f'fold{fold}')

        # 1. threshold from the training folds alone
        inner_cfg = fold_config(cfg, osp.join(fold_dir, 'threshold_selection'),
                                [f for f in train_folds if f != inner_val], [inner_val],
                                args.seed, k)
        runner, seconds, inner_samples = train_and_test(inner_cfg)
        train_seconds += seconds
        thr, epe = choose_threshold(runner, inner_samples, args.thr_candidates)
        thresholds.append(thr)
        logger.info(f'fold {fold}: threshold {thr} chosen on training fold {inner_val} '
                    f'(EPE by threshold: ' + ', '.join(f'{t}: {e:.3f}' for t, e in epe.items())
                    + ')')

        # 2. train on all training folds, refine the held-out fold
        outer_cfg = fold_config(cfg, fold_dir, train_folds, [fold], args.seed, k)
        outer_cfg.model.test_cfg.score_thr = thr
        runner, seconds, samples = train_and_test(outer_cfg)
        train_seconds += seconds
        params = sum(p.numel() for p in runner.model.parameters())
        metainfo = runner.test_dataloader.dataset.metainfo
        all_samples.extend(samples)

    metrics = pooled_metrics(all_samples, metainfo)
    result = {
        'baseline': {key: metrics[f'init_{key}'] for key in
                     ('EPE', 'PCKh@0.7', 'AUC', 'EPE_replaced', 'PCKh@0.7_replaced')},
        'refined': {key: metrics[key] for key in
                    ('EPE', 'PCKh@0.7', 'AUC', 'EPE_replaced', 'PCKh@0.7_replaced')},
        'params': params,
        'params_ratio_mobilenetv2': params / 9.57e6,
        'train_seconds': train_seconds,
        'num_instances': metrics['num_instances'],
        'replaced_ratio': metrics['replaced_ratio'],
        'thresholds': thresholds,
        'num_folds': k,
        'seed': args.seed,
        'config': args.config,
    }
    with open(osp.join(args.work_dir, 'panoptic.json'), 'w') as f:
        json.dump(result, f, indent=2)

    b, r = result['baseline'], result['refined']
    rows = [('metric', 'baseline', 'refined', 'change')]
    for key in ('EPE', 'PCKh@0.7', 'AUC', 'EPE_replaced'):
        rows.append((key if key != 'EPE_replaced' else 'EPE (replaced joints)',
                     f'{b[key]:.4f}', f'{r[key]:.4f}', f'{100 * (r[key] / b[key] - 1):+.1f}%'))
    width = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ['  '.join(c.ljust(w) for c, w in zip(row, width)) for row in rows]
    lines.insert(1, '  '.join('-' * w for w in width))
    lines += ['', f'hands: {result["num_instances"]} (5-fold grouped CV), joints replaced: '
              f'{100 * result["replaced_ratio"]:.1f}%, thresholds per fold: {thresholds}',
              f'refiner parameters: {params:,} ({100 * params / 9.57e6:.2f}% of the '
              f'MobileNetV2 top-down model\'s 9.57 M), training time: {train_seconds:.0f} s '
              f'({2 * k} trainings)']
    table = '\n'.join(lines)
    logger.info('Panoptic benchmark (real MobileNetV2 predictions)\n' + table)
    print('\n' + table, flush=True)

    # a picture of the hands whose replaced joints moved most
    init, refined, gt, replaced = stack(all_samples, 'pred_instances.keypoints_init',
                                        'pred_instances.keypoints', 'gt_instances.keypoints',
                                        'pred_instances.refined_mask')
    gain = (np.linalg.norm(init - gt, axis=-1) - np.linalg.norm(refined - gt, axis=-1)).sum(1)
    pick = np.argsort(-gain)[:6]
    titles = [f'EPE {np.linalg.norm(init[i] - gt[i], axis=-1).mean():.1f} -> '
              f'{np.linalg.norm(refined[i] - gt[i], axis=-1).mean():.1f} px' for i in pick]
    png = plot_refinements(gt[pick], init[pick], refined[pick], replaced[pick],
                           metainfo['skeleton_links'],
                           osp.join(args.work_dir, 'panoptic_refined_hands.png'), titles)
    print(f'wrote {osp.join(args.work_dir, "panoptic.json")} and {png}')


if __name__ == '__main__':
    main()
