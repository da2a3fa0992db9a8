"""The bundled MPII arrays (``data/mpii/mpii_val_preds.npz``) as the files
a user of ``tools/refine_results.py`` has: a COCO-style annotation dict of
the validation persons (with MPII's ``head_size``, for PCKh) and a model's
COCO keypoint results (``bbox`` = MPII's protocol box, the box the model
ran on; the third keypoint value 1 where it predicted the joint, not a
confidence)."""
from typing import Mapping, Optional, Sequence

import numpy as np


def _persons(d: Mapping, persons: Optional[Sequence[int]]) -> np.ndarray:
    return np.arange(len(d['val_gt'])) if persons is None else np.asarray(persons)


def _xywh(box: np.ndarray) -> list:
    box = box.astype(float)
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def mpii_annotations(d: Mapping, persons: Optional[Sequence[int]] = None) -> dict:
    """COCO-style annotations of the validation persons ``persons`` (default
    all) of the arrays ``d``; image ``file_name`` ``<image id>.jpg``."""
    idx = _persons(d, persons)
    images, anns = {}, []
    for i in idx:
        image_id = int(d['val_image_id'][i])
        images[image_id] = dict(id=image_id, file_name=f'{image_id}.jpg')
        kp = np.concatenate([d['val_gt'][i], d['val_visibility'][i][:, None]], 1)
        box = _xywh(d['val_bbox'][i])
        anns.append(dict(id=int(d['val_ann_id'][i]), image_id=image_id, category_id=1,
                         keypoints=kp.reshape(-1).tolist(), iscrowd=0,
                         num_keypoints=int((kp[:, 2] > 0).sum()), bbox=box,
                         area=float(box[2] * box[3]), head_size=float(d['val_head_size'][i])))
    return dict(images=list(images.values()), annotations=anns,
                categories=[dict(id=1, name='person')])


def mpii_results(d: Mapping, model: str, persons: Optional[Sequence[int]] = None) -> list:
    """``model``'s COCO keypoint results of the validation persons
    ``persons`` (default all), each naming its ``annotation_id``."""
    records = []
    for i in _persons(d, persons):
        pred = np.concatenate([d[f'pred_{model}'][i], d[f'predicted_{model}'][i][:, None]], 1)
        records.append(dict(image_id=int(d['val_image_id'][i]), category_id=1, score=1.0,
                            annotation_id=int(d['val_ann_id'][i]), bbox=_xywh(d['val_bbox'][i]),
                            keypoints=pred.reshape(-1).tolist()))
    return records
