"""Load mmengine checkpoints under torch >= 2.6 without trusting pickles.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, which torch
2.6 made default to True: the restricted unpickler then refuses what every
runner checkpoint holds besides weights (numpy arrays in the metadata, the
message hub's ``HistoryBuffer``, which pickles its statistics methods as
``getattr(HistoryBuffer, 'min')``; a ``OneCycleLR`` scheduler's state, which
holds its annealing function as ``getattr(OneCycleParamScheduler,
'_annealing_cos')``). Loading with ``weights_only=False`` would execute
arbitrary pickles, so mmport replaces mmengine's local-file loader by one
that unpickles with an allowlist: torch's own weights-only globals, numpy
arrays and scalars, those two classes, and ``getattr`` only for the methods
named above.

``import mmport`` therefore registers that loader with mmengine's
``CheckpointLoader`` for the whole process, for local files only (the
scheme without prefix; ``http://``, ``s3://``, ``open-mmlab://`` etc. keep
mmengine's loaders), and only under torch >= 2.6, where mmengine's own
loader cannot read runner checkpoints. It loads everything mmengine's
loader loads from a trustworthy checkpoint and refuses pickles that would
run other code. Set the environment variable
``MMPORT_SAFE_CHECKPOINT_LOADER=0`` before importing mmport to keep
mmengine's loader (then runner checkpoints need torch < 2.6 or your own
``torch.serialization.add_safe_globals``), or call
:func:`restore_mmengine_checkpoint_loader`.
"""
import logging
import os
import os.path as osp
import pickle
import types
from typing import Callable, Optional

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
from mmengine.runner.checkpoint import CheckpointLoader

from .safe_pickle import RestrictedUnpickler

logger = logging.getLogger(__name__)

ENV_SWITCH = 'MMPORT_SAFE_CHECKPOINT_LOADER'
_PY2_MODULES = {'__builtin__': 'builtins', 'copy_reg': 'copyreg'}


# classes a checkpoint may name, and the attributes it may take from them
_GETATTR_ALLOWED = {
    HistoryBuffer: ('min', 'max', 'current', 'mean'),  # message hub statistics
    OneCycleParamScheduler: ('_annealing_cos', '_annealing_linear'),  # scheduler state
}
_CLASSES = {(cls.__module__, cls.__qualname__): cls for cls in _GETATTR_ALLOWED}


def _restricted_getattr(obj, name: str):
    if name in _GETATTR_ALLOWED.get(obj, ()):
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint')


def _torch_allowed_globals() -> dict:
    from torch import _weights_only_unpickler
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    if hasattr(torch.serialization, 'get_safe_globals'):  # user allowlist (torch >= 2.5)
        for obj in torch.serialization.get_safe_globals():
            obj = obj[0] if isinstance(obj, tuple) else obj
            allowed[f'{obj.__module__}.{obj.__qualname__}'] = obj
    return allowed


class CheckpointUnpickler(RestrictedUnpickler):
    """Allows torch tensors/storages (torch's weights-only list), numpy data,
    builtin containers, mmengine's ``HistoryBuffer`` and the annealing
    functions of ``OneCycleParamScheduler``; nothing else."""

    def find_class(self, module: str, name: str):
        module = _PY2_MODULES.get(module, module)
        if (module, name) == ('builtins', 'getattr'):
            return _restricted_getattr
        if (module, name) in _CLASSES:
            return _CLASSES[module, name]
        obj = _torch_allowed_globals().get(f'{module}.{name}')
        if obj is not None:
            return obj
        if module == 'numpy.dtypes' and name.endswith('DType'):
            return getattr(np.dtypes, name)
        return super().find_class(module, name)


# torch.load(pickle_module=...) needs a module-like object with Unpickler/load
checkpoint_pickle = types.SimpleNamespace(
    __name__='mmport_checkpoint_pickle', Unpickler=CheckpointUnpickler,
    load=lambda f, **kwargs: CheckpointUnpickler(f, **kwargs).load())


def load_checkpoint_file(filename: str, map_location=None):
    """``torch.load`` a local checkpoint with :class:`CheckpointUnpickler`."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False,
                      pickle_module=checkpoint_pickle)


# mmengine's local-file loader, while mmport's replaces it
_MMENGINE_LOCAL_LOADER: Optional[Callable] = None


def _torch_loads_weights_only_by_default(version: str) -> bool:
    """Whether ``torch.load`` defaults to ``weights_only=True`` (torch >= 2.6)."""
    major, minor = (int(''.join(c for c in part if c.isdigit()) or 0)
                    for part in version.split('+')[0].split('.')[:2])
    return (major, minor) >= (2, 6)


def safe_loader_wanted(torch_version: Optional[str] = None,
                       environ: Optional[dict] = None) -> bool:
    """Whether ``import mmport`` should replace mmengine's local-file
    checkpoint loader: under torch >= 2.6, unless the environment sets
    ``MMPORT_SAFE_CHECKPOINT_LOADER=0`` (or ``false``/``no``/``off``).

    Args:
        torch_version (str, optional): Default: the installed torch's.
        environ (dict, optional): Default: ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_SWITCH, '1').strip().lower() in ('0', 'false', 'no', 'off'):
        return False
    return _torch_loads_weights_only_by_default(torch_version or torch.__version__)


def register_safe_checkpoint_loader() -> bool:
    """Make mmengine (``load_from``, ``resume``, ``init_cfg=Pretrained``,
    ``load_checkpoint``) load local checkpoints with
    :func:`load_checkpoint_file`, where :func:`safe_loader_wanted`.

    Returns:
        bool: Whether mmport's loader is registered now.
    """
    global _MMENGINE_LOCAL_LOADER
    if not safe_loader_wanted():
        logger.debug('mmport: mmengine\'s checkpoint loader left in place (torch %s, %s=%s)',
                     torch.__version__, ENV_SWITCH, os.environ.get(ENV_SWITCH))
        return False
    current = CheckpointLoader._schemes.get('')
    if current is not load_checkpoint_file:
        _MMENGINE_LOCAL_LOADER = current
        CheckpointLoader.register_scheme(prefixes='', loader=load_checkpoint_file, force=True)
        logger.debug('mmport: local checkpoints now load with %s.load_checkpoint_file '
                     '(allowlist unpickler; %s=0 to opt out)', __name__, ENV_SWITCH)
    return True


def restore_mmengine_checkpoint_loader() -> None:
    """Give local checkpoints back to mmengine's own loader."""
    global _MMENGINE_LOCAL_LOADER
    if _MMENGINE_LOCAL_LOADER is not None:
        CheckpointLoader.register_scheme(prefixes='', loader=_MMENGINE_LOCAL_LOADER, force=True)
        _MMENGINE_LOCAL_LOADER = None
