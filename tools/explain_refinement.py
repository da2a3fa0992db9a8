"""Explain one refinement: which joints a refined joint's reconstruction
relied on (PORT's attention over joints), drawn over the instance.

    python tools/explain_refinement.py RESULTS --checkpoint REFINER.pth \
        --ann ANN_JSON --image NAME_OR_INDEX [--joint J] [--image-root DIR] --out X.png

RESULTS is any results file ``tools/refine_results.py`` reads. ``--image`` is
an instance index or a substring of its image file name. The starred joint
(default: the replaced joint the refiner moved most) is linked to every
other joint by a line whose width and opacity grow with its attention,
averaged over heads and blocks. The work is
:func:`mmport.apis.explain_refinement`.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmport.apis import explain_refinement  # noqa: E402
from mmport.utils import run_cli  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Explain a PORT refinement')
    parser.add_argument('results')
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--ann', help='COCO-style annotations: ground truth drawn and image '
                        'names searched only; never changes the refinement')
    parser.add_argument('--image', default='0', help='instance index or image name substring')
    parser.add_argument('--joint', type=int, help='joint to explain (default: most moved)')
    parser.add_argument('--image-root', help='folder of the images, to draw on them')
    parser.add_argument('--score-thr', type=float)
    args = parser.parse_args(argv)
    explanation = explain_refinement(args.results, args.checkpoint, args.out, args.ann,
                                     args.image, args.joint, args.image_root, args.score_thr)
    print(explanation.summary())
    return 0


if __name__ == '__main__':
    run_cli(main)
