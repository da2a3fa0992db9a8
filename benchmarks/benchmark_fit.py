"""A user's experience of ``tools/fit_refiner.py`` on every bundled real set.

Each set is what a user has: a detector's results file and the annotations
of the same persons. Its images are split in two halves (seeded); a refiner
is fitted on one half (``mmport.apis.fit_refiner``: its own grouped K-fold
rule choice inside the half) and refines the other half through
``refine_results_file``, and the other way round, so every person is
refined by a refiner that never saw its image. Two seeds. Scored against the
annotations only afterwards, by the metric the fit chose (PCKh@0.5 for
MPII, PCK@0.2 for LSP, COCO AP for the BlazePose COCO results, EPE for the
Panoptic hands), with EPE, the share of joints moved and of those made worse.

One line times a fit of 2,000 persons (BlazePose LSPET). A data-efficiency
curve fits 100, 300, 1000 and all persons of the fitting
half of the two largest sets, from the pretrained starting point and from
scratch (what pretraining buys), and plots it.

    python -m benchmarks.benchmark_fit [--quick] [--seeds 0 1] [--workers 2]

``--quick`` (the main job): one set per family (``QUICK_SETS``), one seed,
no curve.
Writes ``work_dirs/benchmark/fit.json`` (and ``fit_data_efficiency.png``).
"""
import argparse
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional

import numpy as np

from mmport.apis import fit_refiner, refine_results_file
from mmport.apis.ground_truth_scoring import load_coco_annotations, match_ground_truth
from mmport.datasets import grouped_folds, load_pose_results
from mmport.fitting.fit_metric import build_targets, epe, gain, metric_value, moved_outcomes
from mmport.models.port_refiner import resolve_metainfo
from mmport.utils import load_json, positive_int

from .cross_validation import printed_to_file
from .mpii_coco import mpii_annotations, mpii_results
from .parallel_training import default_workers

OUT_DIR = 'work_dirs/benchmark'
LSP_METHODS = ('WangLiCVPR13_pc', 'KiefelGehlerECCV14_oc', 'TompsonNIPS14_pc',
               'BulatTzimiropoulosECCV16_pc')
CURVE_SETS = ('BlazePose lspet', 'MPII hg_s8')
CURVE_SIZES = (100, 300, 1000, None)
# the main job's sets (one per family), with one seed and no curve
# the speed line: one fit of this many persons
SPEED_PERSONS = 2000
SPEED_SET = 'BlazePose lspet'
QUICK_SETS = ('Panoptic hands', 'BlazePose lsp', 'MPII hg_s8', "LSP Wang et al., CVPR'13")


def panoptic_records() -> tuple:
    """The Panoptic MobileNetV2 pickle as COCO results (with the boxes it
    ran on) and its annotations."""
    coco = load_json('data/panoptic/annotations/panoptic_test.json')
    poses = load_pose_results('data/panoptic/mobilenetv2_panoptic_256x256_test.pkl')
    by_name = {osp.basename(im['file_name']): im['id'] for im in coco['images']}
    records = []
    for i, key in enumerate(poses.image_keys):
        box = poses.bboxes[i]
        kp = np.concatenate([poses.keypoints[i], poses.keypoint_scores[i][:, None]], 1)
        records.append(dict(image_id=by_name[osp.basename(key)], category_id=1,
                            score=float(poses.scores[i]), keypoints=kp.reshape(-1).tolist(),
                            bbox=[float(box[0]), float(box[1]), float(box[2] - box[0]),
                                  float(box[3] - box[1])]))
    return records, coco


def real_sets() -> Dict[str, dict]:
    """name -> dict(records, coco, scores, metric)."""
    sets = {}
    records, coco = panoptic_records()
    sets['Panoptic hands'] = dict(records=records, coco=coco, scores='file', metric='EPE')
    for name in ('lsp', 'lspet', 'coco'):
        sets[f'BlazePose {name}'] = dict(
            records=load_json(f'data/body_real/{name}_blazepose.json.gz'),
            coco=load_json(f'data/body_real/{name}_gt.json.gz'), scores='file', metric=None)
    d = np.load('data/mpii/mpii_val_preds.npz')
    ann = mpii_annotations(d)
    for model in ('tompson', 'hg_s1', 'hg_s8'):
        sets[f'MPII {model}'] = dict(records=mpii_results(d, model), coco=ann, scores='none',
                                     metric=None)
    index = {osp.basename(e['pred_file']).split('.')[0]: e
             for e in load_json('data/lsp_methods/index.json')}
    for method in LSP_METHODS:
        entry = index[method]
        gt = osp.splitext(entry['score_against'])[0]
        sets[f'LSP {entry["display_name"]}'] = dict(
            records=load_json(f'data/lsp_methods/preds/{method}.json.gz'),
            coco=load_json(f'data/lsp_methods/{gt}.json.gz'), scores='none', metric=None)
    return sets


