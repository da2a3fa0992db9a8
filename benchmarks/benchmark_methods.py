"""Does a refiner help a method it never saw? Leave one method out.

The ten published methods on the same 1000 LSP test persons
(data/lsp_methods; no per-joint confidences) and the three MPII models on
MPII validation (data/mpii). For each method: a score-free refiner is
fitted (``mmport.apis.fit_refiner``, from the shipped pretrained LSP-14 /
MPII-16 file, its rule chosen by cross-validation that holds out training
methods and images together, so that the rule is one for methods the refiner
did not train on; the identity rule as the floor) on the other methods' predictions of
one half of the images, each scored against its own labelling, and refines
the held-out method's predictions of the other half; then the other way
round. No test person's ground truth and no prediction of the held-out
method enter its refiner. Scored per half (PCK@0.2 with the torso for LSP,
PCKh@0.5 for MPII, EPE, moved and worsened joints) and averaged.

    python -m benchmarks.benchmark_methods [--quick] [--seeds 0 1] [--only lsp|mpii]

``--quick`` (the main job): one seed, the three MPII models and three LSP
methods (``QUICK_LSP``: the weakest, a middle and the strongest).
Writes ``work_dirs/benchmark/methods.json``.
"""
import argparse
import json
import os
import os.path as osp
import time
from typing import Dict, List

import numpy as np

from mmport.utils import load_json, positive_int

from .benchmark_fit import OUT_DIR, combine, fit_and_refine, format_rows, halves, score
from .mpii_coco import mpii_annotations, mpii_results
from .parallel_training import default_workers

# the observer-centric labels' annotation ids: the person-centric ones + this
OC_ID_OFFSET = 100000
QUICK_LSP = ("Wang et al., CVPR'13 (PC)", "Tompson et al., NIPS'14 (PC)",
             "Bulat et al., ECCV'16 (PC)")


def lsp_methods() -> Dict[str, List[dict]]:
    """Per LSP results file (method, labelling), its records, each naming
    the annotation (person- or observer-centric) it is scored against and
    its method (Chen & Yuille published both labellings: one method)."""
    out, annotation_ids = {}, {}
    for entry in load_json('data/lsp_methods/index.json'):
        stem = osp.basename(entry['pred_file']).split('.')[0]
        offset = OC_ID_OFFSET if entry['score_against'].endswith('_oc.json') else 0
        records = load_json(f'data/lsp_methods/preds/{stem}.json.gz')
        gt = osp.splitext(entry['score_against'])[0]
        if gt not in annotation_ids:  # two labellings serve eleven files
            annotation_ids[gt] = {a['image_id']: a['id'] for a in
                                  load_json(f'data/lsp_methods/{gt}.json.gz')['annotations']}
        by_image = annotation_ids[gt]
        label = f'{entry["display_name"]} ({entry["label_convention"]})'
        out[label] = [dict(r, annotation_id=by_image[r['image_id']] + offset,
                           method=entry['method']) for r in records]
    return out


def lsp_annotations() -> dict:
    """Both labellings in one file: the observer-centric annotations under
    ids offset by ``OC_ID_OFFSET``."""
    pc = load_json('data/lsp_methods/lsp_test_gt.json.gz')
    oc = load_json('data/lsp_methods/lsp_test_gt_oc.json.gz')
    return dict(pc, annotations=pc['annotations'] + [
        dict(a, id=a['id'] + OC_ID_OFFSET) for a in oc['annotations']])


def mpii_methods():
    d = np.load('data/mpii/mpii_val_preds.npz')
    names = {'tompson': 'Tompson et al.', 'hg_s1': 'hourglass, 1 stack',
             'hg_s8': 'hourglass, 8 stacks'}
    return ({names[m]: [dict(r, method=m) for r in mpii_results(d, m)] for m in names},
            mpii_annotations(d))


def leave_one_out(family: str, methods: Dict[str, List[dict]], coco: dict, seeds,
                  workers: int, root: str, iters: int, only=None) -> List[dict]:
    """Rows of each held-out method (those named in ``only``, default all)
    and seed."""
    rows = []
    image_order = methods[next(iter(methods))]
    for held_out, test_records in methods.items():
        if only is not None and held_out not in only:
            continue
        for seed in seeds:
            half = halves(image_order, seed)
            image_half = {r['image_id']: h for r, h in zip(image_order, half)}
            work = osp.join(root, family, held_out.replace(' ', '_').replace('/', '_'),
                            f'seed{seed}')
            os.makedirs(work, exist_ok=True)
            parts, fits = [], []
            start = time.time()
            for h in (0, 1):
                # every file of the held-out method stays out (both labellings)
                train = [r for recs in methods.values() for r in recs
                         if r['method'] != test_records[0]['method']
                         and image_half[r['image_id']] == h]
                test = [r for r in test_records if image_half[r['image_id']] != h]
                records = train + test
                fit_mask = np.arange(len(records)) < len(train)
                spec = dict(scores='none', metric=None, hold_out='method')
                out, scores, report = fit_and_refine(records, coco, fit_mask, ~fit_mask, spec,
                                                     seed, workers, osp.join(work, f'half{h}'),
                                                     iters=iters)
                parts.append(score(test, coco, out, scores, report.metric, work))
                fits.append(dict(persons=report.persons, promise=report.promise,
                                 spread=report.spread, keep=report.keep, chosen=report.chosen,
                                 metric=report.metric))
            metric = fits[0]['metric']
            row = dict(combine(parts, metric), family=family, method=held_out, seed=seed,
                       metric=metric, fits=fits, halves=parts, seconds=time.time() - start)
            rows.append(row)
            print(f'  {family} {held_out} seed {seed}: {metric} {row["before"]:.4f} -> '
                  f'{row["after"]:.4f} ({row["gain"]:+.2f}), EPE {row["epe_before"]:.2f} -> '
                  f'{row["epe_after"]:.2f}, rules kept {sum(f["keep"] for f in fits)}/2, '
                  f'{row["seconds"]:.0f} s', flush=True)
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='one seed, the MPII models and three LSP methods (the main job)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--only', choices=('lsp', 'mpii'))
    parser.add_argument('--workers', type=positive_int, default=default_workers())
    parser.add_argument('--iters', type=positive_int, default=600)
    parser.add_argument('--out', default=osp.join(OUT_DIR, 'methods.json'))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    root = osp.join('work_dirs', 'benchmark_methods')
    start = time.time()
    rows = []
    seeds = args.seeds[:1] if args.quick else args.seeds
    print(f'leave one method out: fit on the other methods\' errors on one half of the '
          f'images, refine the held-out method on the other (seeds {seeds})', flush=True)
    if args.only in (None, 'lsp'):
        rows += leave_one_out('LSP', lsp_methods(), lsp_annotations(), seeds, args.workers,
                              root, args.iters, QUICK_LSP if args.quick else None)
    if args.only in (None, 'mpii'):
        methods, coco = mpii_methods()
        rows += leave_one_out('MPII', methods, coco, seeds, args.workers, root, args.iters)
    print('\nleave one method out (each method scored against its own labelling)')
    print(format_rows([(r['method'], r) for r in rows], 'held-out method'))
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(frames='results', seeds=seeds, quick=args.quick,
                       date=time.strftime('%Y-%m-%d'),
                       seconds=time.time() - start, rows=rows), f, indent=1)
    print(f'wrote {args.out} ({time.time() - start:.0f} s)')


if __name__ == '__main__':
    main()
