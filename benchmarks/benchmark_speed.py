"""Speed of the PORT refiner on this machine (a script, not a test).

Prints and writes ``<work-dir>/speed.json``: refiner throughput (poses/s) at
batch 1 and batched, in PyTorch, ONNX Runtime and OpenVINO (f32, and bf16
with its difference to PyTorch); parameters and FLOPs of
the refiner next to MMPose's MobileNetV2 and HRNet-W32 top-down models; and
the wall time of ``tools/test.py`` on MMPose's COCO test images with and
without refinement (runs alternated, medians compared).

    python -m benchmarks.benchmark_speed [--work-dir DIR] [--checkpoint REFINER.pth]
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

import mmport  # noqa: F401
from mmport.apis import load_refiner
from mmport.datasets import load_pose_results
from mmport.deployment import OpenVINORefiner, export_onnx

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
HAND_CFG = 'configs/port/port_panoptic-hand2d_keypoints-only.py'
BACKBONES = {
    'MobileNetV2 (hand, 256x256)': ('mmpose::hand_2d_keypoint/topdown_heatmap/onehand10k/'
                                    'td-hm_mobilenetv2_8xb64-210e_onehand10k-256x256.py',
                                    (256, 256)),
    'HRNet-W32 (COCO, 256x192)': ('mmpose::body_2d_keypoint/topdown_heatmap/coco/'
                                  'td-hm_hrnet-w32_8xb64-210e_coco-256x192.py', (256, 192)),
}
ONNX_CHUNK = 512
COCO_TEST = ['test_dataloader.dataset.data_root=tests/data/coco/',
             'test_dataloader.dataset.ann_file=test_coco.json',
             'test_dataloader.dataset.bbox_file=None', 'test_dataloader.dataset.data_prefix.img=',
             'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
             'test_evaluator.0.ann_file=tests/data/coco/test_coco.json']


class _NetworkOnly(torch.nn.Module):
    """The network with fixed mask/scores, for the FLOP counter."""

    def __init__(self, network, k):
        super().__init__()
        self.network = network
        self.register_buffer('mask', torch.zeros(1, k, dtype=torch.bool))
        self.register_buffer('scores', torch.ones(1, k))

    def forward(self, coords):
        return self.network(coords, self.mask, self.scores)


class _TensorMode(torch.nn.Module):
    """A top-down estimator's forward in tensor mode (backbone + head)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model(inputs, None, mode='tensor')


def throughput(fn, n_poses: int, min_seconds: float = 1.0, rounds: int = 5) -> float:
    """Poses per second of ``fn`` (which handles ``n_poses``): the median of
    ``rounds`` rounds of at least ``min_seconds`` each, after a warm-up
    round (a shared VM's speed varies by up to 2x within seconds)."""
    speeds = []
    for _ in range(rounds + 1):
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_seconds:
            fn()
            runs += 1
        speeds.append(runs * n_poses / (time.perf_counter() - start))
    return statistics.median(speeds[1:])


def real_inputs(batch: int):
    res = load_pose_results('data/panoptic/mobilenetv2_panoptic_256x256_test.pkl')
    idx = np.arange(batch) % len(res)
    return (res.keypoints[idx].astype(np.float32), res.keypoint_scores[idx].astype(np.float32),
            res.bboxes[idx].astype(np.float32))