def write_split(path: str, records: List[dict], coco: dict, keep: np.ndarray) -> tuple:
    """Results and annotation files of the persons ``keep`` (their images)."""
    images = {records[i]['image_id'] for i in np.flatnonzero(keep)}
    res = [records[i] for i in np.flatnonzero(keep)]
    ann = dict(coco, images=[im for im in coco['images'] if im['id'] in images],
               annotations=[a for a in coco['annotations'] if a['image_id'] in images])
    res_path, ann_path = path + '_results.json', path + '_ann.json'
    with open(res_path, 'w') as f:
        json.dump(res, f)
    with open(ann_path, 'w') as f:
        json.dump(ann, f)
    return res_path, ann_path


def halves(records: List[dict], seed: int) -> np.ndarray:
    return grouped_folds([str(r['image_id']) for r in records], 2, seed)


def score(records: List[dict], coco: dict, refined: np.ndarray, inst: np.ndarray,
          metric: str, work: str) -> dict:
    """Before / after of the persons of ``records`` matched to annotations,
    refined to ``refined`` (N, K, 2) with instance scores ``inst`` (N,)."""
    path = osp.join(work, 'scored_results.json')
    with open(path, 'w') as f:
        json.dump(records, f)
    poses = load_pose_results(path)
    match = match_ground_truth(poses, coco)
    m = np.flatnonzero(match.ann_index >= 0)
    anns = [match.annotations[a] for a in match.ann_index[m]]
    sigmas = (resolve_metainfo(dict(from_file='configs/_base_/datasets/coco.py'))['sigmas']
              if metric == 'AP' else None)
    t = build_targets(anns, coco['images'], metric, sigmas)
    before = metric_value(poses.keypoints[m], t, poses.scores[m])
    after = metric_value(refined[m], t, inst[m])
    return dict(persons=len(m), before=before, after=after, gain=gain(before, after, metric),
                epe_before=epe(poses.keypoints[m], t), epe_after=epe(refined[m], t),
                **moved_outcomes(poses.keypoints[m], refined[m], t))


def fit_and_refine(records: List[dict], coco: dict, fit_mask: np.ndarray, test_mask: np.ndarray,
                   spec: dict, seed: int, workers: int, work: str, init: Optional[str] = None,
                   iters: int = 600):
    """Fit on ``fit_mask`` persons, refine ``test_mask`` persons: refined
    keypoints (T, K, 2), instance scores (T,), the fit report; the files
    (splits, checkpoint, ``fit_report.txt``) go to ``work``."""
    os.makedirs(work, exist_ok=True)
    fit_res, fit_ann = write_split(osp.join(work, 'fit'), records, coco, fit_mask)
    test_res, _ = write_split(osp.join(work, 'test'), records, coco, test_mask)
    ckpt = osp.join(work, 'fitted.pth')
    out_path = osp.join(work, 'test_refined.json')
    # mmengine's checkpoint-loading lines and warnings go to the work dir
    with printed_to_file(work):
        report = fit_refiner(fit_res, fit_ann, ckpt, scores=spec['scores'], init=init,
                             seed=seed, workers=workers, metric=spec['metric'], iters=iters,
                             hold_out=spec.get('hold_out', 'image'), progress=False)
        out = refine_results_file(test_res, ckpt, out=out_path, scores=spec['scores'])
    with open(osp.join(work, 'fit_report.txt'), 'w') as f:
        f.write(report.summary() + '\n')
    # the written scores: rescored where the fitted rule rescores, else the file's
    inst = np.array([r['score'] for r in load_json(out_path)], np.float64)
    return out.refined, inst, report


