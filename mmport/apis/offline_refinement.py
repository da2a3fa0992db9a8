"""Refine another method's results file (PoseFix-style, offline)."""
import copy
import json
import os
import os.path as osp
import pickle
import tempfile
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

from mmport.datasets.prediction_files import PoseResults
from mmport.datasets.transforms.loading import box_iou
from mmport.utils import InputFileError


@dataclass
class GroundTruthMatch:
    """Per result instance, its ground-truth annotation (where one matched).

    Attributes:
        ann_index (np.ndarray): int (N,), index into ``annotations`` or -1.
        annotations (list[dict]): The annotation file's person annotations.
        image_ids (list): Per result instance, the COCO image id (or None).
    """
    ann_index: np.ndarray
    annotations: List[dict]
    image_ids: List


def load_coco_annotations(ann_file: str) -> dict:
    """Read a COCO-style keypoint annotation file, with clear errors."""
    try:
        with open(ann_file) as f:
            data = json.load(f)
    except OSError as err:
        raise InputFileError(ann_file, f'cannot be read ({err.strerror})') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(ann_file, f'is not valid JSON ({err})') from None
    if not isinstance(data, dict) or 'annotations' not in data or 'images' not in data:
        raise InputFileError(ann_file, 'is not a COCO annotation file (needs "images" and '
                             '"annotations")')
    return data


def keypoint_extent_boxes(keypoints: np.ndarray, scores: np.ndarray, thr: float) -> np.ndarray:
    """Boxes (N, 4) around each instance's confident keypoints (all of them
    where fewer than two are confident); NaN where no keypoint is finite."""
    if keypoints.size == 0:
        return np.full((len(keypoints), 4), np.nan)
    conf = (scores >= thr) & np.isfinite(keypoints).all(-1)
    few = conf.sum(1) < 2
    conf[few] = np.isfinite(keypoints[few]).all(-1)
    big = np.where(conf[..., None], keypoints, np.nan)
    with warnings.catch_warnings():  # all-NaN instances give NaN boxes, as documented
        warnings.simplefilter('ignore', RuntimeWarning)
        return np.concatenate([np.nanmin(big, 1), np.nanmax(big, 1)], 1)


