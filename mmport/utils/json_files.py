"""Read JSON files, plain or gzipped, with one clear error per failure."""
import gzip
import json
import zlib

from .errors import InputFileError

JSON_SUFFIXES = ('.json', '.json.gz')


def load_json(path: str):
    """The content of a ``.json`` or ``.json.gz`` file.

    Raises:
        InputFileError: The file cannot be read, is not gzip where its name
            says so, or is not valid JSON.
    """
    path = str(path)
    opener = gzip.open if path.endswith('.gz') else open
    try:
        with opener(path, 'rt') as f:
            return json.load(f)
    except OSError as err:  # includes gzip.BadGzipFile
        raise InputFileError(path, f'cannot be read ({err.strerror or err})') from None
    except (EOFError, zlib.error) as err:
        raise InputFileError(path, f'is a truncated gzip file ({err})') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(path, f'is not valid JSON ({err})') from None
