"""Config adjustments applied by mmport's tools before building a Runner."""
import torch
from mmengine.config import Config

# whether _init_cpu_process_group created this process's group
_CREATED_GROUP = False


def prepare_runner_cfg(cfg: Config) -> Config:
    """Make an MMPose config run where it is launched.

    MMPose's default runtime asks for the NCCL backend, which exists only
    with GPUs: on a machine without one, distributed runs use gloo (an
    explicit ``--cfg-options env_cfg.dist_cfg.backend=...`` is kept unless
    it is NCCL on a GPU-less machine), and torchrun's process group is
    joined here (see :func:`_init_cpu_process_group`).

    Args:
        cfg (Config): The merged config.

    Returns:
        Config: The same config, adjusted in place.
    """
    # (Config.setdefault returns a copy: assign the dicts back)
    env_cfg = dict(cfg.get('env_cfg') or {})
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    if not torch.cuda.is_available() and dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg
    if cfg.get('launcher', 'none') != 'none' and not torch.cuda.is_available():
        # DDP of a CPU module takes no device ids (mmengine passes LOCAL_RANK)
        wrapper = dict(type='MMDistributedDataParallel', **(cfg.get('model_wrapper_cfg') or {}))
        wrapper.setdefault('device_ids', None)
        cfg.model_wrapper_cfg = wrapper
        if cfg.launcher == 'pytorch':
            _init_cpu_process_group(dist_cfg['backend'])
    return cfg


def _init_cpu_process_group(backend: str) -> None:
    """Join the torchrun process group on a machine without GPUs.

    mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` for the
    pytorch launcher unconditionally, which fails without a GPU; the Runner
    skips ``init_dist`` when a group already exists.
    """
    global _CREATED_GROUP
    import torch.distributed as dist
    if dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method='env://')
        _CREATED_GROUP = True


def finish_cpu_distributed_run() -> None:
    """End a successful run in a process group that mmport created.

    Seen here: a rank that had finished (checkpoints and metrics written)
    sporadically aborted during interpreter shutdown ("terminate called
    without an active exception", SIGABRT) with the gloo group still alive,
    failing the whole torchrun job. Not root-caused; the ranks therefore meet
    at a barrier, destroy the group, flush logs and leave without the
    interpreter's teardown. Called only after success, so failures keep
    their exit codes. No-op when mmport did not create the group.
    """
    if not _CREATED_GROUP:
        return
    import logging
    import os
    import sys

    import torch.distributed as dist
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
