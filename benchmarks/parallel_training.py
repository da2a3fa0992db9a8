"""Train independent score-free refiners side by side, one process each.

A score-free refiner trains on one thread (the benchmarks set
``torch.set_num_threads(1)``: the small networks gain little from more),
and a benchmark's refiners are independent of each other (the inner
refiners that choose the gate margins and the final ones that are scored),
so on a machine with several cores they train in parallel processes. Each
job seeds its initial weights and its training draw itself, so the trained
refiners do not depend on the number of workers nor on the order in which
the jobs run.
"""
import contextlib
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch

from benchmarks.score_free_training import (PoseSource, SamplerConfig, ScoreFreeSampler,
                                            build_refiner, train_score_free)


@dataclass
class TrainingJob:
    """One score-free refiner to train.

    Attributes:
        label (str): Prefix of its log lines, e.g. ``'fold 2 inner'``.
        cfg (dict): The refiner config (``PORTRefiner``).
        gt_poses (PoseSource): Ground-truth poses that receive transplanted
            or synthetic errors (:class:`ScoreFreeSampler`).
        real (PoseSource, optional): Real predictions with their ground
            truth.
        donors (np.ndarray, optional): Error vectors (M, K, 2) to
            transplant.
        seed (int): Seeds the initial weights and the training draw.
        iters (int): Training iterations.
        batch_size (int): Poses per iteration.
        sampler_cfg (SamplerConfig): The mix of training inputs.
    """
    label: str
    cfg: dict
    gt_poses: PoseSource
    real: Optional[PoseSource]
    donors: Optional[np.ndarray]
    seed: int
    iters: int
    batch_size: int
    sampler_cfg: SamplerConfig = field(default_factory=SamplerConfig)


@dataclass(frozen=True)
class ProgressLog:
    """Prints progress lines stamped with the seconds since ``origin``
    (``time.time()``, default: now). It pickles as that one number, so
    worker processes print on the caller's clock."""
    origin: float = field(default_factory=time.time)

    def __call__(self, msg: str) -> None:
        print(f'[{self.elapsed():6.0f} s] {msg}', flush=True)

    def elapsed(self) -> float:
        """Seconds since ``origin``."""
        return time.time() - self.origin


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (
        os.cpu_count() or 1)


# warnings that every spawned worker would print again on importing the
# benchmark (mmengine's use of pkg_resources, MMPose's fallback to its own
# copy of a dataset's metainfo file); this process has printed them once
_REPEATED_WARNINGS = ('ignore:pkg_resources is deprecated:UserWarning',
                      'ignore:The metainfo config file:UserWarning')


@contextlib.contextmanager
def _worker_warnings_quiet():
    """While open, processes started from this one ignore
    ``_REPEATED_WARNINGS`` (``PYTHONWARNINGS``, which they read at start-up;
    a ``PYTHONWARNINGS`` of the caller's own is kept and takes precedence)."""
    old = os.environ.get('PYTHONWARNINGS')
    os.environ['PYTHONWARNINGS'] = ','.join(_REPEATED_WARNINGS + ((old,) if old else ()))
    try:
        yield
    finally:
        if old is None:
            del os.environ['PYTHONWARNINGS']
        else:
            os.environ['PYTHONWARNINGS'] = old


def run_job(job: TrainingJob, log: Optional[ProgressLog] = None) -> Tuple[dict, dict]:
    """Train one refiner on one thread.

    Args:
        job (TrainingJob): What to train.
        log (ProgressLog, optional): Prints the training's progress lines,
            prefixed by the job's label (``None``: none).

    Returns:
        tuple: The trained ``state_dict`` and the info of
        :func:`train_score_free` (``seconds``, ``loss``).
    """
    torch.set_num_threads(1)
    # the initial weights come from the job's seed, not from whatever the
    # process drew before
    torch.manual_seed(job.seed)
    model = build_refiner(job.cfg)
    sampler = ScoreFreeSampler(job.gt_poses, job.real, model.metainfo['flip_indices'],
                               job.donors, job.sampler_cfg)
    info = train_score_free(model, sampler, job.iters, job.batch_size, seed=job.seed,
                            log=None if log is None else lambda msg: log(f'{job.label}: {msg}'))
    return model.state_dict(), info


def train_refiners(jobs: List[TrainingJob], workers: int = 1,
                   log: Optional[ProgressLog] = None) -> List[Tuple[object, dict]]:
    """Train ``jobs`` in ``workers`` processes (1: in this one).

    Args:
        jobs (list[TrainingJob]): Independent trainings.
        workers (int): Processes (at most one per job).
        log (ProgressLog, optional): Prints the jobs' progress lines and
            one line per finished job.

    Returns:
        list[tuple]: Per job, in order, the trained refiner (eval mode) and
        its training info.
    """
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        states = [run_job(job, log) for job in jobs]
    else:
        # spawn, not fork: the workers start clean, whatever torch's thread
        # pools did in this process before (a test runner's, for instance)
        ctx = multiprocessing.get_context('spawn')
        with _worker_warnings_quiet(), ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            states = list(pool.map(run_job, jobs, [log] * len(jobs)))
    out = []
    for job, (state, info) in zip(jobs, states):
        model = build_refiner(job.cfg)
        model.load_state_dict(state)
        model.eval()
        out.append((model, info))
        if log is not None:
            log(f'{job.label}: trained in {info["seconds"]:.0f} s (loss {info["loss"]:.4f})')
    return out
