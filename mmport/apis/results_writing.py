"""Write refined results back in the format they were read in."""
import copy
import json
import os
import os.path as osp
import pickle
import tempfile
from typing import Optional

import numpy as np

from mmport.datasets.prediction_files import PoseResults


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
                   replaced: np.ndarray, instance_scores: Optional[np.ndarray] = None) -> bytes:
    """Serialise refined keypoints in the format of the source file.

    Every field but the refined keypoints (and the rescored instance scores)
    is written back as read: boxes (``bbox``, ``center``, ``scale``,
    ``boxes``, ``bboxes``), ids, per-joint scores.

    Args:
        results (PoseResults): The loaded results (N instances, K joints).
        source: The raw loaded object (list) of the source file.
        refined (np.ndarray): (N, K, 2) refined keypoints.
        replaced (np.ndarray): bool (N, K).
        instance_scores (np.ndarray, optional): (N,) rescored instance
            scores, written as each COCO json record's ``score``, each MMPose
            0.x batch's ``boxes[:, 5]`` (batches without that score column
            keep none) or each dump's ``pred_instances.bbox_scores`` (the
            dump's own kept as ``bbox_scores_init``). None: the file's are
            kept.

    Returns:
        bytes: The file's content (json text or a pickle).
    """
    if results.format == 'coco_json':
        out = []
        for n, rec in enumerate(source):
            rec = dict(rec)
            kp = np.concatenate([refined[n], results.keypoint_scores[n][:, None]], 1)
            rec['keypoints'] = [float(v) for v in kp.reshape(-1)]
            if instance_scores is not None and 'score' in rec:
                rec['score'] = float(instance_scores[n])
            out.append(rec)
        return json.dumps(out).encode()
    out = copy.deepcopy(source)
    if results.format == 'mmpose0_test_pickle':
        n = 0
        for batch in out:
            preds = np.array(batch['preds'], copy=True)
            m = len(preds)
            preds[..., :2] = refined[n:n + m].astype(preds.dtype)
            batch['preds'] = preds
            if instance_scores is not None and batch.get('boxes') is not None and m:
                boxes = np.array(batch['boxes'], copy=True)
                if boxes.ndim == 2 and boxes.shape[0] == m and boxes.shape[1] > 5:
                    # the 0.x score column: centre x, centre y, scale w, scale h, area, score
                    boxes[:, 5] = instance_scores[n:n + m].astype(boxes.dtype)
                    batch['boxes'] = boxes
            n += m
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
            if instance_scores is not None:
                given = source[extra['record']]['pred_instances'].get('bbox_scores')
                given = (np.ones(len(kp), np.float32) if given is None
                         else np.asarray(given).reshape(len(kp)))
                pred.setdefault('bbox_scores_init', given.copy())
                scores = np.array(pred.get('bbox_scores', given), copy=True).reshape(len(kp))
                scores[extra['instance']] = instance_scores[n]
                pred['bbox_scores'] = scores
    return pickle.dumps(out)
