"""Before / after scores of a refinement of real body predictions."""
from typing import Dict

import numpy as np

from mmport.evaluation import coco_keypoint_ap, pose_errors
from mmport.evaluation.functional import move_outcomes

from .body_data import BodySet


def coco_results(body: BodySet, keypoints: np.ndarray) -> list:
    """COCO keypoint results of the persons with predictions; the instance
    score is the results file's (refinement does not rescore)."""
    records = []
    for i in np.flatnonzero(body.has_pred):
        kp = np.concatenate([keypoints[i], body.pred_scores[i][:, None]], 1)
        records.append(dict(image_id=int(body.image_ids[i]), category_id=1,
                            keypoints=kp.reshape(-1).tolist(),
                            score=float(body.pred_instance_scores[i])))
    return records


def pose_scores(body: BodySet, keypoints: np.ndarray, replaced: np.ndarray,
                sigmas) -> Dict[str, float]:
    """AP (xtcocotools, labelled joints), EPE in pixels and box-normalised,
    PCK@0.1 of the box, over all labelled joints, the replaced ones and the
    occluded (v=1) ones, of the persons with predictions."""
    has = body.has_pred
    kp, gt, vis = keypoints[has], body.keypoints[has], body.visible[has]
    size = (body.bboxes[has, 2:] - body.bboxes[has, :2]).max(1)
    norm = {'bbox': np.repeat(size[:, None], 2, 1)}
    out = dict(coco_keypoint_ap(body.coco, coco_results(body, keypoints), sigmas))
    dist = np.linalg.norm(kp - gt, axis=-1) / size[:, None]
    for suffix, mask in (('', vis), ('_replaced', vis & replaced[has]),
                         ('_occluded', vis & body.occluded[has])):
        e = pose_errors(kp, gt, mask, 0.1, norm)
        out['EPE' + suffix] = e['EPE']
        out['EPE_norm' + suffix] = float(dist[mask].mean()) if mask.any() else float('nan')
        out['PCK@0.1' + suffix] = e['PCK@0.1']
    return out


def refinement_scores(body: BodySet, refined: np.ndarray, replaced: np.ndarray,
                      sigmas) -> dict:
    """``baseline`` and ``refined`` scores (EPE_replaced on the same joints
    in both), plus the moved joints' outcomes (``replaced_fraction`` of all
    labelled predicted joints, ``worsened_fraction`` of the moved ones)."""
    has = body.has_pred
    out = {'persons': int(has.sum()),
           'baseline': pose_scores(body, body.pred, replaced, sigmas),
           'refined': pose_scores(body, refined, replaced, sigmas)}
    out.update(move_outcomes(body.pred[has], refined[has], body.keypoints[has],
                             body.visible[has], np.ones_like(replaced[has])))
    return out
