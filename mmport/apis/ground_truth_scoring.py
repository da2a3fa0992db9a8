"""Score refined results against an annotation file: matching each result
instance to its ground truth, then errors, PCKh and COCO AP before and
after. Reads the refined output; never changes it."""
import os.path as osp
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List

import numpy as np

from mmport.datasets.prediction_files import PoseResults
from mmport.datasets.transforms.loading import box_iou
from mmport.evaluation import coco_keypoint_ap, mpii_pose_errors, refinement_report
from mmport.utils import InputFileError, load_json
from .framing import keypoint_extent_boxes

if TYPE_CHECKING:  # the report is filled here, made by offline_refinement
    from .offline_refinement import OfflineRefinementReport


@dataclass
class GroundTruthMatch:
    """Per result instance, its ground-truth annotation (where one matched),
    for scoring only.

    Attributes:
        ann_index (np.ndarray): int (N,), index into ``annotations`` or -1.
        annotations (list[dict]): The annotation file's person annotations.
        image_ids (list): Per result instance, the COCO image id (or None).
    """
    ann_index: np.ndarray
    annotations: List[dict]
    image_ids: List


def load_coco_annotations(ann_file: str) -> dict:
    """Read a COCO-style keypoint annotation file (``.json`` or
    ``.json.gz``), with clear errors."""
    data = load_json(ann_file)
    if not isinstance(data, dict) or 'annotations' not in data or 'images' not in data:
        raise InputFileError(ann_file, 'is not a COCO annotation file (needs "images" and '
                             '"annotations")')
    return data


def match_ground_truth(results: PoseResults, coco: dict) -> GroundTruthMatch:
    """Match each result instance to an annotation of its image, to score
    the refinement (never to refine): the one its record names
    (``annotation_id``, as in the MPII results files), else the image's only
    one, or the one whose box (``bbox``, else its labelled joints' extent)
    best overlaps the extent of the instance's keypoints (IoU > 0.1).

    Args:
        results (PoseResults): The loaded results (N instances).
        coco (dict): A COCO-style annotation file (crowd annotations are
            left out).

    Returns:
        GroundTruthMatch: Per instance, its annotation index or -1.
    """
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
    by_id = {a['id']: i for i, a in enumerate(anns) if 'id' in a}
    for n, key in enumerate(results.image_keys):
        if results.format == 'coco_json':
            image_id = next((i for i in (key, _int_or_none(key)) if i in per_image), None)
        else:
            image_id = by_name.get(osp.basename(key))
        image_ids.append(image_id)
        named = (by_id.get(results.extra[n]['annotation_id'])
                 if results.extra and 'annotation_id' in results.extra[n] else None)
        if named is not None and anns[named]['image_id'] == image_id:
            ann_index[n] = named
            continue
        cands = per_image.get(image_id, [])
        if not cands or not np.isfinite(extents[n]).all():
            continue
        boxes = np.array([_annotation_box(anns[c]) for c in cands], np.float64).reshape(-1, 4)
        iou = box_iou(extents[n], boxes)
        if len(cands) == 1 or iou.max() > 0.1:  # an image's only person, or the best overlap
            ann_index[n] = cands[int(np.argmax(iou))]
    return GroundTruthMatch(ann_index, anns, image_ids)


def _annotation_box(ann: dict) -> list:
    """xyxy of an annotation's ``bbox``, else of its labelled keypoints
    (LSP's annotations have no box); for matching only."""
    if 'bbox' in ann:
        x, y, w, h = ann['bbox']
        return [x, y, x + w, y + h]
    kp = np.asarray(ann['keypoints'], np.float64).reshape(-1, 3)
    kp = kp[kp[:, 2] > 0, :2]
    if not len(kp):
        return [np.nan] * 4
    return [*kp.min(0), *kp.max(0)]


def _int_or_none(key):
    try:
        return int(key)
    except ValueError:
        return None


def score_against_annotations(report: 'OfflineRefinementReport', poses: PoseResults, source,
                              coco: dict, refiner, instance_scores: np.ndarray) -> None:
    """Fill the report's ground-truth scores (``matched``, ``errors``,
    ``pckh``, ``coco_ap``) in place. Reads the refined output; changes
    nothing of it.

    Args:
        report (OfflineRefinementReport): The refinement's report (its
            ``refined`` (N, K, 2) and ``replaced`` (N, K)).
        poses (PoseResults): The results as read (N instances).
        source: The raw loaded results file (list).
        coco (dict): The COCO-style annotation file.
        refiner (PORTRefiner): The refiner (its skeleton and sigmas).
        instance_scores (np.ndarray): (N,) the written instance scores.
    """
    refined, replaced = report.refined, report.replaced
    match = match_ground_truth(poses, coco)
    if not (match.ann_index >= 0).any():
        return
    m = match.ann_index >= 0
    anns = [match.annotations[a] for a in match.ann_index[m]]
    gt = np.array([a['keypoints'] for a in anns], np.float64).reshape(len(anns), -1, 3)
    if gt.shape[1] == refiner.num_keypoints:
        report.matched = int(m.sum())
        report.errors = refinement_report(poses.keypoints[m], refined[m], gt[..., :2],
                                          gt[..., 2] > 0, replaced[m], gt[..., 2] == 1)
        if all('head_size' in a for a in anns):
            head = np.array([a['head_size'] for a in anns], np.float64)
            report.pckh = {name: mpii_pose_errors(kpts, gt[..., :2], gt[..., 2], head)
                           for name, kpts in (('init', poses.keypoints[m]),
                                              ('refined', refined[m]))}
    sigmas = refiner.metainfo.get('sigmas')
    if poses.format == 'coco_json' and sigmas is not None and len(sigmas) == gt.shape[1]:
        # records of the annotation file's images with finite values only
        # (COCOeval asserts the former and cannot score the rest)
        image_ids = {img['id'] for img in coco['images']}
        keep = [i for i, r in enumerate(source) if r.get('image_id') in image_ids
                and np.isfinite(poses.keypoints[i]).all()
                and np.isfinite(poses.keypoint_scores[i]).all()
                and np.isfinite(poses.scores[i])]

        def records(kpts, inst):
            return [dict(image_id=source[i]['image_id'],
                         category_id=source[i].get('category_id', 1),
                         score=float(inst[i]),
                         keypoints=np.concatenate([kpts[i], poses.keypoint_scores[i][:, None]],
                                                  1).reshape(-1).tolist()) for i in keep]
        report.coco_ap = dict(
            init=coco_keypoint_ap(coco, records(poses.keypoints, poses.scores), sigmas)['AP'],
            refined=coco_keypoint_ap(coco, records(refined, instance_scores), sigmas)['AP'],
            instances=len(keep))
