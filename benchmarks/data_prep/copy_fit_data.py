"""Copy the real LSP methods' and COCO-WholeBody hands' data from ../shared/data into data/.

Keeps only the fields mmport reads, gzipped:

* ``data/lsp_methods/lsp_test_gt{,_oc}.json.gz``: the LSP test set's 1000
  persons, person- and observer-centric labels (images: id, file_name, width,
  height; annotations: id, image_id, category_id, keypoints, num_keypoints,
  torso_size, iscrowd, and bbox / area if present), values unchanged (4
  decimals);
* ``data/lsp_methods/preds/<Method>_<pc|oc>.json.gz``: ten published methods'
  predictions (image_id, category_id, keypoints, score, bbox), values
  unchanged;
* ``data/lsp_methods/index.json``: per-file method, paper and PCK@0.2, copied
  byte for byte (its ``pred_file`` / ``score_against`` name the ``.json``
  sources; here they end in ``.json.gz``);
* ``data/hands_coco_wholebody/coco_hand_val_v1.0.json.gz``: 3956
  COCO-WholeBody validation hands (images: id, file_name, width, height;
  annotations: id, image_id, category_id, iscrowd, bbox and area rounded to
  0.01, num_keypoints, keypoints with x, y as given and the third value
  rounded to 0.001);
* each folder's ``SOURCE.md``, with an "In this repository" section appended.

    python benchmarks/data_prep/copy_fit_data.py [--shared ../shared/data]
"""
import argparse
import glob
import json
import os
import os.path as osp
import shutil

# run as a script: its folder is on sys.path
from copy_body_data import rounded, write_gz  # noqa: E402

LSP_GT = ('lsp_test_gt', 'lsp_test_gt_oc')
HANDS = 'coco_hand_val_v1.0'
IMAGE_KEYS = ('id', 'file_name', 'width', 'height')
LSP_ANN_KEYS = ('id', 'image_id', 'category_id', 'keypoints', 'num_keypoints', 'torso_size',
                'iscrowd', 'bbox', 'area')
HAND_ANN_KEYS = ('id', 'image_id', 'category_id', 'iscrowd', 'bbox', 'area', 'num_keypoints',
                 'keypoints')
RESULT_KEYS = ('image_id', 'category_id', 'keypoints', 'score', 'bbox')
COMMAND = 'python benchmarks/data_prep/copy_fit_data.py'

LSP_NOTE = f"""
## In this repository

Made from `../shared/data/lsp_methods` by

    {COMMAND}

as gzipped JSON with only the fields mmport reads; every kept value is
unchanged (4 decimals):

- `lsp_test_gt.json.gz`, `lsp_test_gt_oc.json.gz`: `images` (id, file_name,
  width, height; `lsp_index` dropped: it is 1000 + id), `annotations` (id,
  image_id, category_id, keypoints, num_keypoints, torso_size, iscrowd),
  `categories` and `info` as given.
- `preds/<Method>_<pc|oc>.json.gz`: image_id, category_id, keypoints, score,
  bbox.
- `index.json`: copied byte for byte; its `pred_file` and `score_against`
  name the `.json` sources, which here end in `.json.gz`.
"""

HANDS_NOTE = f"""
## In this repository

Made from `../shared/data/hands_coco_wholebody` by

    {COMMAND}

not byte for byte but as a gzipped `coco_hand_val_v1.0.json.gz` with only
the fields mmport reads: `images` (id, file_name, width, height; the COCO
image licence ids and URLs dropped), `annotations` (id, image_id,
category_id, iscrowd, `bbox` and `area` rounded to 0.01, num_keypoints,
`keypoints` with x, y as given and the third value rounded to 0.001),
`categories` and `info` as given. `num_keypoints` is kept as given: 53 hands
say 21 but have some joints at 0 (3,903 hands have all 21 joints labelled).
"""


def slim_coco(data: dict, ann_keys: tuple) -> dict:
    images = [{k: im[k] for k in IMAGE_KEYS if k in im} for im in data['images']]
    anns = [{k: ann[k] for k in ann_keys if k in ann} for ann in data['annotations']]
    out = dict(images=images, annotations=anns, categories=data['categories'])
    if 'info' in data:
        out['info'] = data['info']
    return out


def slim_hands(data: dict) -> dict:
    out = slim_coco(data, HAND_ANN_KEYS)
    for ann in out['annotations']:
        ann['bbox'] = rounded(ann['bbox'], 2)
        ann['area'] = round(float(ann['area']), 2)
        ann['keypoints'] = [
            round(float(v), 3) if i % 3 == 2 and isinstance(v, float) else v
            for i, v in enumerate(ann['keypoints'])
        ]
    return out


def slim_results(records: list) -> list:
    return [{k: r[k] for k in RESULT_KEYS if k in r} for r in records]


def copy_source(src_dir: str, out_dir: str, note: str) -> None:
    """The folder's SOURCE.md with ``note`` appended."""
    with open(osp.join(src_dir, 'SOURCE.md')) as f:
        text = f.read()
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'SOURCE.md'), 'w') as f:
        f.write(text.rstrip('\n') + '\n' + note)


def load(path: str):
    with open(path) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--shared', default=osp.join('..', 'shared', 'data'))
    parser.add_argument('--out', default='data')
    args = parser.parse_args()

    src, out = osp.join(args.shared, 'lsp_methods'), osp.join(args.out, 'lsp_methods')
    for name in LSP_GT:
        write_gz(slim_coco(load(osp.join(src, f'{name}.json')), LSP_ANN_KEYS),
                 osp.join(out, f'{name}.json.gz'))
    for path in sorted(glob.glob(osp.join(src, 'preds', '*.json'))):
        write_gz(slim_results(load(path)),
                 osp.join(out, 'preds', osp.basename(path) + '.gz'))
    shutil.copyfile(osp.join(src, 'index.json'), osp.join(out, 'index.json'))
    copy_source(src, out, LSP_NOTE)

    src, out = (osp.join(args.shared, 'hands_coco_wholebody'),
                osp.join(args.out, 'hands_coco_wholebody'))
    write_gz(slim_hands(load(osp.join(src, f'{HANDS}.json'))), osp.join(out, f'{HANDS}.json.gz'))
    copy_source(src, out, HANDS_NOTE)


if __name__ == '__main__':
    main()
