"""Refine the results file of any pose estimation method with a PORT refiner.

    python tools/refine_results.py RESULTS --checkpoint REFINER.pth \
        --out REFINED [--ann ANN_JSON] [--score-thr 0.3] [--config CFG]
    python tools/refine_results.py --describe REFINER.pth   # what its rule does

RESULTS is a COCO keypoint results json (image_id, category_id, keypoints,
score), an MMPose ``tools/test.py --dump`` pickle, or an MMPose 0.x test
output pickle; REFINED is written in the same format (atomically), every
field but the refined keypoints (and rescored instance scores) as read.
Pickles are read with a restricted unpickler (numpy and builtin data only).

Ground truth never enters refinement. Each instance is refined in the frame
of the box its estimator ran on, as the results file gives it (a json
record's ``bbox`` [x, y, w, h], else MMPose 0.x's ``center`` and ``scale``;
a dump's ``pred_instances.bboxes``; a 0.x pickle's ``boxes``), else, where
the file gives no usable box for it, of the extent of its keypoints
(``--bbox-source``; the summary says how many instances were framed by
their keypoints). ``--ann`` (a COCO-style annotation file) only scores: it
prints before/after errors of the instances matched to an annotation (and
COCO keypoint AP for 17-joint bodies; PCKh@0.5 where the annotations carry
MPII's ``head_size``) and never changes the refined output: REFINED is the
same file, byte for byte, with and without it.

Where the refiner's rule rescores (``rule.rescore``) and every instance is
framed by a box of the results file, each
instance score (a json record's ``score``, a 0.x batch's ``boxes[:, 5]``, a
dump's ``bbox_scores``) is blended with the refiner's expected OKS of the
refined person, which is what COCO AP ranks by; else the scores are kept.
``--rescore W`` sets the weight (and forces it). The work is
:func:`mmport.apis.refine_results_file`.

``--scores none`` is for methods that give no per-joint confidence (a
constant or a "predicted" flag in the score slot): the refiner must be a
score-free one (trained with ``use_scores=False``); it reads positions only
and every joint is a candidate for refinement. The file's score values are
written back unchanged.

``--describe CKPT`` prints the refiner's test-time rule in plain words
(which joints are candidates, which of them its gate moves, whether it
rescores) and exits.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmport.apis import BBOX_SOURCES, load_refiner, refine_results_file  # noqa: E402
from mmport.utils import run_cli  # noqa: E402


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f'must be in [0, 1], got {text}')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == '--describe':
        describe = argparse.ArgumentParser(description='describe a refiner\'s rule')
        describe.add_argument('--describe', metavar='CKPT', required=True)
        describe.add_argument('--config', help='refiner config, if the checkpoint holds none')
        return describe.parse_args(argv)
    parser.add_argument('results', help='results file (.json or .pkl)')
    parser.add_argument('--checkpoint', required=True, help='PORT refiner checkpoint')
    parser.add_argument('--out', required=True, help='refined results file')
    parser.add_argument('--ann', help='COCO-style annotation file: scores only (errors, PCKh, '
                        'COCO AP); never changes the refined output')
    parser.add_argument('--config', help='refiner config, if the checkpoint holds none')
    parser.add_argument('--score-thr', type=float, help='override the confidence threshold')
    parser.add_argument('--scores', default='file', choices=('file', 'none'),
                        help='"none": the file\'s per-joint scores are not confidences; '
                        'refine every joint from positions alone (needs a score-free refiner)')
    parser.add_argument('--bbox-source', default='auto', choices=BBOX_SOURCES,
                        help='frame of each instance: results: the box the results file '
                        'gives (the one the estimator ran on); keypoints: the extent of its '
                        'keypoints; auto (default): the results\' box where it is finite and '
                        'not degenerate, else the keypoints\' extent. Annotation boxes are '
                        'never used')
    parser.add_argument('--rescore', type=unit_interval,
                        help="weight in [0, 1] of the refiner's expected OKS in each instance's "
                        "score (default: the refiner's where every instance is framed by a box "
                        "of the results file, else 0); 0 keeps the file's scores")
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def describe(checkpoint: str, config=None) -> str:
    """The refiner's name, skeleton and rule, as ``--describe`` prints it."""
    refiner = load_refiner(checkpoint, config)
    names = refiner.metainfo.get('keypoint_id2name')
    names = [names[i] for i in range(refiner.num_keypoints)] if names else None
    scores = 'reads per-joint scores' if refiner.network.use_scores else 'score-free'
    return (f'{checkpoint}: {refiner.num_keypoints} keypoints, {scores}\n'
            + refiner.rule.describe(names))


def main(argv=None) -> int:
    args = parse_args(argv)
    if getattr(args, 'describe', None):
        print(describe(args.describe, args.config))
        return 0
    report = refine_results_file(args.results, args.checkpoint, args.out, args.ann,
                                 args.score_thr, args.config, args.bbox_source, args.device,
                                 scores=args.scores, rescore=args.rescore)
    print(report.summary())
    return 0


if __name__ == '__main__':
    run_cli(main)
