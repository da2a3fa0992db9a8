"""The bundled real body data as arrays: ground truth, BlazePose predictions."""
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from mmport.utils import load_json

DATA_ROOT = 'data'
BLAZEPOSE_SETS = ('lsp', 'lspet', 'coco')
# MMPose's top-down padding of a person box (and how BlazePose's crops were
# made): the frame of a ground-truth-only training person
TOPDOWN_PADDING = 1.25


def topdown_boxes(bboxes: np.ndarray, padding: float = TOPDOWN_PADDING) -> np.ndarray:
    """Square boxes (N, 4) xyxy of side ``padding`` times the longer side
    of ``bboxes`` (N, 4) xyxy, about the same centres."""
    centre = (bboxes[:, :2] + bboxes[:, 2:]) / 2
    half = padding * (bboxes[:, 2:] - bboxes[:, :2]).max(1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], 1).astype(bboxes.dtype)


@dataclass
class BodySet:
    """Persons of one annotation file, COCO-17 layout, as arrays.

    Attributes:
        name (str): Set name.
        coco (dict): The COCO annotation dict (for xtcocotools).
        ann_ids, image_ids (np.ndarray): int (N,).
        keypoints (np.ndarray): Ground truth (N, 17, 2), pixels.
        visible (np.ndarray): bool (N, 17), labelled joints (v > 0).
        occluded (np.ndarray): bool (N, 17), labelled but occluded (v = 1).
        bboxes (np.ndarray): Annotation boxes (N, 4) xyxy: ground truth, for
            scoring (box-normalised errors) and for training only.
        areas (np.ndarray): (N,) OKS areas.
        frames (np.ndarray): (N, 4) xyxy, the box that frames each person
            for the refiner: the box the detector ran on (the results'
            ``bbox``) where a prediction exists, else (ground truth only,
            training persons) what a top-down detector is given for it, the
            annotation box enlarged ``TOPDOWN_PADDING`` about its centre and
            made square (:func:`topdown_boxes`).
        pred (np.ndarray, optional): Predictions (N, 17, 2) (NaN where none).
        pred_scores (np.ndarray, optional): (N, 17) per-joint scores.
        pred_instance_scores (np.ndarray, optional): (N,) results' ``score``.
    """
    name: str
    coco: dict
    ann_ids: np.ndarray
    image_ids: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    occluded: np.ndarray
    bboxes: np.ndarray
    areas: np.ndarray
    frames: Optional[np.ndarray] = None
    pred: Optional[np.ndarray] = None
    pred_scores: Optional[np.ndarray] = None
    pred_instance_scores: Optional[np.ndarray] = None
    extra: Dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ann_ids)

    @property
    def has_pred(self) -> np.ndarray:
        if self.pred is None:
            return np.zeros(len(self), bool)
        return np.isfinite(self.pred).all((1, 2))

    def subset(self, index: np.ndarray) -> 'BodySet':
        """The persons ``index`` (the COCO dict keeps only their images)."""
        index = np.asarray(index)
        keep_ann = set(self.ann_ids[index].tolist())
        keep_img = set(self.image_ids[index].tolist())
        coco = dict(self.coco)
        coco['images'] = [im for im in self.coco['images'] if im['id'] in keep_img]
        coco['annotations'] = [a for a in self.coco['annotations'] if a['id'] in keep_ann]
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return BodySet(self.name, coco, self.ann_ids[index], self.image_ids[index],
                       self.keypoints[index], self.visible[index], self.occluded[index],
                       self.bboxes[index], self.areas[index], pick(self.frames),
                       pick(self.pred),
                       pick(self.pred_scores), pick(self.pred_instance_scores),
                       {k: v[index] for k, v in self.extra.items()})


