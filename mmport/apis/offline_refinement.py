"""Refine another method's results file (PoseFix-style, offline)."""
import copy
import gzip
import json
import os
import os.path as osp
import pickle
import tempfile
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import numpy as np
import torch

from mmport.datasets.prediction_files import PoseResults, load_pose_results
from mmport.datasets.transforms.loading import box_iou
from mmport.evaluation import coco_keypoint_ap, mpii_pose_errors, refinement_report
from mmport.models.refiner_loading import load_refiner
from mmport.utils import InputFileError, load_json, safe_load_pickle


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
    """Read a COCO-style keypoint annotation file (``.json`` or
    ``.json.gz``), with clear errors."""
    data = load_json(ann_file)
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
    """Match each result instance to an annotation of its image: the one its
    record names (``annotation_id``, as in the MPII results files), else the
    image's only one, or the one whose box best overlaps the instance's
    keypoints (IoU > 0.1)."""
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
    kinds = frame_kinds(results, match, source)
    boxes = keypoint_extent_boxes(results.keypoints, results.keypoint_scores, thr)
    if (kinds == 'results').any():
        boxes = results.bboxes.astype(np.float64).copy()
    for n in np.flatnonzero(kinds == 'ann'):
        x, y, w, h = match.annotations[match.ann_index[n]]['bbox']
        boxes[n] = [x, y, x + w, y + h]
    return boxes


def frame_kinds(results: PoseResults, match: Optional[GroundTruthMatch],
                source: str = 'auto') -> np.ndarray:
    """Which box :func:`refiner_boxes` frames each instance by (N,):
    ``'ann'``, ``'results'`` or ``'keypoints'``."""
    if source not in BBOX_SOURCES:
        raise ValueError(f'bbox source must be one of {BBOX_SOURCES}, got {source!r}')
    kinds = np.full(len(results), 'keypoints', dtype=object)
    if source in ('results', 'auto') and results.bboxes is not None and (
            source == 'results' or results.format == 'mmpose_dump'):
        kinds[:] = 'results'
    if source in ('ann', 'auto') and match is not None:
        kinds[match.ann_index >= 0] = 'ann'
    return kinds


def refine_arrays(refiner, keypoints: np.ndarray, scores: np.ndarray, boxes: np.ndarray,
                  score_thr: Optional[float] = None, batch_size: int = 8192,
                  instance_scores: Optional[np.ndarray] = None):
    """Refine (N, K, 2) keypoints in batches; returns refined (N, K, 2),
    the replaced-joint mask (N, K) and the instance scores (N,): those
    given (``instance_scores``, default ones) rescored where the refiner's
    ``test_cfg.rescore`` asks for it (:meth:`PORTRefiner.refine_and_rescore`).
    Instances the refiner cannot use (bad box, NaN, too few confident
    joints) come back unchanged, with their score."""
    refined = keypoints.astype(np.float64).copy()
    replaced = np.zeros(scores.shape, bool)
    inst = (np.ones(len(keypoints)) if instance_scores is None
            else np.asarray(instance_scores, np.float64).copy())
    for start in range(0, len(keypoints), batch_size):
        sl = slice(start, start + batch_size)
        out, rep, rescored = refiner.refine_and_rescore(
            torch.as_tensor(keypoints[sl], dtype=torch.float32),
            torch.as_tensor(scores[sl], dtype=torch.float32),
            torch.as_tensor(boxes[sl], dtype=torch.float32),
            torch.as_tensor(inst[sl], dtype=torch.float32), score_thr=score_thr)
        rep = rep.numpy()
        refined[sl][rep] = out.double().numpy()[rep]
        replaced[sl] = rep
        if refiner.test_cfg.get('rescore', 0):
            inst[sl] = rescored.double().numpy()
    return refined, replaced, inst


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

    Args:
        results (PoseResults): The loaded results.
        source: The raw loaded object (list) of the source file.
        refined (np.ndarray): (N, K, 2) refined keypoints.
        replaced (np.ndarray): bool (N, K).
        instance_scores (np.ndarray, optional): (N,) the ``score`` of each
            COCO json record, where the refiner rescored them.
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


