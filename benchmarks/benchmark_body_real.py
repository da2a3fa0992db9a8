"""Refining real BlazePose predictions (LSP, LSPET, COCO photos).

(a) Cross-validation: 5 folds grouped by image over the three sets. For
    held-out fold f a refiner is trained on three of the other folds (their
    ground truth, their real BlazePose predictions and error vectors) and on
    the COCO val2017 ground truth (transplanted real errors, synthetic
    PoseFix errors; the images of the BlazePose COCO set are left out); its
    threshold, gate margin and rescoring weight are chosen on the fourth
    (fold f + 1), where its expected OKS is also calibrated to the
    persons' observed OKS (``--no-calibrate`` skips it), so that the five
    folds' instance scores share one scale. Each source is reported
    separately and pooled, and AP also per fold (each fold ranked alone).
(b) Drop-in transfer: the shipped COCO-17 refiner (``--checkpoint``, trained
    without any BlazePose prediction) refines every BlazePose prediction.

Every person is framed by the box BlazePose ran on (the results' ``bbox``),
in training, rule choice and refinement alike; the annotations reach only
the training folds and the scorer.

Prints a table per part; writes ``<work-dir>/body_real.json``.

    python -m benchmarks.benchmark_body_real [--workers 2] [--iters N]
"""
import argparse
import json
import warnings
import multiprocessing as mp
import os
import os.path as osp
import time
from typing import Dict, List, Tuple

import numpy as np
import torch

import mmport  # noqa: F401  (registers mmport's modules)
from mmport.apis import load_refiner
from mmport.evaluation import instance_similarity
from mmport.fitting import fit_similarity_calibration
from mmport.models.instance_rescoring import calibrated_similarity
from mmport.utils import positive_int

from .body_data import BodySet, merge_sets
from .body_refiner_setup import (EVERY_JOINT, RESCORE_WEIGHTS, blazepose_folds, blend_scores,
                                 build_refiner, coco_metainfo, load_body_data,
                                 refine_persons, refine_with_rule)
from .body_scoring import pose_scores, refinement_scores
from .tensor_training import TrainingSettings, build_pool, train_refiner

SHIPPED_BODY_REFINER = 'checkpoints/port_coco17_refiner.pth'
# candidate rules (score threshold, gate margin in expected keypoint
# similarity); EVERY_JOINT makes every joint a candidate, and the gate alone
# decides
RULES = [(thr, margin) for thr in (0.5, 0.9, EVERY_JOINT) for margin in (0.02, 0.05, 0.1, 0.2)]
# module-level so that forked workers share them without pickling
_DATA: dict = {}


def held_out_rule_score(rows: Dict[str, dict]) -> Tuple[bool, float, float, float]:
    """Rank of a rule on a validation fold (higher is better): first whether
    no set's AP drops and no set's EPE rises, then the worst set's AP change
    (the criterion is AP on each set, and the pooled AP is dominated by the
    largest set), then the pooled AP change of all sets, then the mean change
    of the box-normalised EPE over the sets (lower first)."""
    sets = [r for n, r in rows.items() if n != 'all']
    harmless = all(r['refined']['AP'] >= r['baseline']['AP']
                   and r['refined']['EPE'] <= r['baseline']['EPE'] for r in sets)
    worst_ap = min(r['refined']['AP'] - r['baseline']['AP'] for r in sets)
    d_ap = rows['all']['refined']['AP'] - rows['all']['baseline']['AP']
    d_epe = np.mean([r['refined']['EPE_norm'] - r['baseline']['EPE_norm'] for r in sets])
    return harmless, float(worst_ap), float(d_ap), -float(d_epe)


def split(sets: Dict[str, BodySet], folds: Dict[str, np.ndarray], keep) -> Dict[str, BodySet]:
    return {n: b.subset(np.flatnonzero(np.isin(folds[n], keep))) for n, b in sets.items()}


