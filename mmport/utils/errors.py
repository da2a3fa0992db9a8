"""mmport's user-facing errors: one message naming the file and the problem."""


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
