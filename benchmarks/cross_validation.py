"""Grouped K-fold cross-validation of a keypoints-only refiner config through
mmengine Runners, with the confidence threshold chosen on training folds.

The console shows one line per training and per tested fold; each Runner's
full log (config, environment, hooks, iterations) stays in its work dir.
"""
import contextlib
import copy
import logging
import multiprocessing as mp
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from mmport.apis import prepare_runner_cfg
from mmport.evaluation import pose_errors
from mmport.utils import safe_load_pickle


class _OncePerProcess(logging.Filter):
    """Lets each distinct message through once per process: the deprecation
    warnings every Runner repeats reach the console once."""
    seen: set = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


class QuietRunner(Runner):
    """An mmengine Runner whose console shows warnings and errors only, each
    distinct one once per process; its log file
    (``<work_dir>/<timestamp>/<timestamp>.log``) keeps every message at the
    config's ``log_level`` (config, environment, hooks, iterations)."""

    def build_logger(self, log_level='INFO', log_file=None, **kwargs) -> MMLogger:
        logger = super().build_logger(log_level, log_file, **kwargs)
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler):  # the console's
                handler.setLevel(max(handler.level, logging.WARNING))
                if not any(isinstance(f, _OncePerProcess) for f in handler.filters):
                    handler.addFilter(_OncePerProcess())
        return logger


@contextlib.contextmanager
def printed_to_file(work_dir: str, stdout: bool = True):
    """Send what libraries print while a Runner is built or runs to
    ``<work_dir>/printed.log`` instead of the console: Python warnings
    (stderr; MMPose's visualizer resets the warning filters, so every Runner
    repeats them) and, with ``stdout``, prints (xtcocotools' 'loading
    annotations', mmengine's 'Loads checkpoint'). Build Runners with
    ``stdout=False``: their logger's console handler takes ``sys.stdout``
    when it is created."""
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, 'printed.log'), 'a') as f, contextlib.redirect_stderr(f), \
            (contextlib.redirect_stdout(f) if stdout else contextlib.nullcontext()):
        yield


def build_quiet_runner(cfg: Config) -> 'QuietRunner':
    """``QuietRunner.from_cfg(cfg)``, its warnings to ``cfg.work_dir``."""
    with printed_to_file(cfg.work_dir, stdout=False):
        return QuietRunner.from_cfg(cfg)


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
        sweep (dict): Threshold -> pooled refined keypoints (N, K, 2) and
            replaced-joint mask (N, K) of the held-out instances, in the
            order of ``samples`` (filled when ``sweep_thresholds`` is given).
    """
    samples: List[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    thresholds: List[float] = field(default_factory=list)
    threshold_epe: List[Dict[float, float]] = field(default_factory=list)
    params: int = 0
    metainfo: dict = field(default_factory=dict)
    sweep: Dict[float, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def experiment_setup(config: str, cfg_options: Optional[dict], work_dir: str,
                     log_name: str) -> Tuple[Config, MMLogger]:
    """What a cross-validation tool does first: read ``config``, merge the
    ``--cfg-options`` overrides, create ``work_dir`` and open an mmengine
    logger that also writes ``<work_dir>/<log_name>.log``."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    os.makedirs(work_dir, exist_ok=True)
    logger = MMLogger.get_instance(log_name, log_file=osp.join(work_dir, f'{log_name}.log'))
    return cfg, logger


