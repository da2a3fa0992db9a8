"""The shipped refiners as a user runs them: ``tools/refine_results.py``'s
work (:func:`mmport.apis.refine_results_file`) on every bundled real set
they did not train on, each person framed by the box its detector ran on,
scored against the annotations (which only score).

* ``port_coco17_refiner.pth`` on MediaPipe BlazePose's predictions (LSP,
  LSPET, COCO photos; the refiner never saw a BlazePose prediction);
* ``port_mpii16_scorefree.pth`` (``--scores none``) on the three MPII
  models' validation predictions, framed by MPII's protocol box (it was
  trained with these models' error vectors on these persons, not with
  their positions: not a fully held-out score, as checkpoints/README.md
  says).
* ``port_lsp14_scorefree.pth`` (``--scores none``) on the ten published LSP
  methods' predictions of the 500 LSP test images it did not train on
  (im1501 .. im2000), each scored against its own labelling with PCK@0.2
  (torso). It trained on these methods' errors on the other 500 images:
  held-out images, seen methods; its measure on unseen methods is
  ``benchmarks.benchmark_methods``.

The hand refiner trained on every bundled Panoptic hand, so it has no
bundled set to be scored on; its held-out measure is the Panoptic
benchmark's cross-validation.

Prints a table and writes ``<work-dir>/shipped.json``; a set on which a
refiner lowers AP or PCKh or raises EPE is marked ``WORSE``. For the body
refiner, ``scores kept`` is the AP of the same refinement with the file's
instance scores (what its rescoring adds or takes).

    python -m benchmarks.benchmark_shipped [--work-dir DIR]
"""
import argparse
import json
import os
import os.path as osp
import tempfile
import warnings

import numpy as np

import mmport  # noqa: F401  (registers mmport's modules)
from mmport.apis import load_refiner, refine_results_file

from .benchmark_fit import score
from .benchmark_methods import lsp_annotations, lsp_methods
from .mpii_coco import mpii_annotations, mpii_results
from .train_scorefree_refiner import OUT as LSP, TRAIN_IMAGE_IDS

BODY = 'checkpoints/port_coco17_refiner.pth'
MPII = 'checkpoints/port_mpii16_scorefree.pth'
BODY_SETS = ('lsp', 'lspet', 'coco')
MPII_MODELS = {'tompson': 'Tompson et al.', 'hg_s1': 'hourglass 1 stack',
               'hg_s8': 'hourglass 8 stacks'}


def mpii_files(npz: str, folder: str) -> dict:
    """COCO-style annotation and results files of the bundled MPII arrays
    in ``folder``: ``'ann'`` and one results file per model
    (:mod:`benchmarks.mpii_coco`)."""
    d = np.load(npz)
    out = {'ann': osp.join(folder, 'mpii_val_gt.json')}
    with open(out['ann'], 'w') as f:
        json.dump(mpii_annotations(d), f)
    for m in MPII_MODELS:
        out[m] = osp.join(folder, f'{m}_preds.json')
        with open(out[m], 'w') as f:
            json.dump(mpii_results(d, m), f)
    return out


def lsp_rows(folder: str) -> list:
    """The score-free LSP-14 refiner on each LSP method's predictions of the
    test images it did not train on."""
    refiner = load_refiner(LSP)
    coco = lsp_annotations()
    rows = []
    for label, records in lsp_methods().items():
        held_out = [r for r in records if r['image_id'] not in TRAIN_IMAGE_IDS]
        path = osp.join(folder, 'lsp_held_out.json')
        with open(path, 'w') as f:
            json.dump(held_out, f)
        out = refine_results_file(path, refiner, scores='none')
        inst = np.array([r['score'] for r in held_out], np.float64)
        s = score(held_out, coco, out.refined, inst, 'PCK@0.2', folder)
        rows.append(dict(set=f'LSP {label}', metric='PCK@0.2', before=100 * s['before'],
                         after=100 * s['after'], EPE_before=s['epe_before'],
                         EPE_after=s['epe_after'], persons=s['persons'],
                         moved_joints=int(out.replaced.sum()), rescored=False,
                         frames='results', refiner=LSP,
                         worse=bool(s['after'] < s['before']
                                    or s['epe_after'] > s['epe_before'] + 1e-9)))
    return rows


