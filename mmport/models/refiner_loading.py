"""Build a trained PORT refiner from its checkpoint alone, and write one."""
import os
import os.path as osp
import time
from typing import Union

import torch

from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict
from mmpose.registry import MODELS

from mmport.utils import InputFileError


# models that hold a PORT refiner as their ``refiner`` member
REFINED_ESTIMATORS = ('RefinedTopdownPoseEstimator', 'RefinedBottomupPoseEstimator')


def _read_checkpoint(path: str) -> dict:
    try:
        return _load_checkpoint(path, map_location='cpu')
    except FileNotFoundError:
        raise InputFileError(path, 'does not exist') from None
    except Exception as err:  # torch/zip/unpickling errors of a broken file
        raise InputFileError(path, f'is not a readable checkpoint ({err})') from None


def refiner_config_from_model_config(model: dict, path: str) -> dict:
    """The ``PORTRefiner`` config within a model config: the model itself,
    or the ``refiner`` of a refined estimator (read from its
    ``refiner_checkpoint`` when the config names none)."""
    model = dict(model)
    if model.get('type') in REFINED_ESTIMATORS:
        if model.get('refiner'):
            return dict(model['refiner'])
        if model.get('refiner_checkpoint'):
            ref = model['refiner_checkpoint']
            return refiner_config_from_checkpoint(_read_checkpoint(ref), ref)
        raise InputFileError(path, 'names neither model.refiner nor model.refiner_checkpoint')
    if model.get('type') == 'PORTRefiner':
        return model
    raise InputFileError(path, f'describes a {model.get("type")}, not a PORT refiner')


def refiner_config_from_checkpoint(checkpoint: dict, path: str) -> dict:
    """The ``PORTRefiner`` config stored in a runner checkpoint's metadata."""
    text = checkpoint.get('meta', {}).get('cfg') if isinstance(checkpoint, dict) else None
    if not text:
        raise InputFileError(path, 'holds no config (meta.cfg); pass the refiner config too')
    model = Config.fromstring(text, '.py').model
    return refiner_config_from_model_config(model.to_dict(), path)


def load_refiner(checkpoint: str, config: Union[str, dict, None] = None, device: str = 'cpu'):
    """Load a ``PORTRefiner`` for inference.

    Args:
        checkpoint (str): A checkpoint saved by training a ``PORTRefiner``
            (or a ``RefinedTopdownPoseEstimator``) with mmengine; the keys of
            a refined estimator's are read under ``refiner.``.
        config (str | dict, optional): Config file whose ``model`` (or
            ``model.refiner``) builds the refiner, or the refiner's model
            config itself; by default the config saved in the checkpoint.
        device (str): Where to put the model.

    Returns:
        PORTRefiner: in eval mode.

    Raises:
        InputFileError: The checkpoint cannot be read or does not fit.
    """
    init_default_scope('mmpose')
    ckpt = _read_checkpoint(checkpoint)
    if isinstance(config, dict):
        model_cfg = refiner_config_from_model_config(config, checkpoint)
    elif config is not None:
        model_cfg = refiner_config_from_model_config(Config.fromfile(config).model.to_dict(),
                                                     config)
    else:
        model_cfg = refiner_config_from_checkpoint(ckpt, checkpoint)
    model = MODELS.build(model_cfg)
    state = ckpt.get('state_dict', ckpt)
    if any(k.startswith('refiner.') for k in state):
        state = {k[len('refiner.'):]: v for k, v in state.items() if k.startswith('refiner.')}
    expected = model.state_dict()
    mismatched = [k for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    missing = [k for k in expected if k not in state]
    if mismatched or missing:
        raise InputFileError(checkpoint, 'does not fit the refiner it describes '
                             f'({model.num_keypoints} keypoints): mismatched '
                             f'{mismatched[:3]}, missing {missing[:3]}')
    load_state_dict(model, state, strict=True)
    return model.to(device).eval()


def save_refiner(refiner, model_cfg: dict, path: str, **provenance) -> None:
    """Write a checkpoint that :func:`load_refiner` reads alone: the model
    config with the refiner's current rule (``meta.cfg``), its weights, and
    ``provenance`` (e.g. ``trained_by``, ``training_data``, ``fit``) under
    ``meta.mmport``, with the date."""
    import os
    import os.path as osp
    import time

    import torch
    model_cfg = dict(model_cfg, test_cfg=dict(rule=refiner.rule.to_config()))
    state = {k: v.detach().cpu() for k, v in refiner.state_dict().items()}
    meta = dict(cfg=Config(dict(model=model_cfg)).pretty_text,
                mmport=dict(provenance, date=time.strftime('%Y-%m-%d')))
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    torch.save(dict(meta=meta, state_dict=state), path)
