"""Fit a refiner to one detector: its predictions on a labelled split (a
results file and the annotations of the same persons) give its real errors;
a pretrained refiner of the same skeleton is fine-tuned on them, and the
test-time rule (threshold, gate, rescoring) is chosen by grouped K-fold
cross-validation inside the file: folds of images (a refiner for this
detector), or folds that hold out methods and images together where the file
pools several methods' predictions (a refiner for methods it never saw).

The refinement of each held-out fold reads only what
:func:`mmport.apis.refine_results_file` reads (keypoints, scores, the box
the detector ran on), through the same :func:`refine_arrays`; the
annotations train and score. If the cross-validated gain is not above its
spread, the written rule moves nothing (:mod:`mmport.fitting.rule_choice`).
"""
import copy
import multiprocessing as mp
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

from mmport.datasets import crossed_folds, grouped_folds
from mmport.datasets.prediction_files import PoseResults, load_pose_results
from mmport.fitting.fit_metric import (FitTargets, build_targets, choose_metric, epe, gain,
                                       loss_scale, metric_value, moved_outcomes, subset)
from mmport.fitting.fit_training import FitSettings, FramedPersons, fit_refiner_weights
from mmport.fitting.rule_choice import (IDENTITY, RuleChoice, candidate_rules, choose_rule,
                                        rule_label)
from mmport.models.refinement_rule import RefinementRule
from mmport.models.refiner_loading import (_read_checkpoint, load_refiner,
                                           refiner_config_from_checkpoint, save_refiner)
from mmport.utils import InputFileError
from .framing import refiner_boxes, usable_boxes
from .ground_truth_scoring import load_coco_annotations, match_ground_truth
from .offline_refinement import refine_arrays

# the pretrained starting point of each skeleton, by keypoint count
CHECKPOINT_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                          'checkpoints')
PRETRAINED = {17: 'port_coco17_refiner.pth', 16: 'port_mpii16_pretrained.pth',
              14: 'port_lsp14_pretrained.pth', 21: 'port_hand21_pretrained.pth'}
MIN_PERSONS = 60
# ``init`` value for fresh weights
SCRATCH = 'scratch'
# what the cross-validation holds out: images (persons of this detector), or
# methods and images together (records name their ``method``)
HOLD_OUT = {'image': 'grouped by image',
            'method': 'holding out methods and images together'}


