"""Refine the results file of any pose estimation method with a PORT refiner.

    python tools/refine_results.py RESULTS --ann ANN_JSON --checkpoint REFINER.pth \
        --out REFINED [--score-thr 0.3] [--config CFG]

RESULTS is a COCO keypoint results json (image_id, category_id, keypoints,
score), an MMPose ``tools/test.py --dump`` pickle, or an MMPose 0.x test
output pickle; REFINED is written in the same format (atomically). Pickles
are read with a restricted unpickler (numpy and builtin data only). With
``--ann`` (a COCO-style annotation file) each instance is framed by its
matched annotation's box, and before/after errors (and COCO keypoint AP for
17-joint bodies; PCKh@0.5 where the annotations carry MPII's ``head_size``)
are printed. Where the refiner's ``test_cfg.rescore`` is above 0 (the
shipped body refiner's), each COCO json record's ``score`` is blended with
the refiner's expected OKS of the refined person, which is what COCO AP
ranks by. The work is :func:`mmport.apis.refine_results_file`.

``--scores none`` is for methods that give no per-joint confidence (a
constant or a "predicted" flag in the score slot): the refiner must be a
score-free one (trained with ``use_scores=False``); it reads positions only
and every joint is a candidate for refinement. The file's score values are
written back unchanged.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmport.apis import BBOX_SOURCES, refine_results_file  # noqa: E402
from mmport.utils import run_cli  # noqa: E402


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f'must be in [0, 1], got {text}')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('results', help='results file (.json or .pkl)')
    parser.add_argument('--checkpoint', required=True, help='PORT refiner checkpoint')
    parser.add_argument('--out', required=True, help='refined results file')
    parser.add_argument('--ann', help='COCO-style annotation file (boxes; ground truth)')
    parser.add_argument('--config', help='refiner config, if the checkpoint holds none')
    parser.add_argument('--score-thr', type=float, help='override the confidence threshold')
    parser.add_argument('--scores', default='file', choices=('file', 'none'),
                        help='"none": the file\'s per-joint scores are not confidences; '
                        'refine every joint from positions alone (needs a score-free refiner)')
    parser.add_argument('--bbox-source', default='auto', choices=BBOX_SOURCES,
                        help='frame of each instance: matched annotation box, the results\' '
                        'own box, or the keypoints\' extent (auto: the first available of '
                        'annotation, --dump box, extent)')
    parser.add_argument('--rescore', type=unit_interval,
                        help="weight in [0, 1] of the refiner's expected OKS in each instance's "
                        "score (default: the refiner's where every instance has a person box, "
                        "else 0); 0 keeps the file's scores")
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = refine_results_file(args.results, args.checkpoint, args.out, args.ann,
                                 args.score_thr, args.config, args.bbox_source, args.device,
                                 scores=args.scores, rescore=args.rescore)
    print(report.summary())
    return 0


if __name__ == '__main__':
    run_cli(main)
