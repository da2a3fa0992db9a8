"""Refine another method's results file (PoseFix-style, offline).

Ground truth never enters refinement: each instance is refined from what
the results file holds (keypoints, their scores, the instance score and the
box the estimator ran on, where the file gives one; else the extent of the
keypoints frames the instance). An annotation file is read only to score
the refined result (:func:`match_ground_truth`,
:func:`score_against_annotations`).
"""
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


def keypoint_extent_boxes(keypoints: np.ndarray, scores: np.ndarray, thr: float) -> np.ndarray:
    """Boxes around each instance's confident keypoints.

    Args:
        keypoints (np.ndarray): (N, K, 2) pixels.
        scores (np.ndarray): (N, K) confidences.
        thr (float): Joints scored ``>= thr`` are confident (all finite
            joints where fewer than two are); ``-inf``: all finite joints.

    Returns:
        np.ndarray: (N, 4) xyxy; NaN where no keypoint is finite.
    """
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
    """Match each result instance to an annotation of its image, to score
    the refinement (never to refine): the one its record names
    (``annotation_id``, as in the MPII results files), else the image's only
    one, or the one whose box best overlaps the extent of the instance's
    keypoints (IoU > 0.1).

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


BBOX_SOURCES = ('auto', 'results', 'keypoints')
NO_BOXES = ("gives no person box: bbox source 'results' needs one ('auto' and 'keypoints' "
            'frame instances by their keypoints)')


def usable_boxes(bboxes: Optional[np.ndarray], n: int) -> np.ndarray:
    """Which of ``n`` boxes (N, 4) xyxy can frame an instance: finite, with
    positive width and height (bool (N,); all False where ``bboxes`` is
    None)."""
    if bboxes is None:
        return np.zeros(n, bool)
    bboxes = np.asarray(bboxes, np.float64).reshape(n, 4)
    with np.errstate(invalid='ignore'):
        return np.isfinite(bboxes).all(1) & (bboxes[:, 2:] > bboxes[:, :2]).all(1)


def frame_kinds(results: PoseResults, source: str = 'auto') -> np.ndarray:
    """Which box :func:`refiner_boxes` frames each instance by.

    Args:
        results (PoseResults): The loaded results (N instances).
        source (str): One of ``BBOX_SOURCES``: ``'auto'``, per instance, the
            results' own box where it is finite and non-degenerate, else the
            extent of the instance's keypoints; ``'results'``: the results'
            own box for every instance (instances with an unusable one pass
            through the refiner unchanged); ``'keypoints'``: the keypoints'
            extent for every instance.

    Returns:
        np.ndarray: object (N,), ``'results'`` or ``'keypoints'`` per
        instance.

    Raises:
        ValueError: An unknown ``source``, or ``'results'`` for results
            that give no box.
    """
    if source not in BBOX_SOURCES:
        raise ValueError(f'bbox source must be one of {BBOX_SOURCES}, got {source!r}')
    kinds = np.full(len(results), 'keypoints', dtype=object)
    if source == 'results':
        if len(results) and results.bboxes is None:
            raise ValueError(NO_BOXES)
        kinds[:] = 'results'
    elif source == 'auto':
        kinds[usable_boxes(results.bboxes, len(results))] = 'results'
    return kinds


def refiner_boxes(results: PoseResults, thr: float, source: str = 'auto') -> np.ndarray:
    """The frame box of every instance, from the results file alone (never
    from an annotation file).

    Args:
        results (PoseResults): The loaded results (N instances, K joints).
        thr (float): Confidence threshold of the keypoint extent: the box
            around the instance's joints scored ``>= thr`` (all finite ones
            where fewer than two are); ``-inf``: all finite joints.
        source (str): One of ``BBOX_SOURCES`` (see :func:`frame_kinds`).

    Returns:
        np.ndarray: (N, 4) xyxy pixels. Unusable boxes (NaN, degenerate) are
        not fixed here: such instances pass through the refiner unchanged.
    """
    kinds = frame_kinds(results, source)
    boxes = keypoint_extent_boxes(results.keypoints, results.keypoint_scores, thr)
    own = kinds == 'results'
    if own.any():
        boxes[own] = np.asarray(results.bboxes, np.float64).reshape(-1, 4)[own]
    return boxes


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
            annotation (with ``ann``; scoring only).
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
        scores_kept_unboxed (int): Instances without a usable box from the
            results file because of which a rescoring refiner kept every
            instance's score (0: not the case).
        bbox_source (str): The ``bbox_source`` asked for.
        framed_by_keypoints (int): Instances framed by the extent of their
            keypoints (with ``'auto'``: those the file gives no finite,
            non-degenerate box for).
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
    bbox_source: str = 'auto'
    framed_by_keypoints: int = 0

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
        if self.framed_by_keypoints:
            why = ('as asked (--bbox-source keypoints)' if self.bbox_source == 'keypoints'
                   else 'the file gives no usable box for them')
            lines.append(f'{self.framed_by_keypoints} of {n} instances framed by their '
                         f'keypoints: {why}')
        if self.rescore:
            lines.append(f'instance scores rescored by the refiner (weight {self.rescore} of its '
                         'expected OKS)')
        if self.scores_kept_unboxed:
            lines.append(f'instance scores kept: {self.scores_kept_unboxed} of {n} instances '
                         'have no usable box from the results file, where the refiner\'s '
                         'expected OKS is not what it learned (--rescore W forces it)')
        if self.errors:
            lines.append(f'matched {self.matched} of {n} instances to ground truth (scoring '
                         'only)')
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

    The refinement reads the results file only: keypoints, their scores,
    the instance scores and the box the estimator ran on, where the file
    gives one. The annotation file (``ann``) only scores the result: the
    refined keypoints, the replaced joints, the instance scores and the
    written file are the same with and without it.

    Args:
        results (str): A COCO keypoint results json (image_id, category_id,
            keypoints, score; optionally ``bbox`` [x, y, w, h] or MMPose
            0.x's ``center`` / ``scale``), an MMPose ``tools/test.py --dump``
            pickle or an MMPose 0.x test output pickle. Pickles are read
            with a restricted unpickler (numpy and builtin data only).
        checkpoint (str | PORTRefiner): A refiner checkpoint, or a loaded
            refiner.
        out (str, optional): Where to write the refined results, in the
            format of ``results`` (atomically; gzipped if it ends in
            ``.gz``). None: nothing is written.
        ann (str, optional): A COCO-style annotation file, for scoring only:
            the report holds before/after errors of the instances matched to
            an annotation (and COCO keypoint AP for json results of a
            skeleton with sigmas, e.g. 17-joint bodies; PCKh@0.5 where the
            annotations carry MPII's ``head_size``). It never changes the
            refined output.
        score_thr (float, optional): Confidence threshold; default: the
            refiner's.
        config (str, optional): Refiner config, if the checkpoint holds none.
        bbox_source (str): Frame of each instance, one of ``BBOX_SOURCES``
            (see :func:`frame_kinds`): ``'auto'`` (the results' own box where
            it is usable, else the keypoints' extent), ``'results'`` or
            ``'keypoints'``.
        device (str): Device of the refiner.
        scores (str): ``'file'``: the file's per-joint scores are
            confidences; ``'none'``: they are not (a constant, or a
            "predicted" flag): a score-free refiner (``use_scores=False``)
            refines every joint from positions alone, and the score values
            are written back as read.
        rescore (float, optional): Weight in [0, 1] of the refiner's
            expected OKS in the instance scores. Default: the refiner's
            (``test_cfg.rescore``) where every instance is framed by a
            usable box of the results file, else 0: the estimate is learned
            in person-box frames, and scores rescored and kept do not rank
            together. 0 keeps the file's scores. Rescored scores are written
            as json ``score``, 0.x ``boxes[:, 5]`` or dump ``bbox_scores``.

    Returns:
        OfflineRefinementReport: The refined keypoints and what changed.

    Raises:
        InputFileError: An unreadable file, results of another skeleton
            than the refiner's, or ``bbox_source='results'`` for results
            without boxes.
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
    # read (and checked) now, so that a bad file fails before any work; used
    # only to score, after the refined output is final
    coco = load_coco_annotations(ann) if ann else None
    if bbox_source == 'results' and len(poses) and poses.bboxes is None:
        raise InputFileError(results, NO_BOXES)
    kinds = frame_kinds(poses, bbox_source)
    keypoint_framed = int((kinds == 'keypoints').sum())
    # instances framed by a usable box of the results file
    boxed = (kinds == 'results') & usable_boxes(poses.bboxes, len(poses))
    unboxed = int((~boxed).sum())
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
    boxes = refiner_boxes(poses, -np.inf if score_free else thr, bbox_source)
    rescored = bool(refiner.test_cfg.get('rescore', 0))
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
        data = encode_results(poses, source, refined, replaced,
                              instance_scores if rescored else None)
        atomic_write(out, gzip.compress(data, mtime=0) if str(out).endswith('.gz') else data)
    low = (joint_scores < thr).any(1) if len(poses) else np.zeros(0, bool)
    report = OfflineRefinementReport(results, out, thr, refined, replaced,
                                     int((low & ~replaced.any(1)).sum()), score_free=score_free,
                                     rescore=float(refiner.test_cfg.get('rescore', 0)),
                                     scores_kept_unboxed=unboxed, bbox_source=bbox_source,
                                     framed_by_keypoints=keypoint_framed)
    if coco is not None:  # scoring only: the refined output above is final
        score_against_annotations(report, poses, source, coco, refiner, instance_scores)
    return report


def score_against_annotations(report: OfflineRefinementReport, poses: PoseResults, source,
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
