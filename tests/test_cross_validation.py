import json
from collections import Counter

import numpy as np
import pytest

from mmport.datasets import grouped_folds, source_group
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


def test_fold_splits_every_fold_validates_once():
    from benchmarks.cross_validation import fold_splits
    splits = fold_splits(5, select_thresholds=True)
    final = [s for s in splits if s['kind'] == 'final']
    select = [s for s in splits if s['kind'] == 'select']
    assert [s['fold'] for s in splits[:5]] == list(range(5))  # final ones first, by fold
    for s in final:
        assert s['test'] == [s['fold']] and sorted(s['train'] + s['test']) == list(range(5))
    for s in select:  # never the evaluated fold; train and validation disjoint
        assert s['fold'] not in s['train'] + s['test']
        assert len(s['train']) == 3 and not set(s['train']) & set(s['test'])
    assert sorted(s['test'][0] for s in select) == list(range(5))
    assert all(s['kind'] == 'final' for s in fold_splits(5, select_thresholds=False))
    with pytest.raises(ValueError, match='num_folds=2 is too few'):
        fold_splits(2, select_thresholds=True)  # no fold left to train the selection on
    assert len(fold_splits(2, select_thresholds=False)) == 2


def test_threshold_sweep_through_runners(tmp_path, capfd):
    """Two-fold cross-validation with a few iterations: the sweep refines
    every held-out hand at each threshold, consistently with the runner's
    own test at the config's threshold. The console shows one line per
    training and fold; the Runners' full logs stay in their work dirs."""
    from benchmarks.cross_validation import (experiment_setup, grouped_cross_validation,
                                             stack_fields)
    cfg, logger = experiment_setup('configs/port/port_panoptic-hand2d_keypoints-only.py',
                                   dict(train_cfg=dict(max_iters=3)), str(tmp_path), 'cv')
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=3)]
    cfg.train_dataloader.batch_size = 16
    capfd.readouterr()
    cv = grouped_cross_validation(cfg, str(tmp_path), num_folds=2, thr_candidates=None,
                                  sweep_thresholds=[0.2, 0.4], logger=logger)
    console = capfd.readouterr().out.splitlines()
    # besides warnings (each distinct one once per process): 2 trainings, 2 folds
    lines = [line for line in console if ' - WARNING - ' not in line]
    assert len(lines) == 4 and len(console) <= 8, console
    assert 'training 1/2 done' in lines[0] and 'fold 1: 423 held-out samples' in lines[3]
    runner_logs = ''.join(f.read_text() for f in tmp_path.glob('fold0/*/*.log'))
    assert 'Config:' in runner_logs and 'Hooks will be executed' in runner_logs
    assert 'loading annotations' in (tmp_path / 'fold0' / 'printed.log').read_text()
    assert (tmp_path / 'cv.log').read_text().count('held-out samples') == 2
    init, refined, scores = stack_fields(cv.samples, 'pred_instances.keypoints_init',
                                         'pred_instances.keypoints',
                                         'pred_instances.keypoint_scores_init')
    assert len(init) == 846 and cv.thresholds == [0.4, 0.4]
    assert sorted(cv.sweep) == [0.2, 0.4]
    swept, replaced = cv.sweep[0.4]
    np.testing.assert_allclose(swept, refined, atol=1e-4)  # same models, same threshold
    np.testing.assert_array_equal(replaced, scores < 0.4)  # every hand is refinable here
    assert (cv.sweep[0.2][1] == (scores < 0.2)).all()
    kept = ~cv.sweep[0.2][1]
    np.testing.assert_array_equal(cv.sweep[0.2][0][kept], init[kept])


def test_body_rule_rank_puts_harmless_rules_first_then_the_worst_set():
    from benchmarks.benchmark_body_real import held_out_rule_score

    def rows(changes, epe=0.0):
        out = {n: {'baseline': {'AP': 0.5, 'EPE': 10.0, 'EPE_norm': 0.1},
                   'refined': {'AP': 0.5 + d, 'EPE': 10.0 + epe, 'EPE_norm': 0.1 + epe / 100}}
               for n, d in changes.items()}
        out['all'] = {'baseline': {'AP': 0.5}, 'refined': {'AP': 0.5 + sum(changes.values())}}
        return out

    big_pooled_gain = held_out_rule_score(rows({'lsp': -0.001, 'lspet': 0.02, 'coco': 0.01}))
    even_gain = held_out_rule_score(rows({'lsp': 0.002, 'lspet': 0.003, 'coco': 0.002}))
    small_even_gain = held_out_rule_score(rows({'lsp': 0.001, 'lspet': 0.01, 'coco': 0.01}))
    worse_epe = held_out_rule_score(rows({'lsp': 0.01, 'lspet': 0.01, 'coco': 0.01}, epe=0.5))
    assert not big_pooled_gain[0] and even_gain[0] and not worse_epe[0]
    # among harmless rules the worst set's AP change decides, not the pooled one
    assert even_gain > small_even_gain > big_pooled_gain
    assert even_gain > worse_epe