def test_py_seconds(config, refiner_ckpt, refine: bool) -> float:
    cmd = [sys.executable, 'tools/test.py', config, '--work-dir',
           tempfile.mkdtemp(prefix='mmport_speed_'), '--cfg-options', *COCO_TEST,
           f'model.refiner_checkpoint={refiner_ckpt}', f'model.refine={refine}']
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description='PORT refiner speed benchmark')
    parser.add_argument('--work-dir', default='work_dirs/benchmark')
    parser.add_argument('--checkpoint', help='hand refiner checkpoint (default: the Panoptic '
                        'benchmark\'s fold-0 refiner; the speed does not depend on the '
                        'weights, the differences between runtimes do)')
    parser.add_argument('--batch', type=int, default=4096)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    init_default_scope('mmpose')
    torch.set_num_threads(os.cpu_count() or 1)
    checkpoint = args.checkpoint or osp.join(
        args.work_dir, 'panoptic', 'fold0',
        f'iter_{Config.fromfile(HAND_CFG).train_cfg.max_iters}.pth')
    if not osp.exists(checkpoint):
        raise SystemExit(f'{checkpoint} is missing: run python -m benchmarks.benchmark_panoptic '
                         'first (or pass --checkpoint)')
    refiner = load_refiner(checkpoint)
    k = refiner.num_keypoints
    out = {'threads': torch.get_num_threads(), 'batch': args.batch}

    # throughput on real MobileNetV2 predictions (batch 1: the first of them)
    kp, sc, bb = real_inputs(args.batch)
    kp_t, sc_t, bb_t = (torch.from_numpy(a) for a in (kp, sc, bb))
    for name, batch in (('b1', 1), ('batched', args.batch)):
        out[f'poses_per_s_{name}'] = throughput(
            lambda: refiner.refine(kp_t[:batch], sc_t[:batch], bb_t[:batch]), batch)
    import onnxruntime as ort
    onnx_file = export_onnx(refiner, osp.join(args.work_dir, 'port_hand21.onnx'))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(onnx_file, options, providers=['CPUExecutionProvider'])
    for name, batch in (('b1', 1), ('batched', args.batch)):
        # fed in chunks, like refine(): ONNX Runtime is faster on ~500 poses
        # at a time than on one batch of thousands
        chunks = [slice(i, min(i + ONNX_CHUNK, batch)) for i in range(0, batch, ONNX_CHUNK)]
        feeds = [dict(keypoints=kp[c], scores=sc[c], bboxes=bb[c]) for c in chunks]
        out[f'onnx_poses_per_s_{name}'] = throughput(
            lambda: [session.run(None, feed) for feed in feeds], batch)
    # the same file on OpenVINO, which skips hands with no doubtful joint
    # like refine() does; bf16 where the CPU has it (changes the output)
    expected, _ = refiner.refine(kp_t, sc_t, bb_t)
    for precision, prefix in (('f32', 'openvino'), ('bf16', 'openvino_bf16')):
        ov_refiner = OpenVINORefiner(onnx_file, precision=precision)
        refined, _ = ov_refiner.refine(kp, sc, bb)
        out[f'{prefix}_max_abs_diff_px'] = float(np.abs(refined - expected.numpy()).max())
        for name, batch in (('b1', 1), ('batched', args.batch)):
            out[f'{prefix}_poses_per_s_{name}'] = throughput(
                lambda: ov_refiner.refine(kp[:batch], sc[:batch], bb[:batch]), batch)

    # parameters and FLOPs next to top-down models
    out['params'] = sum(p.numel() for p in refiner.parameters())
    flops = get_model_complexity_info(_NetworkOnly(refiner.network, k),
                                      inputs=(torch.rand(1, k, 2),), show_table=False,
                                      show_arch=False)['flops']
    out['flops_per_pose'] = flops
    for name, (cfg_name, (h, w)) in BACKBONES.items():
        model_cfg = get_config(cfg_name).model
        model_cfg.backbone.init_cfg = None
        model = MODELS.build(model_cfg).eval()
        info = get_model_complexity_info(_TensorMode(model), inputs=(torch.rand(1, 3, h, w),),
                                         show_table=False, show_arch=False)
        out[f'params {name}'] = info['params']
        out[f'flops {name}'] = info['flops']
    mb = out['params MobileNetV2 (hand, 256x256)']
    out['params_ratio_mobilenetv2'] = out['params'] / mb
    out['params_ratio_hrnet_w32'] = out['params'] / out['params HRNet-W32 (COCO, 256x192)']
    out['flops_ratio_mobilenetv2'] = flops / out['flops MobileNetV2 (hand, 256x256)']

    # tools/test.py wall time on MMPose's COCO test images, refinement off / on
    coco_refiner = osp.join(args.work_dir, 'port_coco17_refiner.pth')
    if not osp.exists(coco_refiner):
        raise SystemExit(f'{coco_refiner} is missing: run python -m benchmarks.benchmark_coco '
                         'first')
    config = 'configs/port/port_td-hm_mobilenetv2_coco-256x192.py'
    off, on = [], []
    for _ in range(args.repeats):
        off.append(test_py_seconds(config, coco_refiner, False))
        on.append(test_py_seconds(config, coco_refiner, True))
    out['test_py_seconds_off'] = statistics.median(off)
    out['test_py_seconds_on'] = statistics.median(on)
    out['test_time_ratio'] = out['test_py_seconds_on'] / out['test_py_seconds_off']

    with open(osp.join(args.work_dir, 'speed.json'), 'w') as f:
        json.dump(out, f, indent=2)
    print(f'refiner: {out["params"]:,} parameters, {flops / 1e6:.2f} MFLOPs per pose')
    print(f'  PyTorch: {out["poses_per_s_b1"]:,.0f} poses/s at batch 1, '
          f'{out["poses_per_s_batched"]:,.0f} poses/s at batch {args.batch}')
    print(f'  ONNX Runtime: {out["onnx_poses_per_s_b1"]:,.0f} poses/s at batch 1, '
          f'{out["onnx_poses_per_s_batched"]:,.0f} poses/s at batch {args.batch}')
    for prefix, name in (('openvino', 'OpenVINO f32'), ('openvino_bf16', 'OpenVINO bf16')):
        print(f'  {name}: {out[f"{prefix}_poses_per_s_b1"]:,.0f} poses/s at batch 1, '
              f'{out[f"{prefix}_poses_per_s_batched"]:,.0f} poses/s at batch {args.batch}; '
              f'max difference to PyTorch {out[f"{prefix}_max_abs_diff_px"]:.2g} px')
    for name in BACKBONES:
        print(f'{name}: {out[f"params {name}"]:,} parameters, '
              f'{out[f"flops {name}"] / 1e9:.2f} GFLOPs')
    print(f'refiner / MobileNetV2 parameters: {100 * out["params_ratio_mobilenetv2"]:.2f}%, '
          f'/ HRNet-W32: {100 * out["params_ratio_hrnet_w32"]:.2f}%; FLOPs / MobileNetV2: '
          f'{100 * out["flops_ratio_mobilenetv2"]:.3f}%')
    print(f'tools/test.py on 4 COCO images (12 instances): {out["test_py_seconds_off"]:.2f} s '
          f'without, {out["test_py_seconds_on"]:.2f} s with refinement: ratio '
          f'{out["test_time_ratio"]:.3f} (median of {args.repeats})')
    print(f'wrote {osp.join(args.work_dir, "speed.json")}')


if __name__ == '__main__':
    main()
