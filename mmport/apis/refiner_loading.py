"""Build a trained PORT refiner from its checkpoint alone."""
from typing import Optional

from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict
from mmpose.registry import MODELS

from mmport.utils import InputFileError


def refiner_config_from_checkpoint(checkpoint: dict, path: str) -> dict:
    """The ``PORTRefiner`` config stored in a runner checkpoint's metadata."""
    text = checkpoint.get('meta', {}).get('cfg') if isinstance(checkpoint, dict) else None
    if not text:
        raise InputFileError(path, 'holds no config (meta.cfg); pass the refiner config too')
    model = Config.fromstring(text, '.py').model
    if model.type == 'RefinedTopdownPoseEstimator':
        return model.refiner.to_dict()
    if model.type == 'PORTRefiner':
        return model.to_dict()
    raise InputFileError(path, f'is a checkpoint of {model.type}, not of a PORT refiner')


def load_refiner(checkpoint: str, config: Optional[str] = None, device: str = 'cpu'):
    """Load a ``PORTRefiner`` for inference.

    Args:
        checkpoint (str): A checkpoint saved by training a ``PORTRefiner``
            (or a ``RefinedTopdownPoseEstimator``) with mmengine.
        config (str, optional): Config file whose ``model`` (or
            ``model.refiner``) builds the refiner; by default the config saved
            in the checkpoint.
        device (str): Where to put the model.

    Returns:
        PORTRefiner: in eval mode.

    Raises:
        InputFileError: The checkpoint cannot be read or does not fit.
    """
    init_default_scope('mmpose')
    try:
        ckpt = _load_checkpoint(checkpoint, map_location='cpu')
    except FileNotFoundError:
        raise InputFileError(checkpoint, 'does not exist') from None
    except Exception as err:  # torch/zip/unpickling errors of a broken file
        raise InputFileError(checkpoint, f'is not a readable checkpoint ({err})') from None
    if config is not None:
        model_cfg = Config.fromfile(config).model
        model_cfg = (model_cfg.refiner if model_cfg.type == 'RefinedTopdownPoseEstimator'
                     else model_cfg).to_dict()
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
