"""Fit a PORT refiner to your own detector, with a cross-validated promise.

    python tools/fit_refiner.py RESULTS --ann ANN --out my_refiner.pth \
        [--scores none] [--init CKPT] [--seed S] [--workers N] [--hold-out method]

RESULTS: the detector's predictions on a labelled split, in any format
``tools/refine_results.py`` reads (a COCO keypoint results json, an MMPose
``tools/test.py --dump`` pickle, an MMPose 0.x test pickle); each person is
framed by the box the detector ran on where the file gives one, else by its
keypoints. ANN: COCO-style annotations of the same persons (matched as
``refine_results.py --ann`` matches them). The annotations train and score;
they choose the metric: PCKh@0.5 where they carry MPII's ``head_size``,
PCK@0.2 where they carry a ``torso_size`` (LSP), COCO AP for COCO results of
a skeleton with OKS sigmas, else the mean pixel error (EPE).

The tool fine-tunes the shipped pretrained refiner of the same keypoint
count (``--init`` another; 17 COCO body, 16 MPII, 14 LSP, 21 hand joints)
on these predictions' real errors, with a loss that saturates near the
metric's tolerance, and chooses the test-time rule (confidence threshold,
do-no-harm gate margin, rescoring) by grouped K-fold cross-validation
inside the file (groups = images; with ``--hold-out method``, a file that
pools several methods' predictions, each record naming its ``method``, is
cross-validated on methods and images held out together: a rule for methods
the refiner never saw). It prints per fold and in total the
metric and EPE before / after, the share of joints moved and of those made
worse, and the cross-validated gain (each fold scored with the rule chosen
on the other folds) with its spread. If that gain is not above its spread,
the written rule moves nothing and keeps the scores, and it says so.

The checkpoint (config, rule, weights, provenance and the cross-validation
result) is read by ``tools/refine_results.py --checkpoint``, by a chained
config's ``refiner_checkpoint`` and by ``tools/export_onnx.py``. The work is
:func:`mmport.apis.fit_refiner`.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmport.apis import fit_refiner  # noqa: E402
from mmport.fitting.fit_metric import METRICS  # noqa: E402
from mmport.utils import positive_int, run_cli  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('results', help='the detector\'s results file (.json[.gz] or .pkl)')
    parser.add_argument('--ann', required=True, help='COCO-style annotations of the same persons')
    parser.add_argument('--out', required=True, help='the fitted refiner checkpoint to write')
    parser.add_argument('--scores', default='file', choices=('file', 'none'),
                        help='"none": the file\'s per-joint scores are not confidences '
                        '(fit a score-free refiner)')
    parser.add_argument('--init', help='starting checkpoint (default: the shipped pretrained '
                        'refiner of the same keypoint count; "scratch": its architecture with '
                        'fresh weights)')
    parser.add_argument('--metric', choices=METRICS,
                        help='the metric to fit for (default: the one the annotations allow)')
    parser.add_argument('--hold-out', default='image', choices=('image', 'method'),
                        help='what the cross-validation holds out: images (default), or '
                        'methods and images together (records name their "method"; a refiner '
                        'for methods it did not train on)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workers', type=positive_int, default=1,
                        help='trainings run at once (processes)')
    parser.add_argument('--folds', type=positive_int, default=4,
                        help='folds of the cross-validation (default 4)')
    parser.add_argument('--iters', type=positive_int, default=600,
                        help='optimiser steps of each training (default 600)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    command = 'python tools/fit_refiner.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    report = fit_refiner(args.results, args.ann, args.out, scores=args.scores, init=args.init,
                         seed=args.seed, workers=args.workers, num_folds=args.folds,
                         iters=args.iters, metric=args.metric, hold_out=args.hold_out,
                         command=command)
    print(report.summary())
    return 0


if __name__ == '__main__':
    run_cli(main)
