"""Config adjustments applied by mmport's tools before building a Runner."""
import torch
from mmengine.config import Config


def prepare_runner_cfg(cfg: Config) -> Config:
    """Make an MMPose config run where it is launched.

    MMPose's default runtime asks for the NCCL backend, which exists only
    with GPUs: on a machine without one, distributed runs use gloo (an
    explicit ``--cfg-options env_cfg.dist_cfg.backend=...`` is kept unless
    it is NCCL on a GPU-less machine).

    Args:
        cfg (Config): The merged config.

    Returns:
        Config: The same config, adjusted in place.
    """
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if not torch.cuda.is_available() and dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    return cfg