def run_set(name: str, spec: dict, seeds, workers: int, root: str, iters: int = 600) -> dict:
    """Per seed: each half refined by the refiner fitted on the other half,
    scored per half (each half has one refiner, whose rescored scores rank
    together) and averaged, weighted by persons."""
    records, coco = spec['records'], spec['coco']
    rows = []
    for seed in seeds:
        work = osp.join(root, name.replace(' ', '_'), f'seed{seed}')
        os.makedirs(work, exist_ok=True)
        half = halves(records, seed)
        fits, parts = [], []
        start = time.time()
        for h in (0, 1):
            test = half != h
            out, scores, report = fit_and_refine(records, coco, half == h, test, spec,
                                                 seed, workers, osp.join(work, f'half{h}'),
                                                 iters=iters)
            sub = [r for r, t in zip(records, test) if t]
            parts.append(score(sub, coco, out, scores, report.metric, work))
            fits.append(dict(persons=report.persons, promise=report.promise,
                             spread=report.spread, keep=report.keep, chosen=report.chosen,
                             metric=report.metric))
        metric = fits[0]['metric']
        row = dict(combine(parts, metric), seed=seed, metric=metric, fits=fits, halves=parts,
                   seconds=time.time() - start)
        rows.append(row)
        print(f'  {name} seed {seed}: {metric} {row["before"]:.4f} -> {row["after"]:.4f} '
              f'({row["gain"]:+.2f}), EPE {row["epe_before"]:.2f} -> {row["epe_after"]:.2f}, '
              f'rules kept {sum(f["keep"] for f in fits)}/2, {row["seconds"]:.0f} s', flush=True)
    return dict(name=name, rows=rows)


def combine(parts: List[dict], metric: str) -> dict:
    """Two halves' scores as one: person-weighted means (moved / worsened
    from the joint counts)."""
    w = np.array([p['persons'] for p in parts], np.float64)
    out = {key: float(np.average([p[key] for p in parts], weights=w))
           for key in ('before', 'after', 'epe_before', 'epe_after', 'moved')}
    moved = sum(p['moved_joints'] for p in parts)
    out['worsened'] = float(sum(p['worsened'] * p['moved_joints'] for p in parts)
                            / max(moved, 1))
    out.update(persons=int(w.sum()), moved_joints=moved,
               gain=gain(out['before'], out['after'], metric))
    return out


def data_efficiency(name: str, spec: dict, workers: int, root: str, iters: int = 600) -> dict:
    """Fit on 100, 300, 1000, all persons of half 0 (seed 0), pretrained and
    from scratch; refine and score half 1."""
    records, coco = spec['records'], spec['coco']
    half = halves(records, 0)
    rng = np.random.default_rng(0)
    fit_idx = rng.permutation(np.flatnonzero(half == 0))
    test = half == 1
    curve = []
    for size in CURVE_SIZES:
        n = len(fit_idx) if size is None else min(size, len(fit_idx))
        mask = np.zeros(len(records), bool)
        mask[fit_idx[:n]] = True
        point = dict(persons=n)
        for init in (None, 'scratch'):
            work = osp.join(root, 'curve', name.replace(' ', '_'), f'{n}_{init or "pretrained"}')
            os.makedirs(work, exist_ok=True)
            out, scores, report = fit_and_refine(records, coco, mask, test, spec, 0, workers,
                                                 work, init=init, iters=iters)
            sub = [r for r, t in zip(records, test) if t]
            s = score(sub, coco, out, scores, report.metric, work)
            point[init or 'pretrained'] = dict(s, keep=report.keep, metric=report.metric)
        curve.append(point)
        print(f'  curve {name} {n} persons: {report.metric} gain pretrained '
              f'{point["pretrained"]["gain"]:+.2f}, scratch {point["scratch"]["gain"]:+.2f}',
              flush=True)
    return dict(name=name, points=curve)


