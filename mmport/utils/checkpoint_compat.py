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
"""
import os.path as osp
import pickle
import types

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
from mmengine.runner.checkpoint import CheckpointLoader

from .safe_pickle import RestrictedUnpickler

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


def register_safe_checkpoint_loader() -> None:
    """Make mmengine (load_from, resume, init_cfg Pretrained) load local
    checkpoints with :func:`load_checkpoint_file`."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_checkpoint_file, force=True)