@dataclass
class FitReport:
    """What :func:`fit_refiner` measured and wrote.

    Attributes:
        metric (str): The metric the rule was chosen by (``fit_metric.METRICS``).
        persons (int): Matched persons fitted (of ``instances`` in the file).
        folds (list[dict]): Per fold: persons scored, the rule chosen on the
            other folds, metric and EPE before / after, gain, moved /
            worsened.
        promise (float): Mean per-fold gain (points; EPE: percent).
        spread (float): Standard deviation of the per-fold gains.
        keep (bool): Whether the chosen rule was written (else the identity).
        rule (RefinementRule): The rule written.
        chosen (str): The cross-validated best rule's label.
        init (str): The starting point.
        out (str, optional): The checkpoint written.
        total (dict): The folds' scored persons together.
        hold_out (str): What the folds held out (a key of ``HOLD_OUT``).
        candidates (list[dict]): Per candidate rule: its label, mean gain
            over the folds and its lowest gain (of any one method in any
            fold where methods are held out, else of any fold).
    """
    metric: str
    persons: int
    instances: int
    folds: List[dict]
    promise: float
    spread: float
    keep: bool
    rule: RefinementRule
    chosen: str
    init: str
    out: Optional[str] = None
    total: Dict[str, float] = field(default_factory=dict)
    hold_out: str = 'image'
    candidates: List[dict] = field(default_factory=list)

    def summary(self) -> str:
        unit = '% EPE' if self.metric == 'EPE' else f' {self.metric} points'
        lines = [f'fitted {self.persons} matched persons (of {self.instances} in the file), '
                 f'{len(self.folds)}-fold cross-validation {HOLD_OUT[self.hold_out]}, '
                 f'from {self.init}',
                 f'{"fold":>6} {"persons":>8} {"rule (chosen on the other folds)":<34} '
                 f'{self.metric + " before":>14} {"after":>8} {"EPE before":>11} {"after":>7} '
                 f'{"moved":>6} {"worse":>6}']
        for i, f in enumerate(self.folds + [self.total]):
            name = 'total' if i == len(self.folds) else str(i)
            lines.append(f'{name:>6} {f["persons"]:>8} {f.get("rule", ""):<34} '
                         f'{f["before"]:>14.4f} {f["after"]:>8.4f} {f["epe_before"]:>11.2f} '
                         f'{f["epe_after"]:>7.2f} {100 * f["moved"]:>5.1f}% '
                         f'{100 * f["worsened"]:>5.1f}%')
        if self.hold_out == 'method':
            lines.append('candidate rules: mean gain over the folds / lowest gain of one method')
            lines += [f'  {c["rule"]:<34} {c["mean_gain"]:+.2f} / {c["worst_method"]:+.2f}'
                      for c in self.candidates]
        lines.append(f'cross-validated gain {self.promise:+.2f}{unit}, spread {self.spread:.2f} '
                     f'(rule chosen on the other folds)')
        if self.keep:
            lines.append(f'written rule: {self.chosen} (the best over all folds'
                         + (', lowering no method' if self.hold_out == 'method' else '') + ')')
        elif self.chosen == rule_label(None):
            lines.append('every candidate rule lowered some method: the written rule moves '
                         'nothing and keeps the scores')
        else:
            lines.append('the gain is not above its spread: the written rule moves nothing and '
                         'keeps the scores')
        if self.out:
            lines.append(f'wrote {self.out}')
        return '\n'.join(lines)


def pretrained_checkpoint(num_keypoints: int) -> Optional[str]:
    """The shipped starting point for a skeleton of ``num_keypoints`` (None
    if mmport ships none)."""
    name = PRETRAINED.get(num_keypoints)
    path = osp.join(CHECKPOINT_DIR, name) if name else None
    return path if path and osp.exists(path) else None


def _starting_point(init: Optional[str], num_keypoints: int, score_free: bool,
                    results: str):
    """The refiner to fine-tune and its model config (``init='scratch'``:
    the pretrained refiner's architecture with fresh weights)."""
    init_default_scope('mmpose')
    scratch = init == SCRATCH
    path = pretrained_checkpoint(num_keypoints) if init in (None, SCRATCH) else init
    if path is None:
        raise InputFileError(results, f'has {num_keypoints} keypoints per instance and mmport '
                             'ships no refiner of that skeleton to start from; pass --init CKPT')
    cfg = refiner_config_from_checkpoint(_read_checkpoint(path), path)
    refiner = load_refiner(path)
    if refiner.num_keypoints != num_keypoints:
        raise InputFileError(results, f'has {num_keypoints} keypoints per instance, the '
                             f'starting point {path} {refiner.num_keypoints}')
    if scratch:
        torch.manual_seed(0)
        refiner = MODELS.build(copy.deepcopy(cfg)).eval()
        path = f'scratch (the architecture of {path})'
    if score_free and refiner.network.use_scores:
        # the same network without its confidence input: every weight but
        # the input embedding carries over
        cfg = copy.deepcopy(cfg)
        cfg['network'] = dict(cfg['network'], use_scores=False)
        scoreless = MODELS.build(cfg)
        state = {k: v for k, v in refiner.state_dict().items()
                 if scoreless.state_dict()[k].shape == v.shape}
        scoreless.load_state_dict(state, strict=False)
        refiner = scoreless.eval()
    return refiner, cfg, path


def _framed(keypoints: np.ndarray, gt: np.ndarray, boxes: np.ndarray) -> tuple:
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).max(1)
    return ((keypoints - centre[:, None]) / side[:, None, None],
            (gt - centre[:, None]) / side[:, None, None], side)