def train_on(train_sets: List[BodySet], settings: TrainingSettings, seed: int):
    meta = _DATA['meta']
    pool = build_pool(train_sets + [_DATA['coco_val']], train_sets, meta,
                      synthetic_copies=_DATA['synthetic_copies'], seed=seed)
    # seeded before the network's initialisation: a pool worker's random
    # state otherwise depends on which folds it ran before
    torch.manual_seed(seed)
    refiner, _ = build_refiner()
    secs = train_refiner(refiner, pool, settings, meta['flip_indices'])
    return refiner, secs


def run_fold(fold: int) -> dict:
    """Train on the training folds but fold + 1, choose the rule on fold + 1
    with that same refiner (a rescoring weight suits the calibration of the
    network it was chosen for, not of a retrained one), and refine the
    held-out fold."""
    torch.set_num_threads(1)
    sets, folds, k = _DATA['sets'], _DATA['folds'], _DATA['num_folds']
    settings: TrainingSettings = _DATA['settings']
    val_fold = (fold + 1) % k
    train = [f for f in range(k) if f not in (fold, val_fold)]
    fold_settings = TrainingSettings(**dict(vars(settings), seed=settings.seed + fold))
    refiner, secs = train_on(list(split(sets, folds, train).values()), fold_settings,
                             seed=settings.seed + fold)
    val = split(sets, folds, [val_fold])
    sigmas = _DATA['meta']['sigmas']
    val['all'] = merge_sets(list(val.values()))
    baselines = {n: pose_scores(b, b.pred, np.zeros(b.visible.shape, bool), sigmas)
                 for n, b in val.items()}
    ranks, calibrations = {}, {}
    for thr, margin in RULES:
        # rescore=1 returns each person's expected OKS as its score
        outputs = {n: refine_with_rule(refiner, b, thr, margin, rescore=1.0)
                   for n, b in val.items() if n != 'all'}
        outputs['all'] = tuple(np.concatenate([out[i] for out in outputs.values()])
                               for i in range(3))
        calibration = (similarity_calibration(val['all'], *outputs['all'])
                       if _DATA['calibrate'] else None)
        calibrations[(thr, margin)] = calibration
        for weight in RESCORE_WEIGHTS:
            rows = {}
            for n, out in outputs.items():
                expected = calibrated(val[n], out[2], calibration)
                rows[n] = refinement_scores(val[n], out[0], out[1],
                                            blend_scores(val[n], expected, weight), sigmas,
                                            baseline=baselines[n], positions_only=False)
            ranks[(thr, margin, weight)] = held_out_rule_score(rows)
    thr, margin, weight = max(ranks, key=lambda r: ranks[r])
    test = split(sets, folds, [fold])
    out = {n: refine_with_rule(refiner, b, thr, margin, weight, calibrations[(thr, margin)])
           for n, b in test.items()}
    return dict(fold=fold, rule=(thr, margin, weight), outputs=out, seconds=secs,
                calibration=calibrations[(thr, margin)],
                ranks={'/'.join(map(str, r)): v for r, v in ranks.items()})


def similarity_calibration(body: BodySet, refined: np.ndarray, replaced: np.ndarray,
                           expected_oks: np.ndarray) -> list:
    """The map from a refiner's expected OKS (N,) to the refined persons'
    OKS against their ground truth, fitted on validation persons. Each
    fold's refiner estimates on its own scale; the pooled held-out AP ranks
    the persons of all folds in one list, so their scores must share one."""
    has = body.has_pred
    true = instance_similarity(refined[has], body.keypoints[has], body.visible[has],
                               body.areas[has], _DATA['meta']['sigmas'])
    return fit_similarity_calibration(expected_oks[has], true)


def calibrated(body: BodySet, expected_oks: np.ndarray, calibration) -> np.ndarray:
    """``expected_oks`` (N,) through ``calibration`` for the persons with
    predictions (the others hold their own score there)."""
    if calibration is None:
        return expected_oks
    out = expected_oks.copy()
    has = body.has_pred
    out[has] = calibrated_similarity(torch.from_numpy(expected_oks[has]), calibration).numpy()
    return out


