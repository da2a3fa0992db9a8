"""Pack what the MPII benchmark uses from ``../shared/data/mpii_val`` into one
lean, compressed ``data/mpii/mpii_val_preds.npz`` (numpy arrays only, no
pickles: load with ``np.load``).

    python tools/dataset_converters/mpii_to_npz.py [--src DIR] [--out FILE]

Arrays (MPII's 16 joints in MMPose's order; pixels of the original images;
float32, i.e. the sources' float32 predictions unchanged and the integer /
4-decimal ground truth rounded by less than 1e-4 px):

* ``val_gt`` (2958, 16, 2), ``val_visibility`` (2958, 16) uint8 (2 visible,
  1 labelled but occluded, 0 not labelled), ``val_head_size`` (2958,),
  ``val_bbox`` (2958, 4) xyxy (MPII's protocol box, the box each method ran
  on: MMPose's MpiiDataset box from the protocol's ``center`` and ``scale``,
  a square of side ``scale`` * 200; the results files' ``bbox``, the same as
  the annotations'), ``val_image_id``, ``val_ann_id`` (2958,) int32;
* ``pred_<model>`` (2958, 16, 2) and ``predicted_<model>`` (2958, 16) uint8
  (1 where the method predicted the joint; NOT a confidence) for
  ``tompson``, ``hg_s1``, ``hg_s8``, rows in the order of ``val_ann_id``;
* ``train_gt`` (14649, 16, 2), ``train_labelled`` (14649, 16) bool,
  ``train_bbox`` (14649, 4) xyxy (the joints' extent enlarged 15% per side),
  ``train_scale`` (14649,) (MPII's person ``scale``: a protocol box has side
  ``scale`` * 200), ``train_image_id`` (14649,) int32.
"""
import argparse
import json
import os
import os.path as osp

import numpy as np

MODELS = {'tompson': 'tompson_preds.json', 'hg_s1': 'bearpaw_hg_s1_preds.json',
          'hg_s8': 'bearpaw_hg_s8_preds.json'}


def xyxy(bbox) -> np.ndarray:
    b = np.asarray(bbox, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)


def convert(src: str) -> dict:
    with open(osp.join(src, 'mpii_val_gt.json')) as f:
        val = json.load(f)['annotations']
    kpts = np.array([a['keypoints'] for a in val], np.float64).reshape(len(val), 16, 3)
    out = dict(
        val_gt=kpts[..., :2].astype(np.float32),
        val_visibility=kpts[..., 2].astype(np.uint8),
        val_head_size=np.array([a['head_size'] for a in val], np.float32),
        val_bbox=xyxy([a['bbox'] for a in val]).astype(np.float32),
        val_image_id=np.array([a['image_id'] for a in val], np.int32),
        val_ann_id=np.array([a['id'] for a in val], np.int32))
    row = {a: i for i, a in enumerate(out['val_ann_id'])}
    for name, fname in MODELS.items():
        with open(osp.join(src, fname)) as f:
            records = json.load(f)
        pred = np.full((len(val), 16, 3), np.nan)
        for r in records:
            pred[row[r['annotation_id']]] = np.reshape(r['keypoints'], (16, 3))
            # the box the method ran on is the protocol box, the one val_bbox holds
            if not np.allclose(xyxy(r['bbox'])[0], out['val_bbox'][row[r['annotation_id']]],
                               atol=0.01):
                raise ValueError(f'{fname}: the box of annotation {r["annotation_id"]} is not '
                                 'its protocol box')
        if np.isnan(pred).any():
            raise ValueError(f'{fname} does not cover every validation person')
        out[f'pred_{name}'] = pred[..., :2].astype(np.float32)
        out[f'predicted_{name}'] = (pred[..., 2] > 0).astype(np.uint8)
    with open(osp.join(src, 'mpii_trainval_csv_gt_excluding_val_images.json')) as f:
        train = json.load(f)['annotations']
    tk = np.array([a['keypoints'] for a in train], np.float64).reshape(len(train), 16, 3)
    out.update(
        train_gt=tk[..., :2].astype(np.float32),
        train_labelled=tk[..., 2] > 0,
        train_bbox=xyxy([a['bbox'] for a in train]).astype(np.float32),
        train_scale=np.array([a['scale'] for a in train], np.float32),
        train_image_id=np.array([a['image_id'] for a in train], np.int32))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--src', default='../shared/data/mpii_val')
    parser.add_argument('--out', default='data/mpii/mpii_val_preds.npz')
    args = parser.parse_args()
    arrays = convert(args.src)
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f'wrote {args.out} ({osp.getsize(args.out) / 1e6:.2f} MB): '
          + ', '.join(f'{k} {v.shape}' for k, v in arrays.items()))


if __name__ == '__main__':
    main()
