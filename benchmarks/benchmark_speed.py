"""Speed of the shipped PORT refiners on this machine (a script, not a test).

Times each refiner of ``checkpoints/`` (the COCO-17 body refiner, the
Panoptic hand refiner, the score-free MPII refiner) on real predictions
from ``data/`` and needs nothing that another benchmark writes, so it runs
on a fresh clone. Prints and writes ``<work-dir>/speed.json``: per refiner
(``checkpoints`` entry, keyed by the checkpoint's path) the throughput
(poses/s) of ``refine()`` at batch 1 and batched, in PyTorch, ONNX Runtime
and OpenVINO (f32, and bf16 with its difference to PyTorch), and its
parameters and FLOPs next to MMPose's MobileNetV2 and HRNet-W32 top-down
models; the top-level keys repeat the hand refiner's entries (the refiner
this benchmark timed before). Also the wall time of ``tools/test.py`` on
MMPose's COCO test images with and without the shipped body refiner (runs
alternated, medians compared).

    python -m benchmarks.benchmark_speed [--work-dir DIR] [--rounds N] [--min-seconds S]
        [--repeats N]

``--rounds 1 --min-seconds 0.2 --repeats 1`` is a quick check that it runs.
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
from mmengine.hub import get_config
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

import mmport  # noqa: F401
from mmport.apis import load_refiner
from mmport.datasets import load_pose_results
from mmport.deployment import OpenVINORefiner, export_onnx
from mmport.utils import positive_int

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
BODY_CKPT = 'checkpoints/port_coco17_refiner.pth'
HAND_CKPT = 'checkpoints/port_panoptic_hand21.pth'
MPII_CKPT = 'checkpoints/port_mpii16_scorefree.pth'
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


def positive_float(text: str) -> float:
    """argparse type of a duration that must be above 0 (``--min-seconds``)."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f'must be above 0, got {value}')
    return value


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
    round (a shared VM's speed varies within seconds)."""
    speeds = []
    for _ in range(rounds + 1):
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_seconds:
            fn()
            runs += 1
        speeds.append(runs * n_poses / (time.perf_counter() - start))
    return statistics.median(speeds[1:])


def hand_inputs():
    """MMPose MobileNetV2's 846 Panoptic test hands, with their scores."""
    res = load_pose_results(osp.join(REPO, 'data/panoptic/mobilenetv2_panoptic_256x256_test.pkl'))
    return res.keypoints, res.keypoint_scores, res.bboxes


def body_inputs():
    """BlazePose's COCO persons (data/body_real), with their scores, framed by
    the boxes BlazePose ran on."""
    res = load_pose_results(osp.join(REPO, 'data/body_real/coco_blazepose.json.gz'))
    return res.keypoints, res.keypoint_scores, res.bboxes


def mpii_inputs():
    """The three MPII models' validation predictions in MPII's protocol
    boxes; these methods give no confidence, so the scores are zeros: every
    joint is a candidate, as with ``tools/refine_results.py --scores none``."""
    data = np.load(osp.join(REPO, 'data/mpii/mpii_val_preds.npz'))
    # person by person, the three models in turn: any first poses mix them
    kp = np.stack([data[f'pred_{m}'] for m in ('tompson', 'hg_s1', 'hg_s8')], 1)
    kp = kp.reshape(-1, *kp.shape[2:])
    bb = np.repeat(data['val_bbox'], 3, axis=0)
    return kp, np.zeros(kp.shape[:2]), bb


# the shipped refiners and the real predictions each is timed on
CHECKPOINTS = {BODY_CKPT: body_inputs, HAND_CKPT: hand_inputs, MPII_CKPT: mpii_inputs}


def real_inputs(load, batch: int):
    """``batch`` instances from ``load()``, repeated as needed, as float32."""
    kp, sc, bb = load()
    idx = np.arange(batch) % len(kp)
    return (kp[idx].astype(np.float32), sc[idx].astype(np.float32),
            bb[idx].astype(np.float32))


def time_refiner(checkpoint: str, load, args, backbones: dict) -> dict:
    """Throughput of one refiner in PyTorch, ONNX Runtime and OpenVINO on
    ``args.batch`` real poses, its parameters and FLOPs, and their ratios
    to the top-down models' ``backbones`` (params / flops per name)."""
    refiner = load_refiner(osp.join(REPO, checkpoint))
    k = refiner.num_keypoints
    timing = dict(min_seconds=args.min_seconds, rounds=args.rounds)
    kp, sc, bb = real_inputs(load, args.batch)
    kp_t, sc_t, bb_t = (torch.from_numpy(a) for a in (kp, sc, bb))
    out = {'num_keypoints': k, 'score_thr': refiner.rule.score_thr,
           'rule': refiner.rule.to_config(),
           # the instances refine() sends through the network; the others skip it
           'share_with_doubtful_joint': float(
               refiner.rule.candidate_mask(torch.from_numpy(sc)).any(1).float().mean())}

    # the rule as a user runs it: where it rescores, with instance scores
    # (every instance is then judged, also one without a candidate joint)
    rescores = refiner.rule.rescore is not None
    inst = np.ones(len(kp), np.float32)
    inst_t = torch.from_numpy(inst) if rescores else None
    out['rescores'] = rescores
    # batch 1: the first of the poses
    for name, batch in (('b1', 1), ('batched', args.batch)):
        out[f'poses_per_s_{name}'] = throughput(
            lambda: refiner.refine_and_rescore(kp_t[:batch], sc_t[:batch], bb_t[:batch],
                                               None if inst_t is None else inst_t[:batch]),
            batch, **timing)
    import onnxruntime as ort
    onnx_file = export_onnx(refiner, osp.join(
        args.work_dir, osp.splitext(osp.basename(checkpoint))[0] + '.onnx'))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(onnx_file, options, providers=['CPUExecutionProvider'])
    for name, batch in (('b1', 1), ('batched', args.batch)):
        # fed in chunks, like refine(): ONNX Runtime is faster on ~500 poses
        # at a time than on one batch of thousands
        chunks = [slice(i, min(i + ONNX_CHUNK, batch)) for i in range(0, batch, ONNX_CHUNK)]
        feeds = [dict(keypoints=kp[c], scores=sc[c], bboxes=bb[c],
                      **(dict(instance_scores=inst[c]) if rescores else {})) for c in chunks]
        out[f'onnx_poses_per_s_{name}'] = throughput(
            lambda: [session.run(None, feed) for feed in feeds], batch, **timing)
    # the same file on OpenVINO, which skips instances with no doubtful joint
    # like refine() does; bf16 where the CPU has it (changes the output)
    expected, replaced = refiner.refine(kp_t, sc_t, bb_t)
    out['share_joints_replaced'] = float(replaced.float().mean())
    for precision, prefix in (('f32', 'openvino'), ('bf16', 'openvino_bf16')):
        ov_refiner = OpenVINORefiner(onnx_file, precision=precision)
        refined, _ = ov_refiner.refine(kp, sc, bb)
        out[f'{prefix}_max_abs_diff_px'] = float(np.abs(refined - expected.numpy()).max())
        for name, batch in (('b1', 1), ('batched', args.batch)):
            out[f'{prefix}_poses_per_s_{name}'] = throughput(
                lambda: ov_refiner.refine_and_rescore(
                    kp[:batch], sc[:batch], bb[:batch], inst[:batch] if rescores else None),
                batch, **timing)

    # parameters and FLOPs next to top-down models
    out['params'] = sum(p.numel() for p in refiner.parameters())
    flops = get_model_complexity_info(_NetworkOnly(refiner.network, k),
                                      inputs=(torch.rand(1, k, 2),), show_table=False,
                                      show_arch=False)['flops']
    out['flops_per_pose'] = flops
    mb, hr = 'MobileNetV2 (hand, 256x256)', 'HRNet-W32 (COCO, 256x192)'
    out['params_ratio_mobilenetv2'] = out['params'] / backbones[f'params {mb}']
    out['params_ratio_hrnet_w32'] = out['params'] / backbones[f'params {hr}']
    out['flops_ratio_mobilenetv2'] = flops / backbones[f'flops {mb}']
    return out


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
    parser.add_argument('--batch', type=positive_int, default=4096)
    parser.add_argument('--rounds', type=positive_int, default=5,
                        help='timed rounds per throughput (their median; after a warm-up round)')
    parser.add_argument('--min-seconds', type=positive_float, default=1.0,
                        help='least duration of a throughput round')
    parser.add_argument('--repeats', type=positive_int, default=3,
                        help='tools/test.py runs with and without refinement (their medians)')
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    init_default_scope('mmpose')
    torch.set_num_threads(os.cpu_count() or 1)
    out = {'threads': torch.get_num_threads(), 'batch': args.batch, 'rounds': args.rounds,
           'min_seconds': args.min_seconds}

    # the top-down models the refiners' sizes are compared with
    backbones = {}
    for name, (cfg_name, (h, w)) in BACKBONES.items():
        model_cfg = get_config(cfg_name).model
        model_cfg.backbone.init_cfg = None
        model = MODELS.build(model_cfg).eval()
        info = get_model_complexity_info(_TensorMode(model), inputs=(torch.rand(1, 3, h, w),),
                                         show_table=False, show_arch=False)
        backbones[f'params {name}'] = info['params']
        backbones[f'flops {name}'] = info['flops']
    out.update(backbones)
    out['checkpoints'] = {ckpt: time_refiner(ckpt, load, args, backbones)
                          for ckpt, load in CHECKPOINTS.items()}
    # the hand refiner's entries at the top level too, under their former keys
    out['checkpoint'] = HAND_CKPT
    out.update(out['checkpoints'][HAND_CKPT])

    # tools/test.py wall time on MMPose's COCO test images, refinement off /
    # on with the shipped body refiner
    coco_refiner = BODY_CKPT
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
    for ckpt, res in out['checkpoints'].items():
        print(f'{ckpt}: {res["params"]:,} parameters, {res["flops_per_pose"] / 1e6:.2f} MFLOPs '
              f'per pose ({100 * res["params_ratio_mobilenetv2"]:.2f}% of MobileNetV2\'s '
              f'parameters, {100 * res["params_ratio_hrnet_w32"]:.2f}% of HRNet-W32\'s; '
              f'{100 * res["flops_ratio_mobilenetv2"]:.3f}% of MobileNetV2\'s FLOPs); '
              f'{100 * res["share_with_doubtful_joint"]:.0f}% of the poses have a candidate '
              'joint (' + ('every joint is one' if res['score_thr'] is None else
                           f'below {res["score_thr"]:g}') + '), '
              f'{100 * res["share_joints_replaced"]:.2f}% of the joints are replaced'
              + ('; instances rescored' if res['rescores'] else ''))
        print(f'  PyTorch: {res["poses_per_s_b1"]:,.0f} poses/s at batch 1, '
              f'{res["poses_per_s_batched"]:,.0f} poses/s at batch {args.batch}')
        print(f'  ONNX Runtime: {res["onnx_poses_per_s_b1"]:,.0f} poses/s at batch 1, '
              f'{res["onnx_poses_per_s_batched"]:,.0f} poses/s at batch {args.batch}')
        for prefix, name in (('openvino', 'OpenVINO f32'), ('openvino_bf16', 'OpenVINO bf16')):
            print(f'  {name}: {res[f"{prefix}_poses_per_s_b1"]:,.0f} poses/s at batch 1, '
                  f'{res[f"{prefix}_poses_per_s_batched"]:,.0f} poses/s at batch '
                  f'{args.batch}; max difference to PyTorch '
                  f'{res[f"{prefix}_max_abs_diff_px"]:.2g} px')
    for name in BACKBONES:
        print(f'{name}: {out[f"params {name}"]:,} parameters, '
              f'{out[f"flops {name}"] / 1e9:.2f} GFLOPs')
    print(f'tools/test.py on 4 COCO images (12 instances): {out["test_py_seconds_off"]:.2f} s '
          f'without, {out["test_py_seconds_on"]:.2f} s with {BODY_CKPT}: ratio '
          f'{out["test_time_ratio"]:.3f} (median of {args.repeats})')
    print(f'wrote {osp.join(args.work_dir, "speed.json")}')


if __name__ == '__main__':
    main()