def scores_with_pooled(sets: Dict[str, BodySet],
                       outputs: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """Scores of each set's refinement (refined keypoints, replaced mask,
    instance scores), and of all sets pooled (``'all'``)."""
    sigmas = _DATA['meta']['sigmas']
    result = {n: refinement_scores(sets[n], *outputs[n], sigmas) for n in sets}
    result['all'] = refinement_scores(merge_sets(list(sets.values())),
                                      *[np.concatenate([outputs[n][i] for n in sets])
                                        for i in range(3)], sigmas)
    return result


def pooled_scores(sets: Dict[str, BodySet], folds, outputs: Dict[int, dict]) -> dict:
    """Scores per set and over all sets of the held-out refinements."""
    merged = {}
    for name, body in sets.items():
        refined = np.zeros_like(np.nan_to_num(body.pred))
        replaced = np.zeros(body.visible.shape, bool)
        scores = body.pred_instance_scores.astype(np.float32).copy()
        for fold, out in outputs.items():
            idx = np.flatnonzero(folds[name] == fold)
            refined[idx], replaced[idx], scores[idx] = out[name]
        merged[name] = (refined, replaced, scores)
    result = scores_with_pooled(sets, merged)
    # each fold ranked alone (one refiner's scores): pooling mixes the
    # instance scores of five refiners in one ranking
    sigmas = _DATA['meta']['sigmas']
    result['per_fold_AP'] = {}
    for name, body in sets.items():
        rows = []
        for fold in sorted(outputs):
            idx = np.flatnonzero(folds[name] == fold)
            r = refinement_scores(body.subset(idx), *(a[idx] for a in merged[name]), sigmas,
                                  positions_only=False)
            rows.append((r['baseline']['AP'], r['refined']['AP']))
        result['per_fold_AP'][name] = rows
    return result


def transfer_scores(sets: Dict[str, BodySet], checkpoint: str) -> dict:
    """The shipped refiner, with its own threshold and gate, on every set,
    each person framed by the box BlazePose ran on."""
    refiner = load_refiner(checkpoint)
    outputs = {name: refine_persons(refiner, body) for name, body in sets.items()}
    result = scores_with_pooled(sets, outputs)
    result['rule'] = refiner.rule.to_config()
    result['rule_text'] = refiner.rule.describe()
    return result


def print_table(title: str, result: dict) -> None:
    print(f'\n{title}')
    header = ('set', 'persons', 'AP', 'AP positions only', 'EPE px', 'EPE occluded',
              'PCK@0.1', 'replaced', 'worsened')
    rows = [header]
    for name, r in result.items():
        if not isinstance(r, dict) or 'baseline' not in r:
            continue
        b, f = r['baseline'], r['refined']
        occ = (f"{b['EPE_occluded']:.2f} -> {f['EPE_occluded']:.2f}"
               if np.isfinite(b['EPE_occluded']) else '-')
        rows.append((name, str(r['persons']), f"{b['AP']:.4f} -> {f['AP']:.4f}",
                     f"{b['AP']:.4f} -> {f['AP_positions_only']:.4f}",
                     f"{b['EPE']:.2f} -> {f['EPE']:.2f}", occ,
                     f"{b['PCK@0.1']:.4f} -> {f['PCK@0.1']:.4f}",
                     f"{100 * r['replaced_fraction']:.2f}%",
                     f"{100 * r['worsened_fraction']:.1f}%"
                     if np.isfinite(r['worsened_fraction']) else '-'))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print('  '.join(c.ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print('  '.join('-' * w for w in widths))


def print_per_fold_ap(per_fold: Dict[str, list]):
    """AP per held-out fold, each ranked by its own refiner's scores alone."""
    print('\nAP per held-out fold (baseline -> refined), each fold ranked alone')
    for name, rows in per_fold.items():
        folds = '  '.join(f'{b:.4f}->{r:.4f}' for b, r in rows)
        up = sum(r >= b for b, r in rows)
        print(f'  {name:<6} {folds}  (not lower on {up}/{len(rows)})')


def main(argv=None):
    # MMPose resolves the metainfo file from its own package and says so
    warnings.filterwarnings('ignore', message='The metainfo config file')
    parser = argparse.ArgumentParser(description='PORT on real BlazePose predictions')
    parser.add_argument('--work-dir', default='work_dirs/benchmark')
    parser.add_argument('--checkpoint', default=SHIPPED_BODY_REFINER,
                        help='the shipped refiner for the transfer part')
    parser.add_argument('--num-folds', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0, help='training seed')
    parser.add_argument('--iters', type=int, default=2000)
    parser.add_argument('--workers', type=positive_int, default=2, help='folds trained at once')
    parser.add_argument('--skip-cv', action='store_true', help='only the transfer part')
    parser.add_argument('--calibrate', action=argparse.BooleanOptionalAction, default=True,
                        help='map each fold refiner\'s expected OKS to observed OKS on its '
                        'validation fold before rescoring')
    args = parser.parse_args(argv)
    start = time.time()
    sets, coco_val = load_body_data()
    meta = coco_metainfo()
    folds = blazepose_folds(sets, args.num_folds)
    _DATA.update(sets=sets, coco_val=coco_val, folds=folds, meta=meta,
                 num_folds=args.num_folds, synthetic_copies=4, calibrate=args.calibrate,
                 settings=TrainingSettings(iters=args.iters, batch_size=128, seed=args.seed))
    # the refiners frame each person by the box BlazePose ran on
    result = {'frames': 'results'}
    if not args.skip_cv:
        print(f'(a) cross-validation: {sum(len(b) for b in sets.values())} BlazePose persons '
              f'in {args.num_folds} folds grouped by image, plus {len(coco_val)} COCO val2017 '
              f'ground-truth persons for training', flush=True)
        outputs, rules, ranks, calibrations, seconds = {}, {}, {}, {}, 0.0
        ctx = mp.get_context('fork')
        with ctx.Pool(args.workers) as pool:
            for res in pool.imap_unordered(run_fold, range(args.num_folds)):
                outputs[res['fold']] = res['outputs']
                rules[res['fold']] = res['rule']
                ranks[res['fold']] = res['ranks']
                calibrations[res['fold']] = res['calibration']
                seconds += res['seconds']
                print(f"  fold {res['fold']}: rule chosen on fold "
                      f"{(res['fold'] + 1) % args.num_folds}: threshold {res['rule'][0]}, "
                      f"gate margin {res['rule'][1]}, rescoring weight {res['rule'][2]} "
                      f"({res['seconds']:.0f} s training)",
                      flush=True)
        cv = pooled_scores(sets, folds, outputs)
        cv['rules'] = [rules[f] for f in range(args.num_folds)]
        # per fold, each rule's rank on its validation fold (threshold/margin/weight)
        cv['validation_ranks'] = [ranks[f] for f in range(args.num_folds)]
        cv['calibrations'] = [calibrations[f] for f in range(args.num_folds)]
        cv['train_seconds'] = seconds
        result['cross_validation'] = cv
        print_table('(a) held-out folds, refined by a refiner trained on the other folds', cv)
        print_per_fold_ap(cv['per_fold_AP'])
    if osp.exists(args.checkpoint):
        tr = transfer_scores(sets, args.checkpoint)
        tr['checkpoint'] = args.checkpoint
        result['transfer'] = tr
        rule = tr['rule_text'].replace('\n', '; ')
        print_table(f'(b) drop-in: {args.checkpoint} (trained without BlazePose predictions; '
                    f'its rule: {rule})', tr)
    else:
        print(f'(b) skipped: {args.checkpoint} does not exist')
    result['seconds'] = time.time() - start
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'body_real.json'), 'w') as f:
        json.dump(result, f, indent=2)
    print(f"\nwritten {osp.join(args.work_dir, 'body_real.json')} ({result['seconds']:.0f} s)")


if __name__ == '__main__':
    main()
