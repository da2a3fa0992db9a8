"""Grouped K-fold cross-validation of a keypoints-only refiner config through
mmengine Runners, with the confidence threshold chosen on training folds."""
import copy
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from mmport.evaluation import pose_errors
from mmport.utils import safe_load_pickle
from .runner_setup import prepare_runner_cfg


@dataclass
class CrossValidationResult:
    """Pooled held-out predictions of all folds.

    Attributes:
        samples (list[dict]): Dumped data samples (``pred_instances``,
            ``gt_instances``, metainfo) of every held-out instance.
        train_seconds (float): Time spent in ``runner.train()``, all folds.
        thresholds (list[float]): Confidence threshold used per fold.
        threshold_epe (list[dict]): Per fold, EPE by candidate threshold on
            the inner held-out training fold.
        params (int): Refiner parameters.
        metainfo (dict): Dataset metainfo.
        runners (list): The runner of each fold's final model.
    """
    samples: List[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    thresholds: List[float] = field(default_factory=list)
    threshold_epe: List[Dict[float, float]] = field(default_factory=list)
    params: int = 0
    metainfo: dict = field(default_factory=dict)


def fold_config(cfg: Config, work_dir: str, train_folds: Sequence[int],
                test_folds: Sequence[int], seed: int, num_folds: int) -> Config:
    """Config that trains on ``train_folds`` and tests (and dumps) on ``test_folds``."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed)
    cfg.train_dataloader.dataset.folds = list(train_folds)
    cfg.test_dataloader.dataset.folds = list(test_folds)
    for name in ('train_dataloader', 'test_dataloader'):
        cfg[name].dataset.num_folds = num_folds
        cfg[name].dataset.seed = seed
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=cfg.train_cfg.max_iters)
    metric = copy.deepcopy(cfg.test_evaluator)
    metric = metric[0] if isinstance(metric, (list, tuple)) else metric
    cfg.test_evaluator = [
        metric, dict(type='DumpResults', out_file_path=osp.join(work_dir, 'predictions.pkl'))]
    return prepare_runner_cfg(cfg)


def shorten_schedule(cfg: Config, ratio: float) -> Config:
    """Scale an iteration-based schedule (``max_iters`` and every scheduler's
    ``begin``/``end``/``T_max``) by ``ratio``, keeping its shape."""
    cfg.train_cfg.max_iters = max(1, int(cfg.train_cfg.max_iters * ratio))
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1
    for sched in cfg.get('param_scheduler', []):
        for key in ('begin', 'end', 'T_max'):
            if key in sched:
                sched[key] = max(1, int(sched[key] * ratio)) if sched[key] else 0
    cfg.default_hooks.checkpoint.interval = cfg.train_cfg.max_iters
    return cfg


def train_and_test(cfg: Config):
    """Train and test one config; returns (runner, train seconds, dumped samples)."""
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    runner.test()
    return runner, seconds, safe_load_pickle(osp.join(cfg.work_dir, 'predictions.pkl'))


def stack_fields(samples: List[dict], *fields: str) -> List[np.ndarray]:
    """Concatenate ``group.key`` fields (e.g. ``pred_instances.keypoints``)
    of dumped data samples over all samples."""
    out = []
    for name in fields:
        group, key = name.split('.')
        out.append(np.concatenate([np.asarray(s[group][key]) for s in samples]))
    return out


def choose_threshold(model, samples: List[dict],
                     candidates: Sequence[float]) -> Dict[float, float]:
    """EPE of held-out samples refined at each candidate threshold."""
    init, scores, bboxes, gt, vis = stack_fields(
        samples, 'pred_instances.keypoints_init', 'pred_instances.keypoint_scores_init',
        'pred_instances.bboxes', 'gt_instances.keypoints', 'gt_instances.keypoints_visible')
    model.eval()
    epe = {}
    for thr in candidates:
        refined, _ = model.refine(torch.from_numpy(init).float(),
                                  torch.from_numpy(scores).float(),
                                  torch.from_numpy(bboxes).float(), score_thr=thr)
        epe[thr] = pose_errors(refined.numpy(), gt, vis > 0)['EPE']
    return epe


def grouped_cross_validation(cfg: Config, work_dir: str, num_folds: int = 5, seed: int = 0,
                             thr_candidates: Optional[Sequence[float]] = None,
                             selection_schedule: float = 0.5,
                             logger: Optional[MMLogger] = None) -> CrossValidationResult:
    """Run the grouped K-fold cross-validation of ``cfg``.

    For each fold f: if ``thr_candidates`` is given, a model trained on the
    other training folds picks the threshold with the lowest EPE on one
    training fold (never on fold f); then the model trained on all training
    folds refines fold f with it. The threshold-selection model trains for
    ``selection_schedule`` times the config's schedule (it only ranks
    thresholds).
    """
    result = CrossValidationResult()
    for fold in range(num_folds):
        train_folds = [f for f in range(num_folds) if f != fold]
        fold_dir = osp.join(work_dir, f'fold{fold}')
        thr = cfg.model.test_cfg.score_thr
        if thr_candidates:
            inner_val = train_folds[0]
            inner_cfg = fold_config(cfg, osp.join(fold_dir, 'threshold_selection'),
                                    train_folds[1:], [inner_val], seed, num_folds)
            shorten_schedule(inner_cfg, selection_schedule)
            runner, seconds, inner = train_and_test(inner_cfg)
            result.train_seconds += seconds
            epe = choose_threshold(runner.model, inner, thr_candidates)
            thr = min(epe, key=epe.get)
            result.threshold_epe.append(epe)
            if logger is not None:
                logger.info(f'fold {fold}: threshold {thr} chosen on training fold {inner_val} '
                            '(EPE by threshold: '
                            + ', '.join(f'{t}: {e:.3f}' for t, e in epe.items()) + ')')
        outer_cfg = fold_config(cfg, fold_dir, train_folds, [fold], seed, num_folds)
        outer_cfg.model.test_cfg.score_thr = thr
        runner, seconds, samples = train_and_test(outer_cfg)
        result.train_seconds += seconds
        result.thresholds.append(thr)
        result.samples.extend(samples)
        result.params = sum(p.numel() for p in runner.model.parameters())
        result.metainfo = runner.test_dataloader.dataset.metainfo
    return result
