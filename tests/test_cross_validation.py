import json
from collections import Counter

import numpy as np
import pytest

from mmport.apis import grouped_folds, source_group
from tests.conftest import PANOPTIC_ANN


@pytest.mark.parametrize('name,group', [
    ('hand_labels/manual_test/ex2_2.flv_000040_l.jpg', 'ex2_2.flv'),
    ('Berry_roof_story.flv_000123_r.jpg', 'Berry_roof_story.flv'),
    ('hand_labels/manual_test/005880453_01_l.jpg', '005880453'),
    ('000648952_02_r.jpg', '000648952'),
    ('plain.jpg', 'plain.jpg'),
])
def test_source_group(name, group):
    assert source_group(name) == group


def test_grouped_folds_on_real_panoptic_split():
    with open(PANOPTIC_ANN) as f:
        names = [img['file_name'] for img in json.load(f)['images']]
    groups = [source_group(n) for n in names]
    assert len(names) == 846
    assert len(set(groups)) == 220
    folds = grouped_folds(groups, 5, seed=0)
    sizes = np.bincount(folds, minlength=5)
    assert sizes.sum() == 846 and sizes.max() - sizes.min() <= 1  # 170, 169 x 4
    for g in set(groups):  # no source video / image in two folds
        assert len({folds[i] for i, gi in enumerate(groups) if gi == g}) == 1
    np.testing.assert_array_equal(folds, grouped_folds(groups, 5, seed=0))


def test_grouped_folds_needs_enough_groups():
    with pytest.raises(ValueError, match='cannot fill'):
        grouped_folds(['a', 'a', 'b'], 3)


def test_largest_groups_spread_first():
    groups = ['big'] * 10 + ['mid'] * 6 + [f's{i}' for i in range(8)]
    folds = grouped_folds(groups, 2)
    counts = Counter(folds.tolist())
    assert sorted(counts.values()) == [12, 12]