def match_ground_truth(results: PoseResults, coco: dict) -> GroundTruthMatch:
    """Match each result instance to an annotation of its image: the only
    one, or the one whose box best overlaps the instance's keypoints (IoU >
    0.1)."""
    by_name = {osp.basename(img['file_name']): img['id'] for img in coco['images']}
    anns = [a for a in coco['annotations'] if not a.get('iscrowd', 0)]
    per_image: Dict[object, List[int]] = defaultdict(list)
    for i, a in enumerate(anns):
        per_image[a['image_id']].append(i)
    # the extent of all finite keypoints: confident ones alone may cover a
    # small part of the instance
    extents = keypoint_extent_boxes(results.keypoints, results.keypoint_scores, -np.inf)
    ann_index = np.full(len(results), -1)
    image_ids: List = []
    for n, key in enumerate(results.image_keys):
        if results.format == 'coco_json':
            image_id = next((i for i in (key, _int_or_none(key)) if i in per_image), None)
        else:
            image_id = by_name.get(osp.basename(key))
        image_ids.append(image_id)
        cands = per_image.get(image_id, [])
        if not cands or not np.isfinite(extents[n]).all():
            continue
        boxes = np.array([anns[c]['bbox'] for c in cands], np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        iou = box_iou(extents[n], boxes)
        if len(cands) == 1 or iou.max() > 0.1:  # an image's only person, or the best overlap
            ann_index[n] = cands[int(np.argmax(iou))]
    return GroundTruthMatch(ann_index, anns, image_ids)


def _int_or_none(key):
    try:
        return int(key)
    except ValueError:
        return None


BBOX_SOURCES = ('auto', 'ann', 'results', 'keypoints')


def refiner_boxes(results: PoseResults, match: Optional[GroundTruthMatch], thr: float,
                  source: str = 'auto') -> np.ndarray:
    """The frame box (N, 4) xyxy of every instance.

    ``'ann'``: the matched annotation's box (the frame the refiner was
    trained in); ``'results'``: the box the results file gives (the
    detector's); ``'keypoints'``: the extent of the instance's confident
    keypoints. ``'auto'`` takes, per instance, the annotation's box where one
    matched, else the detector's box of an MMPose ``--dump`` file, else the
    keypoint extent. (MMPose 0.x pickles hold padded crop boxes, used only on
    request.) Unusable boxes are not fixed here: such instances pass through
    the refiner unchanged.
    """
    if source not in BBOX_SOURCES:
        raise ValueError(f'bbox source must be one of {BBOX_SOURCES}, got {source!r}')
    boxes = keypoint_extent_boxes(results.keypoints, results.keypoint_scores, thr)
    if source in ('results', 'auto') and results.bboxes is not None and (
            source == 'results' or results.format == 'mmpose_dump'):
        boxes = results.bboxes.astype(np.float64).copy()
    if source in ('ann', 'auto') and match is not None:
        for n, a in enumerate(match.ann_index):
            if a >= 0:
                x, y, w, h = match.annotations[a]['bbox']
                boxes[n] = [x, y, x + w, y + h]
    return boxes


def refine_arrays(refiner, keypoints: np.ndarray, scores: np.ndarray, boxes: np.ndarray,
                  score_thr: Optional[float] = None, batch_size: int = 8192):
    """Refine (N, K, 2) keypoints in batches; returns refined (N, K, 2) and
    the replaced-joint mask (N, K). Instances the refiner cannot use (bad
    box, NaN, too few confident joints) come back unchanged."""
    refined = keypoints.astype(np.float64).copy()
    replaced = np.zeros(scores.shape, bool)
    for start in range(0, len(keypoints), batch_size):
        sl = slice(start, start + batch_size)
        out, rep = refiner.refine(torch.as_tensor(keypoints[sl], dtype=torch.float32),
                                  torch.as_tensor(scores[sl], dtype=torch.float32),
                                  torch.as_tensor(boxes[sl], dtype=torch.float32),
                                  score_thr=score_thr)
        rep = rep.numpy()
        refined[sl][rep] = out.double().numpy()[rep]
        replaced[sl] = rep
    return refined, replaced


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename, so that
    ``path`` is never left half-written."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp_', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise


def encode_results(results: PoseResults, source, refined: np.ndarray,
                   replaced: np.ndarray) -> bytes:
    """Serialise refined keypoints in the format of the source file.

    Args:
        results (PoseResults): The loaded results.
        source: The raw loaded object (list) of the source file.
        refined (np.ndarray): (N, K, 2) refined keypoints.
        replaced (np.ndarray): bool (N, K).
    """
    if results.format == 'coco_json':
        out = []
        for n, rec in enumerate(source):
            rec = dict(rec)
            kp = np.concatenate([refined[n], results.keypoint_scores[n][:, None]], 1)
            rec['keypoints'] = [float(v) for v in kp.reshape(-1)]
            out.append(rec)
        return json.dumps(out).encode()
    out = copy.deepcopy(source)
    if results.format == 'mmpose0_test_pickle':
        n = 0
        for batch in out:
            preds = np.array(batch['preds'], copy=True)
            preds[..., :2] = refined[n:n + len(preds)].astype(preds.dtype)
            batch['preds'] = preds
            n += len(preds)
    else:  # mmpose_dump
        for n, extra in enumerate(results.extra):
            pred = out[extra['record']]['pred_instances']
            kp = np.array(pred['keypoints'], copy=True)
            kp[extra['instance'], :, :2] = refined[n]
            pred['keypoints'] = kp
            init = pred.get('keypoints_init', np.asarray(source[extra['record']]
                                                         ['pred_instances']['keypoints']))
            pred['keypoints_init'] = np.asarray(init)
            mask = pred.get('refined_mask', np.zeros(kp.shape[:2], bool))
            mask = np.array(mask, copy=True)
            mask[extra['instance']] = replaced[n]
            pred['refined_mask'] = mask
    return pickle.dumps(out)