@dataclass
class OfflineRefinementReport:
    """What :func:`refine_results_file` did.

    Attributes:
        results_file (str): The refined results file.
        out (str, optional): The written refined file (None: not written).
        score_thr (float): Confidence threshold used.
        refined (np.ndarray): (N, K, 2) refined keypoints, N instances of
            the results file in its order.
        replaced (np.ndarray): bool (N, K), the joints the refiner replaced.
        unchanged (int): Instances with a joint below the threshold that
            passed through unchanged (the refiner's do-no-harm gate moved
            none of them, or a degenerate box, non-finite values or too few
            confident joints).
        matched (int, optional): Instances matched to a ground-truth
            annotation (with ``ann``).
        errors (dict): With ground truth of the refiner's skeleton:
            ``'init'`` / ``'refined'`` -> :func:`refinement_report` entries
            (``EPE``, ``EPE_replaced``, ...) over the matched instances.
        coco_ap (dict): For COCO json results of a skeleton with sigmas:
            ``'init'`` / ``'refined'`` AP and ``'instances'`` scored.
        score_free (bool): Refined without reading the file's scores
            (every joint a candidate).
        pckh (dict): With annotations that carry MPII's ``head_size``:
            ``'init'`` / ``'refined'`` -> :func:`mpii_pose_errors` entries.
        rescore (float): The weight of the refiner's expected OKS in the
            written instance scores (0: the file's scores are kept).
        scores_kept_unboxed (int): Instances without a person box (framed
            by their keypoints) because of which a rescoring refiner kept
            every instance's score (0: not the case).
    """
    results_file: str
    out: Optional[str]
    score_thr: float
    refined: np.ndarray
    replaced: np.ndarray
    unchanged: int
    matched: Optional[int] = None
    errors: Dict[str, dict] = field(default_factory=dict)
    coco_ap: Dict[str, float] = field(default_factory=dict)
    score_free: bool = False
    pckh: Dict[str, dict] = field(default_factory=dict)
    rescore: float = 0.0
    scores_kept_unboxed: int = 0

    def summary(self) -> str:
        """The report as the lines ``tools/refine_results.py`` prints."""
        n = len(self.replaced)
        lines = [f'{self.out or self.results_file}: {n} instances, {int(self.replaced.sum())} '
                 f'joints of {int(self.replaced.any(1).sum()) if n else 0} instances refined '
                 f'({"score-free" if self.score_free else f"threshold {self.score_thr}"}); '
                 f'{self.unchanged} instances with '
                 f'{"candidate" if self.score_free else "low-confidence"} joints passed '
                 'through unchanged (the do-no-harm gate where the refiner has one, a '
                 'degenerate box, non-finite values or too few confident joints)']
        if self.rescore:
            lines.append(f'instance scores rescored by the refiner (weight {self.rescore} of its '
                         'expected OKS)')
        if self.scores_kept_unboxed:
            lines.append(f'instance scores kept: {self.scores_kept_unboxed} of {n} instances '
                         'have no person box (framed by their keypoints), where the refiner\'s '
                         'expected OKS is not what it learned (--rescore W forces it)')
        if self.errors:
            lines.append(f'matched {self.matched} of {n} instances to ground truth')
            for name in ('EPE', 'EPE_replaced'):
                lines.append(f'  {name}: {self.errors["init"][name]:.3f} -> '
                             f'{self.errors["refined"][name]:.3f}')
        for name in ('PCKh@0.5', 'PCKh@0.5_all') if self.pckh else ():
            lines.append(f'  {name}: {100 * self.pckh["init"][name]:.2f} -> '
                         f'{100 * self.pckh["refined"][name]:.2f}')
        if self.coco_ap:
            lines.append(f'  COCO AP ({self.coco_ap["instances"]} instances): '
                         f'{self.coco_ap["init"]:.4f} -> {self.coco_ap["refined"]:.4f}')
        return '\n'.join(lines)


