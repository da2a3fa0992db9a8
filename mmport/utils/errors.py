"""mmport's user-facing errors: one message naming the file and the problem."""
import sys
from typing import Callable


class MMPortError(Exception):
    """Base class of errors caused by a user's input, not by mmport."""


class InputFileError(MMPortError, ValueError):
    """A file given to mmport cannot be used.

    Args:
        path (str): The file.
        problem (str): What is wrong with it.
    """

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f'{self.path}: {problem}')


def run_cli(main: Callable[[], int]) -> None:
    """Run a command-line tool's ``main``: an :class:`MMPortError` (bad user
    input) becomes one ``error: ...`` line on stderr and exit code 2, not a
    traceback."""
    try:
        sys.exit(main())
    except MMPortError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
