"""Read pose-estimation results of other methods into one array layout.

Supported formats (detected from the content):

* ``mmpose0_test_pickle``: MMPose 0.x test output, a list of batch dicts with
  ``preds`` (B, K, 3), ``boxes`` (B, 6), ``image_paths``, ``bbox_ids``
  (PORT's prediction files).
* ``mmpose_dump``: MMPose 1.x ``tools/test.py --dump`` pickle, a list of
  data-sample dicts with ``pred_instances`` and ``img_path``/``img_id``.
* ``coco_json``: COCO keypoint results, a list of ``{image_id, category_id,
  keypoints: [x, y, s] * K, score}``, optionally with the box the estimator
  ran on: ``bbox`` [x, y, w, h], or MMPose 0.x's ``center`` [cx, cy] and
  ``scale`` [sw, sh] (units of 200 px).

The person boxes (:attr:`PoseResults.bboxes`) are those the results file
gives, i.e. the boxes the estimator itself ran on: ``pred_instances.bboxes``
of a dump, the centre and scale of a 0.x pickle's ``boxes`` (a box of side
``scale * 200`` around ``center``), a json record's ``bbox``, else its
``center`` and ``scale``. An annotation file never supplies one.
"""
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from mmport.utils import JSON_SUFFIXES, InputFileError, load_json, safe_load_pickle


@dataclass
class PoseResults:
    """N predicted instances.

    Attributes:
        image_keys (list[str]): Per instance, the image it belongs to: an
            image path (pickles) or ``str(image_id)`` (COCO json).
        keypoints (np.ndarray): (N, K, 2) pixels.
        keypoint_scores (np.ndarray): (N, K) confidences.
        bboxes (np.ndarray | None): (N, 4) xyxy pixels, the box each instance's
            estimator ran on, as the file gives it; NaN rows for instances
            the file gives none; None where it gives none at all.
        scores (np.ndarray): (N,) instance scores.
        format (str): The detected format.
        extra (list[dict]): Per instance, the fields of the source record not
            covered above (kept so that a refined file can be written back in
            the same format).
    """
    image_keys: List[str]
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    bboxes: Optional[np.ndarray]
    scores: np.ndarray
    format: str
    extra: List[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_keys)


def _finite_array(path, what, value, shape_tail) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != len(shape_tail) + 1 or any(
            t is not None and s != t for s, t in zip(arr.shape[1:], shape_tail)):
        raise InputFileError(path, f'{what} has shape {arr.shape}, expected (N, '
                             + ', '.join('K' if t is None else str(t) for t in shape_tail) + ')')
    return arr