def fit_speed(name: str, spec: dict, workers: int, root: str, persons: int = SPEED_PERSONS,
              iters: int = 600) -> dict:
    """Wall time of one fit (cross-validation and final training) of
    ``persons`` persons of a set, with ``workers`` processes."""
    records = spec['records']
    mask = np.zeros(len(records), bool)
    mask[:persons] = True
    work = osp.join(root, 'speed')
    os.makedirs(work, exist_ok=True)
    fit_res, fit_ann = write_split(osp.join(work, 'fit'), records, spec['coco'], mask)
    start = time.time()
    with printed_to_file(work):
        report = fit_refiner(fit_res, fit_ann, osp.join(work, 'fitted.pth'),
                             scores=spec['scores'], workers=workers, iters=iters,
                             progress=False)
    seconds = time.time() - start
    print(f'  speed: fitting {report.persons} {name} persons took {seconds:.0f} s '
          f'({workers} workers, {os.cpu_count()} cores)', flush=True)
    return dict(set=name, persons=report.persons, seconds=seconds, workers=workers,
                cores=os.cpu_count())


def plot_curves(curves: List[dict], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6))
    for ax, c in zip(np.atleast_1d(axes), curves):
        xs = [p['persons'] for p in c['points']]
        for init in ('pretrained', 'scratch'):
            ax.plot(xs, [p[init]['gain'] for p in c['points']], 'o-', label=init)
        ax.axhline(0, color='grey', lw=0.8)
        ax.set_xscale('log')
        metric = c['points'][0]['pretrained']['metric']
        ax.set_xlabel('persons fitted')
        ax.set_ylabel(f'{metric} gain on the other half' + (' (%)' if metric == 'EPE' else
                                                            ' (points)'))
        ax.set_title(c['name'])
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def format_table(sets: List[dict]) -> str:
    return format_rows([(s['name'], r) for s in sets for r in s['rows']], 'set')


def format_rows(rows: List[tuple], title: str) -> str:
    """(name, row) pairs as the console table of a fit benchmark."""
    lines = [f'{title:<34} {"metric":<9} {"seed":>4} {"before":>8} {"after":>8} {"gain":>7} '
             f'{"EPE before":>10} {"after":>7} {"moved":>6} {"worse":>6} {"kept":>4}']
    for name, r in rows:
        lines.append(f'{name:<34} {r["metric"]:<9} {r["seed"]:>4} {r["before"]:>8.4f} '
                     f'{r["after"]:>8.4f} {r["gain"]:>+7.2f} {r["epe_before"]:>10.2f} '
                     f'{r["epe_after"]:>7.2f} {100 * r["moved"]:>5.1f}% '
                     f'{100 * r["worsened"]:>5.1f}% {sum(f["keep"] for f in r["fits"]):>2}/2')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='one set per family, one seed, no data-efficiency curve '
                        '(the main job)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--sets', nargs='+', help='only these sets (names as printed)')
    parser.add_argument('--workers', type=positive_int, default=default_workers())
    parser.add_argument('--iters', type=positive_int, default=600,
                        help='optimiser steps of each training (fit_refiner\'s default)')
    parser.add_argument('--out', default=osp.join(OUT_DIR, 'fit.json'))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    seeds = args.seeds[:1] if args.quick else args.seeds
    root = osp.join('work_dirs', 'benchmark_fit')
    every_set = real_sets()
    sets = every_set
    names = args.sets or (QUICK_SETS if args.quick else None)
    if names:
        unknown = sorted(set(names) - set(sets))
        if unknown:
            raise SystemExit(f'unknown sets {unknown}; known: {sorted(sets)}')
        sets = {k: v for k, v in sets.items() if k in names}
    print(f'fit on one half of each set, refine the other (seeds {seeds}, '
          f'{args.workers} workers)', flush=True)
    start = time.time()
    speed = fit_speed(SPEED_SET, every_set[SPEED_SET], args.workers, root, iters=args.iters)
    results = [run_set(name, spec, seeds, args.workers, root, args.iters)
               for name, spec in sets.items()]
    curves = []
    if not args.quick:
        curves = [data_efficiency(name, sets[name], args.workers, root, args.iters)
                  for name in CURVE_SETS if name in sets]
    table = format_table(results)
    print('\nfit_refiner: fitted on one half of the images, scored on the other (both ways)')
    print(table)
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(frames='results', seeds=seeds, date=time.strftime('%Y-%m-%d'),
                       seconds=time.time() - start, speed=speed, sets=results, curves=curves),
                  f, indent=1)
    if curves:
        png = osp.join(osp.dirname(args.out), 'fit_data_efficiency.png')
        plot_curves(curves, png)
        print(f'data-efficiency curve: {png}')
    print(f'wrote {args.out} ({time.time() - start:.0f} s)')


if __name__ == '__main__':
    main()
