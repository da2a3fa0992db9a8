"""Refine another method's results file (PoseFix-style, offline).

Ground truth never enters refinement: each instance is refined from what
the results file holds (keypoints, their scores, the instance score and the
box the estimator ran on, where the file gives one; else the extent of the
keypoints frames the instance: :mod:`mmport.apis.framing`). An annotation
file is read only to score the refined result
(:mod:`mmport.apis.ground_truth_scoring`).
"""
import copy
import dataclasses
import gzip
from dataclasses import dataclass, field
from typing import Dict, Optional, Union

import numpy as np
import torch

from mmport.datasets.prediction_files import load_pose_results
from mmport.models.refiner_loading import load_refiner
from mmport.utils import InputFileError, load_json, safe_load_pickle
from .framing import NO_BOXES, frame_kinds, refiner_boxes, usable_boxes
from .ground_truth_scoring import load_coco_annotations, score_against_annotations
from .results_writing import atomic_write, encode_results


def refine_arrays(refiner, keypoints: np.ndarray, scores: np.ndarray, boxes: np.ndarray,
                  score_thr: Optional[float] = None, batch_size: int = 8192,
                  instance_scores: Optional[np.ndarray] = None):
    """Refine (N, K, 2) keypoints in batches; returns refined (N, K, 2),
    the replaced-joint mask (N, K) and the instance scores (N,): those
    given (``instance_scores``, default ones) rescored where the refiner's
    rule rescores (:meth:`PORTRefiner.refine_and_rescore`). Instances the
    refiner cannot use (bad box, NaN, too few confident joints) come back
    unchanged, with their score."""
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
        if refiner.rule.rescore is not None:
            inst[sl] = rescored.double().numpy()
    return refined, replaced, inst


@dataclass
class OfflineRefinementReport:
    """What :func:`refine_results_file` did.

    Attributes:
        results_file (str): The refined results file.
        out (str, optional): The written refined file (None: not written).
        score_thr (float, optional): Confidence threshold used (None:
            every joint was a candidate).
        refined (np.ndarray): (N, K, 2) refined keypoints, N instances of
            the results file in its order.
        replaced (np.ndarray): bool (N, K), the joints the refiner replaced.
        unchanged (int): Instances with a candidate joint that passed
            through unchanged (the refiner's do-no-harm gate moved
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
    score_thr: Optional[float]
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
        candidates = ('every joint a candidate' if self.score_thr is None
                      else f'threshold {self.score_thr}')
        lines = [f'{self.out or self.results_file}: {n} instances, {int(self.replaced.sum())} '
                 f'joints of {int(self.replaced.any(1).sum()) if n else 0} instances refined '
                 f'({"score-free, " if self.score_free else ""}{candidates}); '
                 f'{self.unchanged} instances with candidate joints passed '
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
            rule's (``rule.rescore``) where every instance is framed by a
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
    rule = refiner.rule
    needs_box = rule.rescore is not None and rule.rescore.needs_box
    if rescore is None and needs_box and unboxed:
        # the expected OKS is learned in person-box frames; and rescored and
        # unrescored scores do not rank together, so all are kept
        rescore = 0.0
    else:
        unboxed = 0  # rescored as asked, or nothing to rescore
    if rescore is not None:  # the weight asked for, with the rule's calibration if any
        kept = dataclasses.asdict(rule.rescore) if rule.rescore is not None else {}
        rule = rule.replace(rescore=dict(kept, weight=float(rescore)) if rescore else None)
    if scores not in ('file', 'none'):
        raise ValueError(f"scores must be 'file' or 'none', got {scores!r}")
    score_free = scores == 'none'
    if score_free and refiner.network.use_scores:
        name = checkpoint if isinstance(checkpoint, str) else 'the refiner'
        raise InputFileError(name, 'is a refiner that reads confidences; scores=none needs '
                             'a score-free one (use_scores=False)')
    if score_free and rule.candidates != 'all':
        # the file's scores are no confidences: no joint is trusted a priori
        rule = rule.replace(candidates='all', score_thr=None, min_confident=0, blend='replace')
    rule = rule.with_threshold(score_thr)
    if rule != refiner.rule:
        if not isinstance(checkpoint, str):  # leave the caller's refiner as it was
            refiner = copy.deepcopy(refiner)
        refiner.rule = rule
    thr = rule.score_thr
    joint_scores = (np.zeros_like(poses.keypoint_scores) if score_free
                    else poses.keypoint_scores)
    if len(poses) and poses.keypoints.shape[1] != refiner.num_keypoints:
        name = f'refiner {checkpoint}' if isinstance(checkpoint, str) else 'refiner'
        raise InputFileError(results, f'has {poses.keypoints.shape[1]} keypoints per '
                             f'instance, the {name} {refiner.num_keypoints}')
    boxes = refiner_boxes(poses, -np.inf if thr is None else thr, bbox_source)
    rescored = rule.rescore is not None
    if len(poses):
        refined, replaced, instance_scores = refine_arrays(
            refiner, poses.keypoints, joint_scores, boxes, instance_scores=poses.scores)
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
    low = (rule.candidate_mask(torch.from_numpy(joint_scores)).numpy().any(1) if len(poses)
           else np.zeros(0, bool))
    report = OfflineRefinementReport(results, out, thr, refined, replaced,
                                     int((low & ~replaced.any(1)).sum()), score_free=score_free,
                                     rescore=rule.rescore.weight if rescored else 0.0,
                                     scores_kept_unboxed=unboxed, bbox_source=bbox_source,
                                     framed_by_keypoints=keypoint_framed)
    if coco is not None:  # scoring only: the refined output above is final
        score_against_annotations(report, poses, source, coco, refiner, instance_scores)
    return report