def row(name: str, report, metric: str) -> dict:
    """Before / after of a report: the metric (AP or PCKh@0.5, higher is
    better), EPE (px), the share of labelled joints moved."""
    if metric == 'AP':
        before, after = report.coco_ap['init'], report.coco_ap['refined']
    else:
        before, after = (100 * report.pckh[k]['PCKh@0.5'] for k in ('init', 'refined'))
    e0, e1 = report.errors['init']['EPE'], report.errors['refined']['EPE']
    return dict(set=name, metric=metric, before=before, after=after, EPE_before=e0,
                EPE_after=e1, persons=int(report.matched),
                moved_joints=int(report.replaced.sum()),
                rescored=bool(report.rescore), frames='results',
                framed_by_keypoints=int(report.framed_by_keypoints),
                worse=bool(after < before or e1 > e0 + 1e-9))


def main(argv=None):
    warnings.filterwarnings('ignore', message='The metainfo config file')
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/benchmark')
    parser.add_argument('--data', default='data')
    args = parser.parse_args(argv)
    rows = []
    body = load_refiner(BODY)
    for name in BODY_SETS:
        folder = osp.join(args.data, 'body_real')
        files = (osp.join(folder, f'{name}_blazepose.json.gz'),
                 osp.join(folder, f'{name}_gt.json.gz'))
        report = refine_results_file(files[0], body, ann=files[1])
        # the same refinement with the file's instance scores: what the
        # rescoring adds or takes
        kept = refine_results_file(files[0], body, ann=files[1], rescore=0)
        rows.append(dict(row(f'BlazePose {name}', report, 'AP'), refiner=BODY,
                         AP_scores_kept=kept.coco_ap['refined']))
    mpii = load_refiner(MPII)
    with tempfile.TemporaryDirectory() as folder:
        files = mpii_files(osp.join(args.data, 'mpii', 'mpii_val_preds.npz'), folder)
        for m, label in MPII_MODELS.items():
            report = refine_results_file(files[m], mpii, ann=files['ann'], scores='none')
            rows.append(dict(row(f'MPII {label}', report, 'PCKh@0.5'), refiner=MPII))
        rows += lsp_rows(folder)
    header = ('refiner', 'set', 'persons', 'metric', 'before -> after', 'scores kept', 'EPE px',
              'moved', 'rescored', '')
    table = [header] + [(osp.basename(r['refiner']), r['set'], str(r['persons']), r['metric'],
                         f"{r['before']:.4f} -> {r['after']:.4f}" if r['metric'] == 'AP'
                         else f"{r['before']:.2f} -> {r['after']:.2f}",
                         f"{r['AP_scores_kept']:.4f}" if 'AP_scores_kept' in r else '-',
                         f"{r['EPE_before']:.2f} -> {r['EPE_after']:.2f}",
                         str(r['moved_joints']), 'yes' if r['rescored'] else 'no',
                         'WORSE' if r['worse'] else '') for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(header))]
    print('\nshipped refiners on the bundled real sets, each person framed by the box its '
          'detector ran on (annotations score only)')
    for i, t in enumerate(table):
        print('  '.join(c.ljust(w) for c, w in zip(t, widths)).rstrip())
        if i == 0:
            print('  '.join('-' * w for w in widths))
    os.makedirs(args.work_dir, exist_ok=True)
    out = osp.join(args.work_dir, 'shipped.json')
    with open(out, 'w') as f:
        json.dump(dict(rows=rows, frames='results'), f, indent=2)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