def _center_scale_boxes(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """MMPose 0.x boxes: (N, 4) xyxy of side ``scale * 200`` around ``center``
    (both (N, 2) pixels / units of 200 px)."""
    wh = scale * 200
    return np.concatenate([center - wh / 2, center + wh / 2], 1)


def _from_mmpose0(path: str, batches: list) -> PoseResults:
    keys, kpts, boxes, scores, extra = [], [], [], [], []
    any_box = False
    for b, batch in enumerate(batches):
        if not isinstance(batch, dict) or 'preds' not in batch or 'image_paths' not in batch:
            raise InputFileError(path, f'batch {b} is not an MMPose 0.x result dict '
                                 '(needs "preds" and "image_paths")')
        preds = _finite_array(path, f'batch {b} preds', batch['preds'], (None, 3))
        if len(batch['image_paths']) != len(preds):
            raise InputFileError(path, f'batch {b} has {len(preds)} preds but '
                                 f'{len(batch["image_paths"])} image_paths')
        n = len(preds)
        kpts.append(preds)
        keys.extend(str(p) for p in batch['image_paths'])
        bx = None
        if batch.get('boxes') is not None and n:
            # centre x, centre y, scale w, scale h (units of 200 px), area, score
            bx = np.asarray(batch['boxes'], np.float64).reshape(n, -1)
            if bx.shape[1] < 4:
                raise InputFileError(path, f'batch {b}: boxes have {bx.shape[1]} columns, '
                                     'expected centre x, centre y, scale w, scale h[, area, '
                                     'score]')
        any_box |= bx is not None
        boxes.append(_center_scale_boxes(bx[:, :2], bx[:, 2:4]) if bx is not None
                     else np.full((n, 4), np.nan))
        scores.append(bx[:, 5] if bx is not None and bx.shape[1] > 5 else np.ones(n))
        ids = batch.get('bbox_ids')
        extra.extend({'bbox_id': int(ids[i]) if ids is not None else None}
                     for i in range(n))
    if len({k.shape[1] for k in kpts}) > 1:
        raise InputFileError(path, 'batches disagree on the number of keypoints')
    preds = np.concatenate(kpts) if kpts else np.zeros((0, 0, 3))
    return PoseResults(keys, preds[..., :2], preds[..., 2],
                       np.concatenate(boxes) if any_box else None,
                       np.concatenate(scores) if scores else np.zeros(0),
                       'mmpose0_test_pickle', extra)


def _from_mmpose_dump(path: str, samples: list) -> PoseResults:
    keys, kpts, kscores, boxes, scores, extra = [], [], [], [], [], []
    any_box = False
    for s, sample in enumerate(samples):
        pred = sample.get('pred_instances') if isinstance(sample, dict) else None
        if not isinstance(pred, dict) or 'keypoints' not in pred:
            raise InputFileError(path, f'record {s} has no pred_instances.keypoints')
        kp = np.asarray(pred['keypoints'], np.float64)
        if kp.ndim != 3 or kp.shape[-1] != 2:
            raise InputFileError(path, f'record {s}: pred_instances.keypoints has shape '
                                 f'{kp.shape}, expected (N, K, 2)')
        n = len(kp)
        ks = pred.get('keypoint_scores')
        if ks is None:
            raise InputFileError(path, f'record {s}: pred_instances has no keypoint_scores')
        ks = np.asarray(ks, np.float64).reshape(n, kp.shape[1])
        bb = pred.get('bboxes')
        any_box |= bb is not None and n > 0
        key = str(sample.get('img_path', sample.get('img_id', s)))
        keys.extend([key] * n)
        kpts.append(kp)
        kscores.append(ks)
        boxes.append(np.asarray(bb, np.float64).reshape(n, 4) if bb is not None
                     else np.full((n, 4), np.nan))
        sc = pred.get('bbox_scores')
        scores.append(np.asarray(sc, np.float64).reshape(n) if sc is not None else np.ones(n))
        extra.extend({'record': s, 'instance': i, 'img_id': sample.get('img_id'),
                      'id': sample.get('id')} for i in range(n))
    if not kpts:
        return PoseResults([], np.zeros((0, 0, 2)), np.zeros((0, 0)), None, np.zeros(0),
                           'mmpose_dump', [])
    if len({k.shape[1] for k in kpts}) > 1:
        raise InputFileError(path, 'records disagree on the number of keypoints')
    return PoseResults(keys, np.concatenate(kpts), np.concatenate(kscores),
                       np.concatenate(boxes) if any_box else None, np.concatenate(scores),
                       'mmpose_dump', extra)


def _record_box(path: str, r: int, rec: dict) -> Optional[np.ndarray]:
    """The xyxy box (4,) a COCO json record gives: ``bbox`` [x, y, w, h], else
    MMPose 0.x's ``center`` [cx, cy] and ``scale`` [sw, sh] (units of 200 px),
    else None."""
    if rec.get('bbox') is not None:
        box = np.asarray(rec['bbox'], np.float64)
        if box.shape != (4,):
            raise InputFileError(path, f'result {r}: "bbox" must be [x, y, w, h], got '
                                 f'{box.size} numbers')
        return np.concatenate([box[:2], box[:2] + box[2:]])
    if rec.get('center') is not None and rec.get('scale') is not None:
        center = np.asarray(rec['center'], np.float64).reshape(-1)
        scale = np.asarray(rec['scale'], np.float64).reshape(-1)
        if center.shape != (2,) or scale.shape not in ((1,), (2,)):
            raise InputFileError(path, f'result {r}: "center" must be [cx, cy] and "scale" '
                                 '[sw, sh]')
        return _center_scale_boxes(center[None], np.broadcast_to(scale, (2,))[None])[0]
    return None


def _from_coco_json(path: str, records: list) -> PoseResults:
    keys, kpts, scores, boxes, extra = [], [], [], [], []
    for r, rec in enumerate(records):
        if not isinstance(rec, dict) or 'image_id' not in rec or 'keypoints' not in rec:
            raise InputFileError(path, f'result {r} lacks "image_id" or "keypoints"')
        kp = np.asarray(rec['keypoints'], np.float64)
        if kp.ndim != 1 or kp.size % 3:
            raise InputFileError(path, f'result {r}: "keypoints" must be a flat list of '
                                 f'x, y, score triples, got {kp.size} numbers')
        if 'score' not in rec:
            raise InputFileError(path, f'result {r} has no "score"')
        keys.append(str(rec['image_id']))
        kpts.append(kp.reshape(-1, 3))
        scores.append(float(rec['score']))
        boxes.append(_record_box(path, r, rec))
        # bbox, center, scale and any other field are written back as read
        extra.append({k: v for k, v in rec.items() if k not in ('keypoints', 'score')})
    if len({k.shape[0] for k in kpts}) > 1:
        raise InputFileError(path, 'results disagree on the number of keypoints')
    arr = np.stack(kpts) if kpts else np.zeros((0, 0, 3))
    bboxes = None
    if any(b is not None for b in boxes):  # NaN rows for the records without one
        bboxes = np.stack([np.full(4, np.nan) if b is None else b for b in boxes])
    return PoseResults(keys, arr[..., :2], arr[..., 2], bboxes,
                       np.asarray(scores, np.float64), 'coco_json', extra)


def load_pose_results(path: str) -> PoseResults:
    """Load a results file of any supported format.

    Args:
        path (str): ``.json`` or ``.json.gz`` (COCO keypoint results), or
            ``.pkl``/``.pickle``.

    Returns:
        PoseResults: The instances, coordinates as float64.

    Raises:
        InputFileError: Unreadable, truncated, malformed, or unsupported file.
    """
    path = str(path)
    if path.endswith(JSON_SUFFIXES):
        data = load_json(path)
        if not isinstance(data, list):
            raise InputFileError(path, 'a COCO keypoint results file must hold a list')
        return _checked(path, _from_coco_json, data)
    data = safe_load_pickle(path)
    if not isinstance(data, list):
        raise InputFileError(path, f'expected a list of results, got {type(data).__name__}')
    if not data:
        return PoseResults([], np.zeros((0, 0, 2)), np.zeros((0, 0)), None, np.zeros(0),
                           'mmpose_dump', [])
    if isinstance(data[0], dict) and 'preds' in data[0]:
        return _checked(path, _from_mmpose0, data)
    if isinstance(data[0], dict) and 'pred_instances' in data[0]:
        return _checked(path, _from_mmpose_dump, data)
    raise InputFileError(path, 'unknown results layout: expected MMPose 0.x test output '
                         '("preds") or an MMPose --dump file ("pred_instances")')


def _checked(path: str, parse, data: list) -> PoseResults:
    """Run a parser; any malformed value becomes one clear error."""
    try:
        res = parse(path, data)
    except InputFileError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        raise InputFileError(path, f'malformed results ({type(err).__name__}: {err})') from None
    k = res.keypoints.shape[1] if res.keypoints.ndim == 3 else 0
    if len(res) and (res.keypoint_scores.shape != (len(res), k) or k == 0):
        raise InputFileError(path, f'keypoint scores have shape {res.keypoint_scores.shape}, '
                             f'expected ({len(res)}, {k})')
    if len(res.scores) != len(res):
        raise InputFileError(path, 'instance scores do not match the instances')
    return res
