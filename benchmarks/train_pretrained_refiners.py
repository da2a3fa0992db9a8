"""Train the pretrained starting points of ``tools/fit_refiner.py``.

Masked joint modeling on ground-truth poses that no benchmark scores, with
PoseFix-style synthetic errors (``synthesize_errors``) as the corrupted
inputs, in :func:`mmport.fitting.fit_training.fit_refiner_weights`:

* ``checkpoints/port_mpii16_pretrained.pth``: MPII-16, score-free, on the
  14,649 MPII training persons (data/mpii, ``train_*``; none of the
  validation images the MPII benchmarks score), framed as MPII's protocol
  frames a person (a square of side ``scale * 200`` about its joints);
* ``checkpoints/port_lsp14_pretrained.pth``: LSP-14, score-free, on the same
  MPII training persons in LSP's joint order (LSP's neck = MPII's upper
  neck; no LSP test person);
* ``checkpoints/port_hand21_pretrained.pth``: 21-joint hands, reading
  confidences, on the 3,956 COCO-WholeBody validation hands
  (data/hands_coco_wholebody; not a Panoptic hand), framed by a square of
  1.25 times the longer side of the hand box.

The COCO-17 starting point is the shipped body refiner
(``benchmarks.train_shipped_refiners``: COCO train2017 persons).
Each file's rule moves nothing: a rule is fitted per detector.

    python -m benchmarks.train_pretrained_refiners [--only mpii16|lsp14|hand21]
"""
import argparse
import os.path as osp
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

import mmport  # noqa: F401  (registers mmport's modules)
from mmport.datasets.transforms.error_synthesis import SynthesizePoseErrors, synthesize_errors
from mmport.fitting.fit_training import FitSettings, FramedPersons, fit_refiner_weights
from mmport.models.refinement_rule import RefinementRule
from mmport.models.refiner_loading import save_refiner
from mmport.utils import load_json

from .benchmark_mpii import protocol_like_boxes

MPII_NPZ = 'data/mpii/mpii_val_preds.npz'
HANDS = 'data/hands_coco_wholebody/coco_hand_val_v1.0.json.gz'
# MPII's joints in LSP's order (LSP's neck: MPII's upper neck)
MPII_TO_LSP = [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 8, 9]
SETTINGS = FitSettings(iters=4000, batch_size=128, lr=1e-3, warmup=200, real=0.6,
                       transplant=0.2, erase_ratio=(0.0, 0.3), seed=0)
SYNTHETIC_COPIES = 2


def network(use_scores: bool, embed_dim: int, num_heads: int) -> dict:
    return dict(type='PoseRelationTransformer', embed_dim=embed_dim, depth=4,
                num_heads=num_heads, mlp_ratio=2.0, proj_hops=1, use_scores=use_scores,
                mask_mode='hint', predict_errors=True)


def refiner_cfg(metainfo: dict, use_scores: bool, embed_dim: int = 32, num_heads: int = 1):
    return dict(type='PORTRefiner', metainfo=metainfo, quality_kind='keypoint_similarity',
                network=network(use_scores, embed_dim, num_heads),
                train_cfg=dict(visible_loss_weight=0.1, loss_type='euclidean'),
                test_cfg=dict(rule=RefinementRule.keep_input().to_config()))


