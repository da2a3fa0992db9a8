from .cli_types import positive_int
from .errors import InputFileError, MMPortError, run_cli
from .json_files import JSON_SUFFIXES, load_json
from .safe_pickle import RestrictedUnpickler, safe_load_pickle

__all__ = ['InputFileError', 'MMPortError', 'run_cli', 'RestrictedUnpickler', 'safe_load_pickle',
           'JSON_SUFFIXES', 'load_json', 'positive_int']
