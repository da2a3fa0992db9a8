"""Attach another method's predictions to dataset samples."""
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpose.registry import TRANSFORMS

from mmport.datasets.prediction_files import PoseResults, load_pose_results
from mmport.structures import valid_bboxes
from mmport.utils import InputFileError


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box (4,) with many (N, 4)."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area_a = np.prod(np.clip(box[2:] - box[:2], 0, None))
    area_b = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def match_instance(results: PoseResults, candidates: List[int], bbox: np.ndarray) -> int:
    """Pick, among a frame's predicted instances, the one of a ground-truth box.

    By box IoU where the results have boxes, else by how many predicted
    keypoints fall inside the box (ties: nearest keypoint centroid).
    """
    if len(candidates) == 1:
        return candidates[0]
    idx = np.asarray(candidates)
    if results.bboxes is not None and np.isfinite(results.bboxes[idx]).all():
        return int(idx[np.argmax(box_iou(bbox, results.bboxes[idx]))])
    kpts = results.keypoints[idx]
    inside = ((kpts >= bbox[:2]) & (kpts <= bbox[2:])).all(-1).sum(-1)
    dist = np.linalg.norm(kpts.mean(1) - (bbox[:2] + bbox[2:]) / 2, axis=-1)
    return int(idx[np.lexsort((dist, -inside))[0]])


@TRANSFORMS.register_module()
class LoadInitialPredictions(BaseTransform):
    """Attach the prediction of another method (the "initial" pose) to each
    sample of an MMPose dataset: ``init_keypoints`` (1, K, 2) and
    ``init_keypoint_scores`` (1, K).

    Predictions are matched to samples by image (path, or ``img_id`` for
    COCO json results), then by box within the image (pairing a prediction
    with its ground truth, for training and scoring). With
    ``frame='results'`` the sample's ``bbox``, which frames the instance
    for the refiner, becomes the box the detector ran on (the results'), so
    that a refiner is trained and tested in the frames a user has at test
    time; the annotation's box is kept as ``gt_bbox``.

    Required keys: ``keypoints`` (1, K, 2), ``bbox`` (1, 4) and ``img_path``
    (pickles) or ``img_id`` (COCO json results).
    Added keys: ``init_keypoints`` (1, K, 2), ``init_keypoint_scores``
    (1, K); with ``frame='results'`` and a results box: ``gt_bbox`` (1, 4).
    Modified keys: ``bbox`` (1, 4), with ``frame='results'`` and a results
    box.

    Args:
        results_file (str): Any format of
            :func:`mmport.datasets.prediction_files.load_pose_results`.
        on_missing (str): ``'error'`` (default) or ``'skip'`` (leave the
            sample without an initial pose; training then uses ground truth).
        frame (str): ``'results'`` (default): frame the instance by the
            results' box where the file has a finite one; ``'annotation'``:
            keep the annotation's box (the refiner then sees a box that
            users do not have at test time: for comparisons only).
    """

    def __init__(self, results_file: str, on_missing: str = 'error', frame: str = 'results'):
        if on_missing not in ('error', 'skip'):
            raise ValueError(f'on_missing must be "error" or "skip", got {on_missing!r}')
        if frame not in ('results', 'annotation'):
            raise ValueError(f'frame must be "results" or "annotation", got {frame!r}')
        self.results_file = results_file
        self.on_missing = on_missing
        self.frame = frame
        self._results: Optional[PoseResults] = None
        self._index: Dict[str, List[int]] = {}

    def _load(self) -> PoseResults:
        if self._results is None:
            res = load_pose_results(self.results_file)
            index = defaultdict(list)
            for i, key in enumerate(res.image_keys):
                index[key if res.format == 'coco_json' else osp.basename(key)].append(i)
            self._results, self._index = res, dict(index)
        return self._results

    def transform(self, results: dict) -> Optional[dict]:
        res = self._load()
        key = str(results.get('img_id')) if res.format == 'coco_json' else osp.basename(
            results['img_path'])
        candidates = self._index.get(key, [])
        if not candidates:
            if self.on_missing == 'skip':
                return results
            raise InputFileError(self.results_file, f'has no prediction for image '
                                 f'{results.get("img_path", key)}')
        num_keypoints = results['keypoints'].shape[1]
        if res.keypoints.shape[1] != num_keypoints:
            raise InputFileError(self.results_file, f'has {res.keypoints.shape[1]} keypoints '
                                 f'per instance, the dataset {num_keypoints}')
        i = match_instance(res, candidates, results['bbox'][0])
        results['init_keypoints'] = res.keypoints[i][None].astype(np.float32)
        results['init_keypoint_scores'] = res.keypoint_scores[i][None].astype(np.float32)
        if self.frame == 'results' and res.bboxes is not None:
            box = res.bboxes[i][None]
            if bool(valid_bboxes(torch.as_tensor(box))[0]):  # a box the refiner accepts
                results['gt_bbox'] = results['bbox']
                results['bbox'] = box.astype(np.float32)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(results_file={self.results_file!r}, '
                f'frame={self.frame!r})')
