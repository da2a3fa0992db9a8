"""Where mmport's transforms take their random numbers from."""
from typing import Optional

import numpy as np


class RandomSource:
    """A private generator when seeded (tests, the fixed corruption of
    held-out poses); otherwise a fresh generator drawn from numpy's global
    state at each call, which mmengine seeds per run and per worker.

    Args:
        seed (int, optional): Seed of the private generator.
    """

    def __init__(self, seed: Optional[int] = None):
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def generator(self) -> np.random.Generator:
        if self._rng is not None:
            return self._rng
        return np.random.default_rng(np.random.randint(2**31))
