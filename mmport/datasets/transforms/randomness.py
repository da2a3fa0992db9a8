"""Where mmport's transforms take their random numbers from."""
import numbers
import zlib
from typing import List, Optional

import numpy as np

# the fields of a sample that identify it, whichever of them it has
# (``sample_idx``: its index in the dataset, set by mmengine's BaseDataset;
# ``img_id`` / ``id``: its image and annotation ids in MMPose's datasets)
SAMPLE_KEYS = ('sample_idx', 'img_id', 'id')


def sample_key(results: Optional[dict]) -> List[int]:
    """Integers that identify a sample: its ``sample_idx``, ``img_id`` and
    ``id`` fields, whichever it has (strings by their CRC-32); empty if it
    has none."""
    key = []
    for name in SAMPLE_KEYS:
        value = (results or {}).get(name)
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.item()
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            key.append(int(value) % 2**63)  # SeedSequence takes non-negative entropy
        elif isinstance(value, str):
            key.append(zlib.crc32(value.encode()))
    return key


class RandomSource:
    """The random numbers of one transform.

    Unseeded (training augmentation), each call draws a fresh generator
    from numpy's global state, which mmengine seeds per run and per
    dataloader worker. Seeded (tests, the fixed corruption of held-out
    poses), the draw is a function of the seed and the sample
    (:func:`sample_key`): the same seed gives every sample the same draw
    whatever the number of dataloader workers or the order of samples, and
    the same sample gets the same draw every time it is loaded. Samples
    without any identifying field draw in turn from one private generator
    (then the draws depend on the order of calls).

    Args:
        seed (int, optional): Seed of the draws.
    """

    def __init__(self, seed: Optional[int] = None):
        self.seed = seed
        self._sequence = np.random.default_rng(seed) if seed is not None else None

    def generator(self, results: Optional[dict] = None) -> np.random.Generator:
        """The generator to transform ``results`` (the sample's dict) with.

        Args:
            results (dict, optional): The sample; its identifying fields
                key a seeded transform's draw.

        Returns:
            np.random.Generator
        """
        if self.seed is None:
            return np.random.default_rng(np.random.randint(2**31))
        key = sample_key(results)
        if not key:
            return self._sequence
        return np.random.default_rng([int(self.seed) % 2**63, *key])