def body_set_from_coco(name: str, coco: dict, results: Optional[List[dict]] = None) -> BodySet:
    """Arrays of a COCO annotation dict, with a results list matched by
    ``gt_ann_id`` (BlazePose files) when given: each prediction is framed
    by its record's ``bbox`` (the box the detector ran on)."""
    anns = [a for a in coco['annotations'] if not a.get('iscrowd', 0)]
    kpts = np.array([a['keypoints'] for a in anns], np.float32).reshape(len(anns), -1, 3)
    boxes = np.array([a['bbox'] for a in anns], np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    out = BodySet(name, coco, np.array([a['id'] for a in anns]),
                  np.array([a['image_id'] for a in anns]), kpts[..., :2], kpts[..., 2] > 0,
                  kpts[..., 2] == 1, boxes, np.array([a['area'] for a in anns], np.float32),
                  topdown_boxes(boxes))
    if results is not None:
        row = {int(a): i for i, a in enumerate(out.ann_ids)}
        pred = np.full(kpts[..., :2].shape, np.nan, np.float32)
        scores = np.zeros(kpts.shape[:2], np.float32)
        inst = np.zeros(len(anns), np.float32)
        for r in results:
            i = row[int(r['gt_ann_id'])]
            kp = np.asarray(r['keypoints'], np.float32).reshape(-1, 3)
            pred[i], scores[i], inst[i] = kp[:, :2], kp[:, 2], r['score']
            x, y, w, h = r['bbox']
            out.frames[i] = [x, y, x + w, y + h]
        out.pred, out.pred_scores, out.pred_instance_scores = pred, scores, inst
    return out


def load_blazepose_set(name: str, root: str = DATA_ROOT) -> BodySet:
    """One of ``BLAZEPOSE_SETS`` with its real BlazePose predictions."""
    folder = osp.join(root, 'body_real')
    return body_set_from_coco(name, load_json(osp.join(folder, f'{name}_gt.json.gz')),
                              load_json(osp.join(folder, f'{name}_blazepose.json.gz')))


def load_coco_val2017(root: str = DATA_ROOT, exclude_images=()) -> BodySet:
    """All COCO val2017 persons with keypoints (ground truth only), without
    the images ``exclude_images`` (ids)."""
    coco = load_json(osp.join(root, 'coco_val2017', 'person_keypoints_val2017_all.json.gz'))
    drop = set(int(i) for i in exclude_images)
    coco = dict(coco, images=[im for im in coco['images'] if im['id'] not in drop],
                annotations=[a for a in coco['annotations'] if a['image_id'] not in drop])
    return body_set_from_coco('coco_val2017', coco)


def load_coco_train2017(root: str = DATA_ROOT, exclude_images=(),
                        max_persons: Optional[int] = None, seed: int = 0) -> BodySet:
    """COCO train2017 persons with at least 5 labelled joints (ground truth
    only), without the images ``exclude_images`` (ids); ``max_persons``
    draws that many at random (``seed``). Their OKS area is the box's
    (the copy keeps no segmentation area)."""
    d = np.load(osp.join(root, 'coco_train2017', 'coco_train2017_persons.npz'))
    keep = ~np.isin(d['image_id'], np.asarray(list(exclude_images), np.int64))
    index = np.flatnonzero(keep)
    if max_persons is not None and max_persons < len(index):
        index = np.sort(np.random.default_rng(seed).choice(index, max_persons, replace=False))
    kpts, boxes, image_ids = d['keypoints'][index], d['bbox_xywh'][index], d['image_id'][index]
    images = [dict(id=int(i)) for i in np.unique(image_ids)]
    anns = [dict(id=n + 1, image_id=int(img), category_id=1, iscrowd=0,
                 keypoints=kp.reshape(-1).astype(float).tolist(),
                 num_keypoints=int((kp[:, 2] > 0).sum()), bbox=box.astype(float).tolist(),
                 area=float(box[2] * box[3]))
            for n, (kp, box, img) in enumerate(zip(kpts, boxes, image_ids))]
    coco = dict(images=images, annotations=anns,
                categories=[dict(id=1, name='person')])
    return body_set_from_coco('coco_train2017', coco)


def merge_sets(sets: List[BodySet], name: str = 'all') -> BodySet:
    """One set of several (image and annotation ids offset per set so that
    they stay unique)."""
    parts = []
    images, anns = [], []
    for n, body in enumerate(sets):
        off = (n + 1) * 10_000_000
        images += [dict(im, id=im['id'] + off) for im in body.coco['images']]
        anns += [dict(a, id=a['id'] + off, image_id=a['image_id'] + off)
                 for a in body.coco['annotations']]
        parts.append((body, off))
    coco = dict(images=images, annotations=anns, categories=sets[0].coco['categories'])
    cat = lambda f: None if getattr(sets[0], f) is None else np.concatenate(  # noqa: E731
        [getattr(b, f) for b in sets])
    return BodySet(name, coco, np.concatenate([b.ann_ids + off for b, off in parts]),
                   np.concatenate([b.image_ids + off for b, off in parts]),
                   cat('keypoints'), cat('visible'), cat('occluded'), cat('bboxes'),
                   cat('areas'), cat('frames'), cat('pred'), cat('pred_scores'),
                   cat('pred_instance_scores'))
