from .errors import InputFileError, MMPortError, run_cli
from .safe_pickle import RestrictedUnpickler, safe_load_pickle

__all__ = ['InputFileError', 'MMPortError', 'run_cli', 'RestrictedUnpickler', 'safe_load_pickle']