@dataclass
class _FitJob:
    """One training of a fit: ``train`` persons; ``held_out`` persons are
    refined under every candidate rule (None: the final refiner)."""
    cfg: dict
    state: dict
    persons: FramedPersons
    settings: FitSettings
    held_out: Optional[dict] = None


def _run_job(job: _FitJob, progress: Optional[Callable[[int], None]] = None):
    torch.set_num_threads(1)
    init_default_scope('mmpose')
    refiner = MODELS.build(copy.deepcopy(job.cfg))
    refiner.load_state_dict(job.state)
    fit_refiner_weights(refiner, job.persons, job.settings, progress)
    if job.held_out is None:
        return {k: v.detach().cpu() for k, v in refiner.state_dict().items()}
    return refine_held_out(refiner, job.held_out)


def refine_held_out(refiner, held_out: dict) -> list:
    """A fold's held-out persons refined under each candidate rule (the
    refiner's rule is set to each in turn).

    Args:
        refiner (PORTRefiner): The fold's refiner.
        held_out (dict): ``rules`` (list of RefinementRule), ``keypoints``
            (S, K, 2), ``scores`` (S, K), ``boxes`` (threshold -> (S, 4)
            xyxy: the frames under each rule's threshold, None for every
            joint) and ``instance_scores`` (S,).

    Returns:
        list[tuple[np.ndarray, np.ndarray]]: Per rule, the refined keypoints
        (S, K, 2) and instance scores (S,), float64 as the input: a joint a
        rule keeps compares equal to its input.
    """
    h = held_out
    outputs = []
    for rule in h['rules']:
        refiner.rule = rule
        refined, _, inst = refine_arrays(refiner, h['keypoints'], h['scores'], h['boxes'][
            rule.score_thr if rule.candidates == 'below_score' else None],
            instance_scores=h['instance_scores'])
        outputs.append((refined, inst))
    return outputs