def refine_results_file(results: str, checkpoint: Union[str, torch.nn.Module],
                        out: Optional[str] = None, ann: Optional[str] = None,
                        score_thr: Optional[float] = None, config: Optional[str] = None,
                        bbox_source: str = 'auto', device: str = 'cpu',
                        scores: str = 'file',
                        rescore: Optional[float] = None) -> OfflineRefinementReport:
    """Refine the results file of any pose estimation method with a PORT
    refiner (offline, PoseFix-style).

    Args:
        results (str): A COCO keypoint results json (image_id, category_id,
            keypoints, score), an MMPose ``tools/test.py --dump`` pickle or an
            MMPose 0.x test output pickle. Pickles are read with a restricted
            unpickler (numpy and builtin data only).
        checkpoint (str | PORTRefiner): A refiner checkpoint, or a loaded
            refiner.
        out (str, optional): Where to write the refined results, in the
            format of ``results`` (atomically; gzipped if it ends in
            ``.gz``). None: nothing is written.
        ann (str, optional): A COCO-style annotation file: each instance is
            framed by its matched annotation's box, and the report holds
            before/after errors (and COCO keypoint AP for json results of a
            skeleton with sigmas, e.g. 17-joint bodies).
        score_thr (float, optional): Confidence threshold; default: the
            refiner's.
        config (str, optional): Refiner config, if the checkpoint holds none.
        bbox_source (str): Frame of each instance, one of ``BBOX_SOURCES``
            (see :func:`refiner_boxes`).
        device (str): Device of the refiner.
        scores (str): ``'file'``: the file's per-joint scores are
            confidences; ``'none'``: they are not (a constant, or a
            "predicted" flag): a score-free refiner (``use_scores=False``)
            refines every joint from positions alone, and the score values
            are written back as read.
        rescore (float, optional): Weight in [0, 1] of the refiner's
            expected OKS in the instance scores. Default: the refiner's
            (``test_cfg.rescore``) where every instance has a person box
            (a matched annotation's, or the results' own), else 0: the
            estimate is learned in person-box frames, and scores rescored
            and kept do not rank together. 0 keeps the file's scores.

    Returns:
        OfflineRefinementReport: The refined keypoints and what changed.

    Raises:
        InputFileError: An unreadable file, or results of another skeleton
            than the refiner's.
    """
    if rescore is not None and not 0 <= rescore <= 1:
        raise ValueError(f'rescore must be in [0, 1], got {rescore}')
    poses = load_pose_results(results)
    refiner = (load_refiner(checkpoint, config, device) if isinstance(checkpoint, str)
               else checkpoint)
    if rescore and not refiner.can_rescore:
        name = checkpoint if isinstance(checkpoint, str) else 'the refiner'
        raise InputFileError(name, 'does not estimate keypoint similarities '
                             "(predict_errors=True, quality_kind='keypoint_similarity'), "
                             'so it cannot rescore')
    coco = load_coco_annotations(ann) if ann else None
    match = match_ground_truth(poses, coco) if coco else None
    kinds = frame_kinds(poses, match, bbox_source)
    unboxed = int((kinds == 'keypoints').sum())
    if rescore is None and refiner.test_cfg.get('rescore', 0) and unboxed:
        # the expected OKS is learned in person-box frames; and rescored and
        # unrescored scores do not rank together, so all are kept
        rescore = 0.0
    else:
        unboxed = 0  # rescored as asked, or nothing to rescore
    if rescore is not None and rescore != refiner.test_cfg.get('rescore', 0):
        if not isinstance(checkpoint, str):  # leave the caller's refiner as it was
            refiner = copy.deepcopy(refiner)
        refiner.test_cfg['rescore'] = float(rescore)
    thr = refiner.test_cfg['score_thr'] if score_thr is None else score_thr
    if scores not in ('file', 'none'):
        raise ValueError(f"scores must be 'file' or 'none', got {scores!r}")
    score_free = scores == 'none'
    if score_free and refiner.network.use_scores:
        name = checkpoint if isinstance(checkpoint, str) else 'the refiner'
        raise InputFileError(name, 'is a refiner that reads confidences; scores=none needs '
                             'a score-free one (use_scores=False)')
    # score-free: no joint is trusted a priori, so all are candidates
    joint_scores = (np.zeros_like(poses.keypoint_scores) if score_free
                    else poses.keypoint_scores)
    if score_free:
        thr = 1.0
    if len(poses) and poses.keypoints.shape[1] != refiner.num_keypoints:
        name = f'refiner {checkpoint}' if isinstance(checkpoint, str) else 'refiner'
        raise InputFileError(results, f'has {poses.keypoints.shape[1]} keypoints per '
                             f'instance, the {name} {refiner.num_keypoints}')
    boxes = refiner_boxes(poses, match, -np.inf if score_free else thr, bbox_source)
    if len(poses):
        refined, replaced, instance_scores = refine_arrays(
            refiner, poses.keypoints, joint_scores, boxes, thr, instance_scores=poses.scores)
    else:  # an empty results file gives an empty refined file
        refined, replaced = poses.keypoints, np.zeros(poses.keypoint_scores.shape, bool)
        instance_scores = poses.scores
    source = None
    if out is not None or coco is not None:
        if poses.format == 'coco_json':
            source = load_json(results)
        else:
            source = safe_load_pickle(results)
    if out is not None:
        data = encode_results(poses, source, refined, replaced, instance_scores)
        atomic_write(out, gzip.compress(data) if str(out).endswith('.gz') else data)
    low = (joint_scores < thr).any(1) if len(poses) else np.zeros(0, bool)
    report = OfflineRefinementReport(results, out, thr, refined, replaced,
                                     int((low & ~replaced.any(1)).sum()), score_free=score_free,
                                     rescore=float(refiner.test_cfg.get('rescore', 0)),
                                     scores_kept_unboxed=unboxed)
    if match is None or not (match.ann_index >= 0).any():
        return report

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
    return report
