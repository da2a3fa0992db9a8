"""Design trials of the body refiner on an inner split of the training folds.

Trains on BlazePose folds ``--train-folds`` (+ COCO val2017 ground truth) and
scores fold ``--val-fold``, at several thresholds and gate margins (defaults:
train on 1-3, score 4, the folds fold 0 trains on). The cross-validation
scores every fold once, so trials run here have seen data it scores: its
rules are chosen per fold on training folds, but design choices made from
these trials were not. Prints a line per rule; writes JSON.

    python -m benchmarks.dev_body_sweep [--iters N] [--tag NAME] [--set k=v ...]
"""
import argparse
import json
import os
import os.path as osp
import time

import numpy as np
import torch

import mmport  # noqa: F401

from .body_refiner_setup import (NETWORK, blazepose_folds, blend_scores, build_refiner,
                                 coco_metainfo, load_body_data, refine_with_rule)
from .body_scoring import refinement_scores
from .tensor_training import TrainingSettings, build_pool, train_refiner


def parse_value(v):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {'true': True, 'false': False, 'none': None}.get(v.lower(), v)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--train-folds', type=int, nargs='+', default=[1, 2, 3])
    parser.add_argument('--val-fold', type=int, default=4)
    parser.add_argument('--thresholds', type=float, nargs='+', default=[0.5, 0.7, 0.9, 1.01])
    parser.add_argument('--margins', type=str, nargs='+', default=['none', '0', '0.25', '0.5'])
    parser.add_argument('--set', nargs='*', default=[], help='TrainingSettings k=v')
    parser.add_argument('--net', nargs='*', default=[], help='network k=v')
    parser.add_argument('--train-cfg', nargs='*', default=[], help='refiner train_cfg k=v')
    parser.add_argument('--no-coco-gt', action='store_true')
    parser.add_argument('--quality', default='keypoint_similarity')
    parser.add_argument('--no-blazepose-train', action='store_true',
                        help='train without any BlazePose prediction (transfer)')
    parser.add_argument('--synthetic-copies', type=int, default=4)
    parser.add_argument('--rescore-weights', type=float, nargs='+', default=[0.0],
                        help='weights of the expected OKS in the instance scores')
    parser.add_argument('--tag', default='dev')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = TrainingSettings(**{k: parse_value(v) for k, v in
                                   (s.split('=', 1) for s in args.set)})
    network = dict(NETWORK, **{k: parse_value(v) for k, v in (s.split('=', 1) for s in args.net)})
    meta = coco_metainfo()
    sets, coco_val = load_body_data()
    folds = blazepose_folds(sets)
    train = [b.subset(np.flatnonzero(np.isin(folds[n], args.train_folds)))
             for n, b in sets.items()]
    val = {n: b.subset(np.flatnonzero(folds[n] == args.val_fold)) for n, b in sets.items()}
    t0 = time.time()
    persons = ([] if args.no_blazepose_train else train) + ([] if args.no_coco_gt else [coco_val])
    donors = [] if args.no_blazepose_train else train
    pool = build_pool(persons, donors, meta, synthetic_copies=args.synthetic_copies)
    print(f'pool: {len(pool.gt)} persons, {len(pool.donor_errors)} donors '
          f'({time.time() - t0:.0f} s)', flush=True)
    train_cfg = {k: parse_value(v) for k, v in (s.split('=', 1) for s in args.train_cfg)}
    refiner, cfg = build_refiner(network, args.quality, train_cfg)
    secs = train_refiner(refiner, pool, settings, meta['flip_indices'],
                         log=lambda m: print(m, flush=True))
    print(f'trained in {secs:.0f} s', flush=True)
    sigmas = meta['sigmas']
    results = {}
    for thr in args.thresholds:
        for m in args.margins:
            margin = None if m == 'none' else float(m)
            # rescore=1 returns each person's expected OKS as its score
            outputs = {n: refine_with_rule(refiner, b, thr, margin, rescore=1.0)
                       for n, b in val.items()}
            for w in args.rescore_weights:
                row = {n: refinement_scores(b, out[0], out[1], blend_scores(b, out[2], w),
                                            sigmas) for (n, b), out in zip(val.items(),
                                                                           outputs.values())}
                results[f'{thr}/{m}/{w}'] = row
                cells = ' | '.join(
                    f"{n}: AP {r['baseline']['AP']:.4f}->{r['refined']['AP']:.4f} "
                    f"EPE {r['baseline']['EPE']:.2f}->{r['refined']['EPE']:.2f} "
                    f"occ {r['baseline']['EPE_occluded']:.1f}->"
                    f"{r['refined']['EPE_occluded']:.1f} "
                    f"rep {r['replaced_fraction']:.3f} worse {r['worsened_fraction']:.2f}"
                    for n, r in row.items())
                print(f'thr {thr} margin {m} rescore {w}: {cells}', flush=True)
    os.makedirs('work_dirs/dev', exist_ok=True)
    with open(osp.join('work_dirs/dev', f'{args.tag}.json'), 'w') as f:
        json.dump(dict(args=vars(args), settings=vars(settings), network=network,
                       results=results), f, indent=1, default=str)


if __name__ == '__main__':
    main()
