"""Read pickles from users without executing them.

A pickle can call any importable function while it loads. Result files
(MMPose ``--dump`` output, PORT's prediction pickles) only ever hold numpy
arrays and builtin containers, so everything else is refused.
"""
import io
import pickle
from pathlib import Path
from typing import Any, Union

from mmport.utils.errors import InputFileError

# (module, name) pairs that rebuild numpy arrays, dtypes and scalars.
_NUMPY_GLOBALS = {
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'), ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', '_reconstruct'), ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),
    # protocol-2 pickles rebuild bytes as _codecs.encode(str, 'latin1')
    ('_codecs', 'encode'),
}
_NUMPY_SCALAR_TYPES = {'float16', 'float32', 'float64', 'int8', 'int16', 'int32', 'int64',
                       'uint8', 'uint16', 'uint32', 'uint64', 'bool_', 'str_', 'bytes_'}
_BUILTINS = {'list', 'dict', 'tuple', 'set', 'frozenset', 'slice', 'complex', 'bytearray',
             'bytes'}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/scalar globals and builtin
    containers; anything else raises ``pickle.UnpicklingError``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS or (
                module == 'numpy' and name in _NUMPY_SCALAR_TYPES) or (
                module == 'builtins' and name in _BUILTINS) or (
                module == 'collections' and name == 'OrderedDict'):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'global {module}.{name} is not allowed')


def safe_load_pickle(source: Union[str, Path, bytes]) -> Any:
    """Load a pickle of numpy / builtin data, refusing anything executable.

    Args:
        source (str | Path | bytes): A file path, or the pickle's bytes.

    Returns:
        Any: The unpickled object.

    Raises:
        InputFileError: The file is missing, truncated, malformed, or holds
            objects other than numpy arrays and builtin containers.
    """
    name = '<bytes>' if isinstance(source, bytes) else str(source)
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as err:
        raise InputFileError(name, f'cannot be read ({err.strerror})') from None
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as err:
        raise InputFileError(name, f'refused or malformed pickle: {err}') from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError,
            KeyError, OverflowError, MemoryError) as err:
        raise InputFileError(name, f'is not a valid pickle ({type(err).__name__}: {err})') from None
