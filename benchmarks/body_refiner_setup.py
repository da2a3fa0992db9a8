"""What the body benchmarks share: the data split, the refiner, refining."""
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from mmpose.registry import MODELS

from mmport.datasets import grouped_folds
from mmport.models.instance_rescoring import rescored_instance_scores
from mmport.models.port_refiner import resolve_metainfo

from .body_data import BLAZEPOSE_SETS, BodySet, load_blazepose_set, load_coco_val2017

COCO_METAINFO = dict(from_file='configs/_base_/datasets/coco.py')
NETWORK = dict(type='PoseRelationTransformer', embed_dim=32, depth=4, num_heads=1,
               mlp_ratio=2.0, proj_hops=1, use_scores=True, mask_mode='hint',
               predict_errors=True)
# the threshold of a rule search that makes every joint a candidate
EVERY_JOINT = 'all'
# candidate weights of the refiner's expected OKS in the instance scores
RESCORE_WEIGHTS = (0.0, 0.25, 0.5, 0.75)


def coco_metainfo() -> dict:
    """The parsed COCO metainfo, with the spec it came from under 'spec'."""
    return dict(resolve_metainfo(COCO_METAINFO), spec=COCO_METAINFO)


def load_body_data(root: str = 'data') -> Tuple[Dict[str, BodySet], BodySet]:
    """The BlazePose sets and the COCO val2017 ground truth without the
    images of the BlazePose COCO set (whose persons are scored)."""
    sets = {name: load_blazepose_set(name, root) for name in BLAZEPOSE_SETS}
    coco_val = load_coco_val2017(root, exclude_images=sets['coco'].image_ids)
    return sets, coco_val


def blazepose_folds(sets: Dict[str, BodySet], num_folds: int = 5,
                    seed: int = 0) -> Dict[str, np.ndarray]:
    """Fold of every person, grouped by image over all sets."""
    names = list(sets)
    groups = [f'{name}/{img}' for name in names for img in sets[name].image_ids]
    folds = grouped_folds(groups, num_folds, seed)
    out, start = {}, 0
    for name in names:
        out[name] = folds[start:start + len(sets[name])]
        start += len(sets[name])
    return out


def body_rule(score_thr: Union[float, str], margin: Optional[float], rescore: float = 0.0,
              calibration: Optional[list] = None) -> dict:
    """The ``RefinementRule`` config of a body rule search's candidate:
    joints below ``score_thr`` are candidates (``EVERY_JOINT``: all of
    them), the gate needs an expected gain above ``margin`` (None: no
    gate), and the instance scores are rescored with weight ``rescore``
    (0: kept) of the expected OKS through ``calibration``."""
    every = score_thr == EVERY_JOINT
    return dict(candidates='all' if every else 'below_score',
                score_thr=None if every else float(score_thr),
                gate=None if margin is None else dict(margin=float(margin)),
                rescore=dict(weight=float(rescore), calibration=calibration) if rescore else None)


def build_refiner(network: Optional[dict] = None, quality_kind: str = 'keypoint_similarity',
                  train_cfg: Optional[dict] = None, rule: Optional[dict] = None):
    """A COCO-17 PORTRefiner with the body benchmarks' network and
    ``rule`` (default: joints below 0.5, gated at margin 0)."""
    cfg = dict(type='PORTRefiner', metainfo=COCO_METAINFO, network=dict(network or NETWORK),
               quality_kind=quality_kind,
               train_cfg=dict(dict(visible_loss_weight=0.1, loss_type='euclidean'),
                              **(train_cfg or {})),
               test_cfg=dict(rule=rule or body_rule(0.5, 0.0)))
    return MODELS.build(cfg), cfg


def refine_persons(refiner, body: BodySet, boxes: Optional[np.ndarray] = None
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``body``'s predictions through the refiner's own test-time rule
    (``PORTRefiner.refine_and_rescore``), framed by ``boxes`` (N, 4)
    (default: ``body.frames``, the boxes the detector ran on): refined keypoints (N, K, 2), replaced
    mask (N, K) and instance scores (N,); persons without a prediction stay
    zeros, unreplaced, with their score."""
    boxes = body.frames if boxes is None else boxes
    has = body.has_pred
    refined = np.nan_to_num(body.pred).copy()
    replaced = np.zeros(body.visible.shape, bool)
    scores = body.pred_instance_scores.astype(np.float32).copy()
    out, rep, inst = refiner.refine_and_rescore(torch.from_numpy(refined[has]),
                                                torch.from_numpy(body.pred_scores[has]),
                                                torch.from_numpy(boxes[has]).float(),
                                                torch.from_numpy(scores[has]))
    refined[has], replaced[has], scores[has] = out.numpy(), rep.numpy(), inst.numpy()
    return refined, replaced, scores


def refine_with_rule(refiner, body: BodySet, score_thr: Union[float, str],
                     margin: Optional[float], rescore: float = 0.0,
                     calibration: Optional[list] = None, boxes: Optional[np.ndarray] = None):
    """:func:`refine_persons` under one rule (:func:`body_rule`), which
    becomes the refiner's."""
    refiner.rule = body_rule(score_thr, margin, rescore, calibration)
    return refine_persons(refiner, body, boxes)


def blend_scores(body: BodySet, expected_oks: np.ndarray, weight: float) -> np.ndarray:
    """Instance scores (N,) rescored with ``weight`` from the expected OKS
    that a refinement with ``rescore=1`` returned as scores (instances it
    could not judge hold their own score there, so keep it)."""
    return rescored_instance_scores(torch.from_numpy(body.pred_instance_scores.astype(np.float32)),
                                    torch.from_numpy(expected_oks), weight).numpy()