def fit_refiner(results: str, ann: str, out: Optional[str] = None, scores: str = 'file',
                init: Optional[str] = None, seed: int = 0, workers: int = 1, num_folds: int = 4,
                iters: int = 600, metric: Optional[str] = None, hold_out: str = 'image',
                progress: bool = True, command: str = '') -> FitReport:
    """Fit a refiner to the detector whose predictions ``results`` holds.

    Args:
        results (str): A results file :func:`refine_results_file` reads
            (boxes from it: the box the detector ran on; else the
            keypoints' extent).
        ann (str): COCO-style annotations of the same persons, matched as
            ``refine_results_file`` matches them; they train and score, and
            choose the metric (``fit_metric.choose_metric``).
        out (str, optional): Where to write the fitted checkpoint.
        scores (str): ``'file'``: the file's per-joint scores are
            confidences; ``'none'``: they are not (a score-free refiner).
        init (str, optional): Starting checkpoint; default the shipped
            pretrained refiner of the same keypoint count; ``'scratch'``:
            its architecture with fresh weights.
        seed (int): Seed of the folds, the batches and the weights.
        workers (int): Trainings run at once (processes, one thread each).
        num_folds (int): Folds of the cross-validation.
        iters (int): Optimiser steps of each training.
        metric (str, optional): One of ``fit_metric.METRICS`` that the
            annotations allow; default: chosen from them.
        hold_out (str): ``'image'``: folds of images (a refiner for this
            detector); ``'method'``: the records of several methods, each
            naming its ``method``, and folds that hold out methods and
            images together (:func:`mmport.datasets.crossed_folds`): the
            rule is chosen for methods the refiner did not train on.
        progress (bool): Show a progress bar.
        command (str): The command line, recorded in the checkpoint.

    Returns:
        FitReport: What was measured and written.

    Raises:
        InputFileError: Bad input (no matches, too few persons, mismatched
            keypoint counts, non-finite keypoints).
    """
    if scores not in ('file', 'none'):
        raise ValueError(f"scores must be 'file' or 'none', got {scores!r}")
    if hold_out not in HOLD_OUT:
        raise ValueError(f'hold_out must be one of {sorted(HOLD_OUT)}, got {hold_out!r}')
    poses = load_pose_results(results)
    coco = load_coco_annotations(ann)
    if not len(poses):
        raise InputFileError(results, 'holds no instances')
    k = poses.keypoints.shape[1]
    ann_k = {len(a.get('keypoints', [])) // 3 for a in coco['annotations']}
    if ann_k != {k}:
        raise InputFileError(ann, f'has annotations of {sorted(ann_k)} keypoints, the results '
                             f'{k}')
    match = match_ground_truth(poses, coco)
    matched = np.flatnonzero(match.ann_index >= 0)
    if not len(matched):
        raise InputFileError(results, f'has no instance that matches an annotation of {ann}')
    bad = ~np.isfinite(poses.keypoints[matched]).all((1, 2)) | ~np.isfinite(
        poses.keypoint_scores[matched]).all(1)
    if bad.any():
        raise InputFileError(results, f'has non-finite keypoints or scores (instance '
                             f'{int(matched[np.argmax(bad)])})')
    if len(matched) < MIN_PERSONS:
        raise InputFileError(results, f'has {len(matched)} instances matched to annotations; '
                             f'a fit needs at least {MIN_PERSONS}')
    score_free = scores == 'none'
    refiner, cfg, init_path = _starting_point(init, k, score_free, results)
    anns = [match.annotations[a] for a in match.ann_index[matched]]
    allowed = choose_metric(anns, k, poses.format == 'coco_json', refiner.metainfo.get('sigmas'))
    if metric is None:
        metric = allowed
    elif metric not in (allowed, 'EPE'):
        raise InputFileError(ann, f'allows the metric {allowed} (or EPE), not {metric}')
    targets = build_targets(anns, coco['images'], metric, refiner.metainfo.get('sigmas'))
    splits, methods = _cv_splits(results, poses, match, matched, num_folds, seed, hold_out)

    kpts = poses.keypoints[matched].astype(np.float64)
    joint_scores = (np.zeros(kpts.shape[:2]) if score_free
                    else poses.keypoint_scores[matched].astype(np.float64))
    inst_scores = poses.scores[matched].astype(np.float64)
    sub = PoseResults([poses.image_keys[i] for i in matched], kpts, joint_scores,
                      None if poses.bboxes is None else poses.bboxes[matched], inst_scores,
                      poses.format)
    # frames as refine_results_file frames them: the results' box, else the
    # extent of the keypoints above the rule's threshold
    # rescoring ranks persons by the expected OKS learned in detector-box
    # frames: offered where AP is the metric and every person has such a box
    boxed = sub.bboxes is not None and usable_boxes(sub.bboxes, len(sub)).all()
    rules = candidate_rules(refiner.network.use_scores, refiner.quality_kind
                            if refiner.network.predict_errors else None,
                            refiner.can_rescore and metric == 'AP' and boxed,
                            unseen=hold_out == 'method')
    thresholds = {r.score_thr if r.candidates == 'below_score' else None for r in rules}
    boxes = {t: refiner_boxes(sub, -np.inf if t is None else t) for t in thresholds}
    pred_n, gt_n, side = _framed(kpts, targets.gt, boxes[None])
    visible = targets.visibility > 0
    persons = FramedPersons(gt_n.astype(np.float32), visible, pred_n.astype(np.float32),
                            joint_scores.astype(np.float32))
    scale = loss_scale(targets, side)
    cfg = dict(cfg, train_cfg=dict(cfg.get('train_cfg') or {},
                                   **(dict(loss_type='welsch', loss_scale=scale)
                                      if scale else dict(loss_type='euclidean'))))
    refiner_cfg = dict(cfg, test_cfg=dict(rule=RefinementRule.keep_input().to_config()))
    state = {k_: v.detach().cpu() for k_, v in refiner.state_dict().items()}
    settings = FitSettings(iters=iters, seed=seed)
    jobs = []
    for tr, te in splits:
        jobs.append(_FitJob(refiner_cfg, state, persons.subset(tr), settings, dict(
            rules=rules, keypoints=kpts[te], scores=joint_scores[te],
            boxes={t: b[te] for t, b in boxes.items()}, instance_scores=inst_scores[te])))
    jobs.append(_FitJob(refiner_cfg, state, persons, settings))
    outputs = _run_jobs(jobs, workers, progress)

    gains = np.zeros((len(splits), len(rules)))
    # with methods held out: per fold and rule, the gain of the method it
    # helps least (a rule for unseen methods must not make one worse)
    worst = None if methods is None else np.zeros_like(gains)
    for f, (_, te) in enumerate(splits):
        t = subset(targets, te)
        before = metric_value(kpts[te], t, inst_scores[te])
        gains[f] = [gain(before, metric_value(r, t, s), metric) for r, s in outputs[f]]
        if worst is not None:
            worst[f] = _worst_method_gains(outputs[f], methods[te], kpts[te], inst_scores[te],
                                           t, metric)
    choice = choose_rule(gains, worst)
    folds, scored, pooled = _fold_rows(choice, outputs, splits, kpts, inst_scores, targets,
                                       rules)
    # each fold was refined (and rescored) by its own refiner: AP of the
    # pooled folds would rank one refiner's scores against another's, so the
    # total metric is the folds' mean, weighted by persons
    weights = np.array([f['persons'] for f in folds], np.float64)
    t = subset(targets, scored)
    total = dict(persons=len(scored), epe_before=epe(kpts[scored], t),
                 epe_after=epe(pooled, t), **moved_outcomes(kpts[scored], pooled, t),
                 **{key: float(np.average([f[key] for f in folds], weights=weights))
                    for key in ('before', 'after')})
    final = MODELS.build(copy.deepcopy(refiner_cfg))
    final.load_state_dict(outputs[-1])
    final.eval()
    final.rule = rules[choice.index] if choice.keep else RefinementRule.keep_input()
    chosen = rule_label(None if choice.index == IDENTITY else rules[choice.index])
    report = FitReport(metric, len(matched), len(poses), folds, choice.promise, choice.spread,
                       choice.keep, final.rule, chosen, init_path, out, total, hold_out,
                       [dict(rule=rule_label(r), mean_gain=float(gains[:, i].mean()),
                             worst_method=float(worst[:, i].min()) if worst is not None
                             else float(gains[:, i].min())) for i, r in enumerate(rules)])
    if out is not None:
        fit_meta = dict(metric=metric, folds=len(splits), hold_out=hold_out, seed=seed,
                        iters=iters, promise=choice.promise, spread=choice.spread,
                        keep=choice.keep, chosen=report.chosen,
                        fold_gains=choice.fold_gains.tolist(),
                        before=total['before'], after=total['after'])
        save_refiner(final, refiner_cfg, out, trained_by=command or 'mmport.apis.fit_refiner',
                     training_data=f'{osp.basename(results)}: {len(matched)} persons matched '
                     f'to {osp.basename(ann)}', init=_recorded_path(init_path), fit=fit_meta)
    return report


def _recorded_path(path: str) -> str:
    """A shipped checkpoint's path as the repository names it (a file fitted
    on one machine names no directory of it), others as given."""
    shipped = osp.join(CHECKPOINT_DIR, '')
    return path.replace(shipped, 'checkpoints/') if shipped in path else path


def _cv_splits(results: str, poses: PoseResults, match, matched: np.ndarray, num_folds: int,
               seed: int, hold_out: str) -> tuple:
    """Per fold, the training and the scored persons (indices into
    ``matched``); the method of each matched person (None unless methods
    are held out)."""
    images = [str(match.image_ids[i]) for i in matched]
    if hold_out == 'method':
        methods = [(poses.extra[i] if poses.extra else {}).get('method') for i in matched]
        if None in methods:
            raise InputFileError(results, 'has records without a "method" field; holding '
                                 'methods out needs every record to name its method')
        methods = [str(m) for m in methods]
        if len(set(methods)) < 2:
            raise InputFileError(results, f'has the predictions of {len(set(methods))} '
                                 'method; holding methods out needs two or more')
        return crossed_folds(images, methods, num_folds, seed), np.array(methods)
    if len(set(images)) < num_folds:
        raise InputFileError(results, f'has matched persons on {len(set(images))} images; '
                             f'{num_folds}-fold cross-validation needs more')
    fold = grouped_folds(images, num_folds, seed)
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f))
            for f in range(num_folds)], None


