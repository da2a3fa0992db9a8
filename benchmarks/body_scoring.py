"""Before / after scores of a refinement of real body predictions."""
from typing import Dict, Optional

import numpy as np

from mmport.evaluation import coco_keypoint_ap, pose_errors
from mmport.evaluation.functional import move_outcomes

from .body_data import BodySet


def coco_results(body: BodySet, keypoints: np.ndarray,
                 instance_scores: Optional[np.ndarray] = None) -> list:
    """COCO keypoint results of the persons with predictions; the instance
    score is ``instance_scores`` (N,) or the results file's."""
    scores = body.pred_instance_scores if instance_scores is None else instance_scores
    records = []
    for i in np.flatnonzero(body.has_pred):
        kp = np.concatenate([keypoints[i], body.pred_scores[i][:, None]], 1)
        records.append(dict(image_id=int(body.image_ids[i]), category_id=1,
                            keypoints=kp.reshape(-1).tolist(), score=float(scores[i])))
    return records


def pose_scores(body: BodySet, keypoints: np.ndarray, replaced: np.ndarray, sigmas,
                instance_scores: Optional[np.ndarray] = None,
                positions_only: bool = True) -> Dict[str, float]:
    """AP (xtcocotools, labelled joints; with ``instance_scores`` (N,) also
    ``AP_positions_only``, with the file's scores), EPE in pixels and
    box-normalised, PCK@0.1 of the box, over all labelled joints, the
    replaced ones and the occluded (v=1) ones, of the persons with
    predictions."""
    has = body.has_pred
    kp, gt, vis = keypoints[has], body.keypoints[has], body.visible[has]
    size = (body.bboxes[has, 2:] - body.bboxes[has, :2]).max(1)
    norm = {'bbox': np.repeat(size[:, None], 2, 1)}
    out = dict(coco_keypoint_ap(body.coco, coco_results(body, keypoints, instance_scores),
                                sigmas))
    if instance_scores is not None and positions_only:
        out['AP_positions_only'] = (
            out['AP'] if np.array_equal(instance_scores, body.pred_instance_scores)
            else coco_keypoint_ap(body.coco, coco_results(body, keypoints), sigmas)['AP'])
    dist = np.linalg.norm(kp - gt, axis=-1) / size[:, None]
    for suffix, mask in (('', vis), ('_replaced', vis & replaced[has]),
                         ('_occluded', vis & body.occluded[has])):
        e = pose_errors(kp, gt, mask, 0.1, norm)
        out['EPE' + suffix] = e['EPE']
        out['EPE_norm' + suffix] = float(dist[mask].mean()) if mask.any() else float('nan')
        out['PCK@0.1' + suffix] = e['PCK@0.1']
    return out


def refinement_scores(body: BodySet, refined: np.ndarray, replaced: np.ndarray,
                      instance_scores: np.ndarray, sigmas, baseline: Optional[dict] = None,
                      positions_only: bool = True) -> dict:
    """``baseline`` and ``refined`` scores (EPE_replaced on the same joints
    in both; the refined AP with the refinement's instance scores (N,), and
    ``AP_positions_only`` with the file's), plus the moved joints' outcomes
    (``replaced_fraction`` of all labelled predicted joints,
    ``worsened_fraction`` of the moved ones). Rule searches pass the
    ``baseline`` scores computed once (their ``*_replaced`` entries do not
    match then) and skip ``positions_only``."""
    has = body.has_pred
    out = {'persons': int(has.sum()),
           'baseline': baseline or pose_scores(body, body.pred, replaced, sigmas),
           'refined': pose_scores(body, refined, replaced, sigmas, instance_scores,
                                  positions_only)}
    out.update(move_outcomes(body.pred[has], refined[has], body.keypoints[has],
                             body.visible[has], np.ones_like(replaced[has])))
    return out