def log_to_file(logger: MMLogger, message: str) -> None:
    """Write ``message`` to ``logger``'s log files only: for what a tool
    also prints to the console itself."""
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, None, None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def fold_config(cfg: Config, work_dir: str, train_folds: Sequence[int],
                test_folds: Sequence[int], seed: int, num_folds: int,
                train_seed: Optional[int] = None) -> Config:
    """Config that trains on ``train_folds`` and tests (and dumps) on
    ``test_folds``; ``seed`` splits the folds and, unless ``train_seed`` is
    given, seeds the training."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed if train_seed is None else train_seed)
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


def fold_splits(num_folds: int, select_thresholds: bool) -> List[dict]:
    """The trainings of a K-fold cross-validation, final ones first.

    For each fold f, a ``'final'`` training on all other folds that is
    tested on f; with ``select_thresholds`` also a ``'select'`` training on
    all folds but f and f + 1 (mod K) that scores fold f + 1: every fold
    validates once, so no single fold decides the thresholds of the others,
    and fold f is never seen.

    Returns:
        list[dict]: ``kind``, ``fold``, ``train`` (folds), ``test`` (folds).
    """
    if num_folds < (3 if select_thresholds else 2):
        raise ValueError(f'num_folds={num_folds} is too few: cross-validation needs at '
                         'least 2 folds, choosing thresholds on training folds at least 3')
    splits = [dict(kind='final', fold=f, train=[g for g in range(num_folds) if g != f],
                   test=[f]) for f in range(num_folds)]
    for f in range(num_folds if select_thresholds else 0):
        inner = (f + 1) % num_folds
        splits.append(dict(kind='select', fold=f,
                           train=[g for g in range(num_folds) if g not in (f, inner)],
                           test=[inner]))
    return splits


def stack_fields(samples: List[dict], *fields: str) -> List[np.ndarray]:
    """Concatenate ``group.key`` fields (e.g. ``pred_instances.keypoints``)
    of dumped data samples over all samples."""
    out = []
    for name in fields:
        group, key = name.split('.')
        out.append(np.concatenate([np.asarray(s[group][key]) for s in samples]))
    return out


def refine_samples(model, samples: List[dict],
                   thresholds: Sequence[float]) -> Dict[float, Tuple[np.ndarray, np.ndarray]]:
    """Refine the initial predictions of dumped data samples at each threshold.

    Returns:
        dict: threshold -> refined keypoints (N, K, 2) and the bool mask
        (N, K) of the replaced joints, N instances of all samples.
    """
    init, scores, bboxes = (torch.from_numpy(a).float() for a in stack_fields(
        samples, 'pred_instances.keypoints_init', 'pred_instances.keypoint_scores_init',
        'pred_instances.bboxes'))
    model.eval()
    out = {}
    for thr in thresholds:
        refined, replaced = model.refine(init, scores, bboxes, score_thr=thr)
        out[thr] = (refined.numpy(), replaced.numpy())
    return out


def choose_threshold(model, samples: List[dict],
                     candidates: Sequence[float]) -> Dict[float, float]:
    """EPE of held-out samples refined at each candidate threshold."""
    gt, vis = stack_fields(samples, 'gt_instances.keypoints', 'gt_instances.keypoints_visible')
    return {thr: pose_errors(refined, gt, vis > 0)['EPE']
            for thr, (refined, _) in refine_samples(model, samples, candidates).items()}


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
    runner = build_quiet_runner(job['cfg'])
    start = time.perf_counter()
    with printed_to_file(job['cfg'].work_dir):
        runner.train()
    out = dict(kind=job['kind'], fold=job['fold'], train_seconds=time.perf_counter() - start)
    if job['kind'] == 'select':
        with printed_to_file(job['cfg'].work_dir):
            runner.test()
        samples = safe_load_pickle(osp.join(job['cfg'].work_dir, 'predictions.pkl'))
        out['epe'] = choose_threshold(runner.model, samples, job['thr_candidates'])
    return out


def grouped_cross_validation(cfg: Config, work_dir: str, num_folds: int = 5, seed: int = 0,
                             thr_candidates: Optional[Sequence[float]] = None,
                             selection_schedule: float = 0.5, tolerance: float = 0.01,
                             workers: int = 1,
                             sweep_thresholds: Optional[Sequence[float]] = None,
                             train_seed: Optional[int] = None,
                             logger: Optional[MMLogger] = None) -> CrossValidationResult:
    """Run the grouped K-fold cross-validation of ``cfg``.

    For each fold f: if ``thr_candidates`` is given, a model trained on the
    training folds other than fold f + 1 (mod K) scores fold f + 1 at each
    threshold (never fold f; every fold validates once); the threshold is
    the lowest candidate whose EPE is within ``tolerance`` (relative) of the
    best: of nearly equal choices, the one that changes fewest of the
    detector's joints. This selection model trains for
    ``selection_schedule`` times the config's schedule (it only ranks
    thresholds). The model trained on all training folds then refines fold
    f with that threshold.

    The trainings are independent, so ``workers`` of them run at once in
    separate processes with ``cpu_count // workers`` torch threads each (the
    models are small: two single-thread processes beat one two-thread
    process). Every training is seeded on its own; only float rounding may
    differ with the thread count.

    The Runners log to their work dirs only (warnings and errors also to
    the console); ``logger`` gets one line per training and per fold.

    ``sweep_thresholds`` additionally refines each held-out fold at every
    one of those thresholds with that fold's final model (``result.sweep``):
    design comparisons at fixed thresholds, without threshold selection.
    ``train_seed`` seeds the trainings apart from the fold split (``seed``):
    the same folds, another draw of initialisation and augmentation.
    """
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    jobs = []
    for split in fold_splits(num_folds, bool(thr_candidates)):
        fold = split['fold']
        work = osp.join(work_dir, f'fold{fold}')
        if split['kind'] == 'select':
            work = osp.join(work, 'threshold_selection')
        job_cfg = fold_config(cfg, work, split['train'], split['test'], seed, num_folds,
                              train_seed)
        job = dict(kind=split['kind'], fold=fold, cfg=job_cfg, threads=threads)
        if split['kind'] == 'select':
            shorten_schedule(job_cfg, selection_schedule)
            job['thr_candidates'] = list(thr_candidates)
        jobs.append(job)
    def report(n: int, out: dict) -> None:
        if logger is not None:
            what = 'threshold selection' if out['kind'] == 'select' else 'final model'
            logger.info(f'training {n}/{len(jobs)} done: fold {out["fold"]} {what}, '
                        f'{out["train_seconds"]:.0f} s')

    if workers > 1:  # longest jobs (final) first
        ctx = mp.get_context('fork' if 'fork' in mp.get_all_start_methods() else 'spawn')
        outs = []
        with ctx.Pool(workers) as pool:
            for out in pool.imap_unordered(_train_job, jobs, chunksize=1):
                outs.append(out)
                report(len(outs), out)
    else:
        outs = []
        for job in jobs:
            outs.append(_train_job(job))
            report(len(outs), outs[-1])

    result = CrossValidationResult()
    fold_sweeps = []  # per fold: threshold -> (refined, replaced)
    result.train_seconds = sum(o['train_seconds'] for o in outs)
    epe = {o['fold']: o['epe'] for o in outs if o['kind'] == 'select'}
    for fold in range(num_folds):
        thr = cfg.model.test_cfg.rule.score_thr
        if fold in epe:
            thr = pick_threshold(epe[fold], tolerance)
            result.threshold_epe.append(epe[fold])
            if logger is not None:
                logger.info(f'fold {fold}: threshold {thr} chosen on a training fold (EPE by '
                            'threshold: ' + ', '.join(f'{t}: {e:.3f}'
                                                      for t, e in epe[fold].items()) + ')')
        test_cfg = copy.deepcopy(jobs[fold]['cfg'])
        test_cfg.model.test_cfg.rule.score_thr = thr
        test_cfg.load_from = osp.join(test_cfg.work_dir, f'iter_{test_cfg.train_cfg.max_iters}.pth')
        runner = build_quiet_runner(test_cfg)
        with printed_to_file(test_cfg.work_dir):
            runner.test()
        samples = safe_load_pickle(osp.join(test_cfg.work_dir, 'predictions.pkl'))
        result.samples.extend(samples)
        if logger is not None:
            logger.info(f'fold {fold}: {len(samples)} held-out samples refined at threshold '
                        f'{thr} (log: {test_cfg.work_dir})')
        if sweep_thresholds:
            fold_sweeps.append(refine_samples(runner.model, samples, sweep_thresholds))
        result.thresholds.append(thr)
        result.params = sum(p.numel() for p in runner.model.parameters())
        result.metainfo = runner.test_dataloader.dataset.metainfo
    for thr in sweep_thresholds or ():  # pooled in the order of result.samples
        result.sweep[thr] = (np.concatenate([sweep[thr][0] for sweep in fold_sweeps]),
                             np.concatenate([sweep[thr][1] for sweep in fold_sweeps]))
    return result