def framed_with_synthetic_errors(gt: np.ndarray, labelled: np.ndarray, boxes: np.ndarray,
                                 refiner, seed: int) -> FramedPersons:
    """Persons (N, K, 2) pixels in their frames (N, 4), each repeated
    ``SYNTHETIC_COPIES`` times with PoseFix-style errors as its prediction."""
    rng = np.random.default_rng(seed)
    sigmas = np.asarray(refiner.metainfo['sigmas'])
    flip = refiner.flip_indices
    probs = SynthesizePoseErrors()._prob_table(gt.shape[1])
    side = (boxes[:, 2:] - boxes[:, :2]).max(1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    # the OKS area of a person: its labelled joints' extent
    lo = np.where(labelled[..., None], gt, np.inf).min(1)
    hi = np.where(labelled[..., None], gt, -np.inf).max(1)
    area = np.prod(np.clip(hi - lo, 1, None), 1)
    preds, scores = [], []
    for _ in range(SYNTHETIC_COPIES):
        pred = np.empty_like(gt)
        sc = np.empty(gt.shape[:2])
        for i in range(len(gt)):
            pred[i], sc[i], _ = synthesize_errors(gt[i], labelled[i], area[i], sigmas, flip,
                                                  probs, rng)
            hidden = ~labelled[i]
            pred[i, hidden] = centre[i] + rng.uniform(-0.4, 0.4, (hidden.sum(), 2)) * side[i]
            sc[i, hidden] = rng.uniform(0.0, 0.3, hidden.sum())
        preds.append(pred)
        scores.append(sc)

    def frame(p):
        return ((p - centre[:, None]) / side[:, None, None]).astype(np.float32)
    reps = SYNTHETIC_COPIES
    return FramedPersons(np.tile(frame(gt), (reps, 1, 1)), np.tile(labelled, (reps, 1)),
                         np.concatenate([frame(p) for p in preds]),
                         np.concatenate(scores).astype(np.float32))


def mpii_training_persons(order=None):
    d = np.load(MPII_NPZ)
    gt, labelled = d['train_gt'].astype(np.float64), d['train_labelled'].astype(bool)
    lo = np.where(labelled[..., None], gt, np.inf).min(1)
    hi = np.where(labelled[..., None], gt, -np.inf).max(1)
    boxes = protocol_like_boxes(np.concatenate([lo, hi], 1), d['train_scale'])
    keep = labelled.sum(1) >= 4
    if order is not None:
        gt, labelled = gt[:, order], labelled[:, order]
    return gt[keep], labelled[keep], boxes[keep]


def hand_persons():
    data = load_json(HANDS)
    kpts = np.array([a['keypoints'] for a in data['annotations']], np.float64).reshape(-1, 21, 3)
    box = np.array([a['bbox'] for a in data['annotations']], np.float64)
    labelled = kpts[..., 2] > 0
    centre = box[:, :2] + box[:, 2:] / 2
    half = 0.625 * box[:, 2:].max(1, keepdims=True)
    boxes = np.concatenate([centre - half, centre + half], 1)
    # hands of a few pixels carry mostly rounding noise
    keep = (labelled.sum(1) >= 6) & (box[:, 2:].max(1) >= 12)
    return kpts[keep, :, :2], labelled[keep], boxes[keep]


SKELETONS = {
    'mpii16': dict(metainfo=dict(from_file='configs/_base_/datasets/mpii.py'),
                   use_scores=False, embed_dim=32, num_heads=1,
                   persons=lambda: mpii_training_persons(),
                   data='MPII training persons (data/mpii train_*; no validation '
                        'image) with synthetic PoseFix errors'),
    'lsp14': dict(metainfo=None, use_scores=False, embed_dim=32, num_heads=1,
                  persons=lambda: mpii_training_persons(MPII_TO_LSP),
                  data='MPII training persons in LSP joint order (data/mpii train_*; '
                       'no LSP person) with synthetic PoseFix errors'),
    'hand21': dict(metainfo=dict(from_file='configs/_base_/datasets/coco_wholebody_hand.py'),
                   use_scores=True, embed_dim=32, num_heads=1, persons=hand_persons,
                   data='COCO-WholeBody validation hands (data/hands_coco_wholebody; no '
                        'Panoptic hand) with synthetic PoseFix errors'),
}


def train(name: str, out_dir: str) -> str:
    init_default_scope('mmpose')
    spec = SKELETONS[name]
    metainfo = spec['metainfo'] or Config.fromfile(
        'configs/_base_/datasets/lsp.py').dataset_info.to_dict()
    cfg = refiner_cfg(metainfo, spec['use_scores'], spec['embed_dim'], spec['num_heads'])
    torch.manual_seed(SETTINGS.seed)
    refiner = MODELS.build(cfg)
    gt, labelled, boxes = spec['persons']()
    persons = framed_with_synthetic_errors(gt, labelled, boxes, refiner, SETTINGS.seed)
    torch.set_num_threads(1)
    start = time.time()
    fit_refiner_weights(refiner, persons, SETTINGS)
    path = osp.join(out_dir, f'port_{name}_pretrained.pth')
    save_refiner(refiner, cfg, path,
                 trained_by=f'python -m benchmarks.train_pretrained_refiners --only {name}',
                 training_data=f'{len(gt)} poses: ' + spec['data'])
    print(f'{name}: {len(gt)} poses, {SETTINGS.iters} steps in {time.time() - start:.0f} s '
          f'-> {path}', flush=True)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', choices=tuple(SKELETONS))
    parser.add_argument('--out-dir', default='checkpoints')
    args = parser.parse_args()
    for name in SKELETONS:
        if args.only in (None, name):
            train(name, args.out_dir)


if __name__ == '__main__':
    main()
