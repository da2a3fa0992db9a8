from .errors import InputFileError, MMPortError
from .safe_pickle import RestrictedUnpickler, safe_load_pickle

__all__ = ['InputFileError', 'MMPortError', 'RestrictedUnpickler', 'safe_load_pickle']
