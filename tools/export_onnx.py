"""Export a trained PORT refiner (its test-time rule included) to ONNX.

    python tools/export_onnx.py REFINER.pth --out port.onnx [--score-thr 0.3] [--no-rescoring]

Inputs: keypoints (B, K, 2) float32 pixels, scores (B, K), bboxes (B, 4)
xyxy; outputs: refined_keypoints (B, K, 2), replaced (B, K) bool. Where the
refiner's rule rescores, also instance_scores (B,) in and
rescored_instance_scores (B,) out, unless ``--no-rescoring`` drops the
rescoring (the tool says so). The batch axis is dynamic. The export is
checked against PyTorch with onnxruntime
(:func:`mmport.deployment.export_onnx`, :func:`compare_onnx_with_pytorch`).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmport.apis import load_refiner  # noqa: E402
from mmport.deployment import compare_onnx_with_pytorch, export_onnx  # noqa: E402
from mmport.utils import run_cli  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Export a PORT refiner to ONNX')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True)
    parser.add_argument('--config', help='refiner config, if the checkpoint holds none')
    parser.add_argument('--score-thr', type=float)
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--no-rescoring', action='store_true',
                        help="export without the rule's rescoring of instance scores")
    args = parser.parse_args(argv)
    refiner = load_refiner(args.checkpoint, args.config)
    export_onnx(refiner, args.out, args.score_thr, args.opset,
                export_rescoring=not args.no_rescoring)
    err, masks_equal, score_err = compare_onnx_with_pytorch(refiner, args.out, args.score_thr)
    if refiner.rule.rescore is None:
        rescoring = 'the rule keeps instance scores'
    elif args.no_rescoring:
        rescoring = 'the rule rescores instances; this export DROPS the rescoring'
    else:
        rescoring = f'rescored instance scores max abs error {score_err:.2e}'
    print(f'wrote {args.out}; onnxruntime vs PyTorch on 64 random poses: max abs error '
          f'{err:.2e} px, replaced masks equal: {masks_equal}; {rescoring}')
    return 0


if __name__ == '__main__':
    run_cli(main)