def _worst_method_gains(fold_outputs, methods, kpts, inst_scores, targets: FitTargets,
                        metric: str) -> np.ndarray:
    """(R,) per rule, the lowest gain of the methods ``methods`` (S,) names
    among a fold's S scored persons."""
    groups = [np.flatnonzero(methods == m) for m in np.unique(methods)]
    parts = [(g, subset(targets, g)) for g in groups]
    before = [metric_value(kpts[g], t, inst_scores[g]) for g, t in parts]
    return np.array([min(gain(b, metric_value(refined[g], t, scores[g]), metric)
                         for b, (g, t) in zip(before, parts))
                     for refined, scores in fold_outputs])


def _row(init, refined, refined_scores, inst_scores, targets: FitTargets, **extra) -> dict:
    moved = moved_outcomes(init, refined, targets)
    return dict(extra, persons=len(init), before=metric_value(init, targets, inst_scores),
                after=metric_value(refined, targets, refined_scores),
                epe_before=epe(init, targets), epe_after=epe(refined, targets), **moved)


def _fold_rows(choice: RuleChoice, outputs, splits, kpts, inst_scores, targets, rules):
    """Per fold, the scores of the rule chosen on the other folds; the
    scored persons (S,) of all folds and their refined keypoints (S, K, 2)
    under those rules."""
    rows, pooled = [], []
    for f, r in enumerate(choice.fold_rules):
        te = splits[f][1]
        refined, scores = ((kpts[te], inst_scores[te]) if r == IDENTITY else outputs[f][r])
        pooled.append(refined)
        rows.append(_row(kpts[te], refined, scores, inst_scores[te], subset(targets, te),
                         rule=rule_label(None if r == IDENTITY else rules[r]),
                         gain=float(choice.fold_gains[f])))
    return rows, np.concatenate([te for _, te in splits]), np.concatenate(pooled)


