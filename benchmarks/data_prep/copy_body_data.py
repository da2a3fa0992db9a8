"""Copy the real body data the benchmarks use from ../shared/data into data/.

Keeps only the fields mmport reads, rounded to 0.01 px / 0.001 score, gzipped:

* ``data/body_real/<set>_gt.json.gz``: COCO annotations (images: id, file_name,
  width, height; annotations: id, image_id, category_id, keypoints,
  num_keypoints, bbox, area, iscrowd) of LSP, LSPET and the COCO photos;
* ``data/body_real/<set>_blazepose.json.gz``: the real BlazePose COCO results
  (image_id, category_id, keypoints, score, bbox = the box BlazePose ran on,
  gt_ann_id; not the raw ``mp33`` landmarks);
* ``data/coco_val2017/person_keypoints_val2017_all.json.gz``: all COCO val2017
  persons with keypoints (ground truth only);
* ``data/coco_train2017/coco_train2017_persons.npz``: every COCO train2017
  person with at least 5 labelled joints (ground truth only): ``keypoints``
  (N, 17, 3) int16 (x, y whole pixels, v), ``bbox_xywh`` (N, 4) float32,
  ``image_id`` (N,) int32.

    python benchmarks/data_prep/copy_body_data.py [--shared ../shared/data]
"""
import argparse
import gzip
import json
import os
import os.path as osp

import numpy as np

SETS = ('lsp', 'lspet', 'coco')
IMAGE_KEYS = ('id', 'file_name', 'width', 'height')
ANN_KEYS = ('id', 'image_id', 'category_id', 'keypoints', 'num_keypoints', 'bbox', 'area',
            'iscrowd')
RESULT_KEYS = ('image_id', 'category_id', 'keypoints', 'score', 'bbox', 'gt_ann_id')


def rounded(values, digits):
    return [round(float(v), digits) if isinstance(v, float) else v for v in values]


def slim_annotations(data: dict) -> dict:
    images = [{k: im[k] for k in IMAGE_KEYS if k in im} for im in data['images']]
    anns = []
    for ann in data['annotations']:
        ann = {k: ann[k] for k in ANN_KEYS if k in ann}
        ann['keypoints'] = rounded(ann['keypoints'], 2)
        ann['bbox'] = rounded(ann['bbox'], 2)
        ann['area'] = round(float(ann['area']), 2)
        anns.append(ann)
    out = dict(images=images, annotations=anns, categories=data['categories'])
    if 'info' in data:
        out['info'] = data['info']
    return out


def slim_results(records: list) -> list:
    out = []
    for r in records:
        r = {k: r[k] for k in RESULT_KEYS if k in r}
        kp = r['keypoints']
        r['keypoints'] = [round(float(v), 2 if i % 3 < 2 else 3) for i, v in enumerate(kp)]
        r['bbox'] = rounded(r['bbox'], 2)
        r['score'] = round(float(r['score']), 4)
        out.append(r)
    return out


def write_gz(obj, path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    # mtime 0: a rerun on unchanged sources writes the same bytes
    with open(path, 'wb') as raw, gzip.GzipFile(fileobj=raw, mode='wb', compresslevel=9,
                                                 mtime=0) as f:
        f.write(json.dumps(obj, separators=(',', ':')).encode())
    print(f'{path}: {osp.getsize(path) / 1e6:.2f} MB')


def slim_coco_train2017(src: str, out: str, min_joints: int = 5) -> None:
    """The COCO train2017 persons with at least ``min_joints`` labelled
    joints; COCO's keypoints are whole pixels, so int16 keeps them exactly."""
    d = np.load(src)
    keep = d['num_labelled'] >= min_joints
    kpts = d['keypoints'][keep]
    if not np.array_equal(kpts, np.round(kpts)):
        raise ValueError(f'{src}: keypoints are not whole pixels')
    os.makedirs(osp.dirname(out), exist_ok=True)
    np.savez_compressed(out, keypoints=kpts.astype(np.int16),
                        bbox_xywh=d['bbox_xywh'][keep].astype(np.float32),
                        image_id=d['image_id'][keep].astype(np.int32))
    print(f'{out}: {int(keep.sum())} persons, {osp.getsize(out) / 1e6:.2f} MB')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--shared', default=osp.join('..', 'shared', 'data'))
    parser.add_argument('--out', default='data')
    args = parser.parse_args()
    for name in SETS:
        with open(osp.join(args.shared, 'body_real', f'{name}_gt.json')) as f:
            write_gz(slim_annotations(json.load(f)),
                     osp.join(args.out, 'body_real', f'{name}_gt.json.gz'))
        with open(osp.join(args.shared, 'body_real', f'{name}_blazepose.json')) as f:
            write_gz(slim_results(json.load(f)),
                     osp.join(args.out, 'body_real', f'{name}_blazepose.json.gz'))
    with open(osp.join(args.shared, 'coco_val2017', 'person_keypoints_val2017_all.json')) as f:
        write_gz(slim_annotations(json.load(f)),
                 osp.join(args.out, 'coco_val2017', 'person_keypoints_val2017_all.json.gz'))
    slim_coco_train2017(osp.join(args.shared, 'coco_train2017', 'coco_train2017_person_kpts.npz'),
                        osp.join(args.out, 'coco_train2017', 'coco_train2017_persons.npz'))


if __name__ == '__main__':
    main()
