"""Grouped K-fold cross-validation of a keypoints-only refiner config through
mmengine Runners, with the confidence threshold chosen on training folds."""
import copy
import multiprocessing as mp
import os
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


def pick_threshold(epe: Dict[float, float], tolerance: float = 0.01) -> float:
    """The lowest threshold whose EPE is within ``tolerance`` (relative) of
    the lowest EPE."""
    best = min(epe.values())
    return min(t for t, e in epe.items() if e <= best * (1 + tolerance))


def _train_job(job: dict) -> dict:
    """One training of the cross-validation, in its own process.

    ``select`` jobs train on three training folds, then score the fourth at
    each candidate threshold; ``final`` jobs train on all four training
    folds and save the checkpoint that is tested afterwards.
    """
    torch.set_num_threads(job['threads'])
    runner = Runner.from_cfg(job['cfg'])
    start = time.perf_counter()
    runner.train()
    out = dict(kind=job['kind'], fold=job['fold'], train_seconds=time.perf_counter() - start)
    if job['kind'] == 'select':
        runner.test()
        samples = safe_load_pickle(osp.join(job['cfg'].work_dir, 'predictions.pkl'))
        out['epe'] = choose_threshold(runner.model, samples, job['thr_candidates'])
    return out


def grouped_cross_validation(cfg: Config, work_dir: str, num_folds: int = 5, seed: int = 0,
                             thr_candidates: Optional[Sequence[float]] = None,
                             selection_schedule: float = 0.5, tolerance: float = 0.01,
                             workers: int = 1,
                             logger: Optional[MMLogger] = None) -> CrossValidationResult:
    """Run the grouped K-fold cross-validation of ``cfg``.

    For each fold f: if ``thr_candidates`` is given, a model trained on the
    other training folds but one scores that one at each threshold (never
    fold f); the threshold is the lowest candidate whose EPE is within
    ``tolerance`` (relative) of the best: of nearly equal choices, the one
    that changes fewest of the detector's joints. This selection model
    trains for ``selection_schedule`` times the config's schedule (it only
    ranks thresholds). The model trained on all training folds then refines
    fold f with that threshold.

    The trainings are independent, so ``workers`` of them run at once in
    separate processes with ``cpu_count // workers`` torch threads each (the
    models are small: two single-thread processes beat one two-thread
    process). Every training is seeded on its own; only float rounding may
    differ with the thread count.
    """
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    jobs = []
    for fold in range(num_folds):
        train_folds = [f for f in range(num_folds) if f != fold]
        final = fold_config(cfg, osp.join(work_dir, f'fold{fold}'), train_folds, [fold], seed,
                            num_folds)
        jobs.append(dict(kind='final', fold=fold, cfg=final, threads=threads))
    for fold in range(num_folds if thr_candidates else 0):
        train_folds = [f for f in range(num_folds) if f != fold]
        select = fold_config(cfg, osp.join(work_dir, f'fold{fold}', 'threshold_selection'),
                             train_folds[1:], [train_folds[0]], seed, num_folds)
        shorten_schedule(select, selection_schedule)
        jobs.append(dict(kind='select', fold=fold, cfg=select, threads=threads,
                         thr_candidates=list(thr_candidates)))
    if workers > 1:  # longest jobs (final) first
        ctx = mp.get_context('fork' if 'fork' in mp.get_all_start_methods() else 'spawn')
        with ctx.Pool(workers) as pool:
            outs = pool.map(_train_job, jobs, chunksize=1)
    else:
        outs = [_train_job(job) for job in jobs]

    result = CrossValidationResult()
    result.train_seconds = sum(o['train_seconds'] for o in outs)
    epe = {o['fold']: o['epe'] for o in outs if o['kind'] == 'select'}
    for fold in range(num_folds):
        thr = cfg.model.test_cfg.score_thr
        if fold in epe:
            thr = pick_threshold(epe[fold], tolerance)
            result.threshold_epe.append(epe[fold])
            if logger is not None:
                logger.info(f'fold {fold}: threshold {thr} chosen on a training fold (EPE by '
                            'threshold: ' + ', '.join(f'{t}: {e:.3f}'
                                                      for t, e in epe[fold].items()) + ')')
        test_cfg = copy.deepcopy(jobs[fold]['cfg'])
        test_cfg.model.test_cfg.score_thr = thr
        test_cfg.load_from = osp.join(test_cfg.work_dir, f'iter_{test_cfg.train_cfg.max_iters}.pth')
        runner = Runner.from_cfg(test_cfg)
        runner.test()
        result.samples.extend(safe_load_pickle(osp.join(test_cfg.work_dir, 'predictions.pkl')))
        result.thresholds.append(thr)
        result.params = sum(p.numel() for p in runner.model.parameters())
        result.metainfo = runner.test_dataloader.dataset.metainfo
    return result