def _run_jobs(jobs: List[_FitJob], workers: int, progress: bool) -> list:
    """Run the trainings, ``workers`` at a time, with a progress bar (of
    steps with one worker, of trainings with several)."""
    from mmengine.utils import ProgressBar
    if workers <= 1:
        bar = ProgressBar(sum(j.settings.iters for j in jobs) // 50) if progress else None
        tick = (lambda n: bar.update()) if bar else None  # noqa: E731
        threads = torch.get_num_threads()
        try:
            out = [_run_job(j, tick) for j in jobs]
        finally:
            torch.set_num_threads(threads)
        if bar:
            print(flush=True)
        return out
    ctx = mp.get_context('spawn')
    bar = ProgressBar(len(jobs)) if progress else None
    results = [None] * len(jobs)
    # library warnings (deprecations, metainfo path fallbacks) were shown
    # once by this process; each worker would repeat them, from its imports on
    env = os.environ.get('PYTHONWARNINGS')
    os.environ['PYTHONWARNINGS'] = 'ignore'
    try:
        with ctx.Pool(min(workers, len(jobs))) as pool:
            for i, res in pool.imap_unordered(_indexed_run, list(enumerate(jobs))):
                results[i] = res
                if bar:
                    bar.update()
    finally:
        if env is None:
            os.environ.pop('PYTHONWARNINGS')
        else:
            os.environ['PYTHONWARNINGS'] = env
    if bar:
        print(flush=True)
    return results


def _indexed_run(item):
    i, job = item
    return i, _run_job(job)
