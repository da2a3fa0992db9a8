"""Every benchmark's command line refuses a worker count below 1; the
score-free ones refuse a share of mirrored poses outside [0, 1], and
Human3.6M mirrors none by default."""
import argparse
import importlib

import pytest

from benchmarks.score_free_training import probability
from mmport.utils import positive_int


def test_positive_int():
    assert positive_int('1') == 1
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int('0')


@pytest.mark.parametrize('script', ['benchmark_mpii', 'benchmark_h36m', 'benchmark_panoptic',
                                    'benchmark_coco', 'benchmark_body_real',
                                    'sweep_thresholds', 'benchmark_fit', 'benchmark_methods',
                                    'train_scorefree_refiner'])
def test_benchmarks_refuse_fewer_than_one_worker(script, capsys):
    """``--workers 0`` is an argparse error in every benchmark, not a
    quietly sequential run."""
    module = importlib.import_module(f'benchmarks.{script}')
    with pytest.raises(SystemExit):
        module.main(['--workers', '0'])
    assert 'must be 1 or more, got 0' in capsys.readouterr().err


def test_probability():
    assert probability('0') == 0.0 and probability('0.5') == 0.5 and probability('1') == 1.0
    for bad in ('-0.1', '1.5'):
        with pytest.raises(argparse.ArgumentTypeError):
            probability(bad)


@pytest.mark.parametrize('script', ['benchmark_mpii', 'benchmark_h36m', 'train_mpii_refiner'])
def test_score_free_trainings_refuse_a_flip_prob_outside_0_1(script, capsys):
    module = importlib.import_module(f'benchmarks.{script}')
    required = ['--out', 'unused.pth'] if script == 'train_mpii_refiner' else []
    with pytest.raises(SystemExit):
        module.parse_args(['--flip-prob', '2'] + required)
    assert 'must be in [0, 1], got 2.0' in capsys.readouterr().err


def test_flip_prob_defaults():
    """Human3.6M's detector errs differently on the left and the right, so
    its refiners train on unmirrored poses; MPII's mirror half of them."""
    from benchmarks import benchmark_h36m, benchmark_mpii, train_mpii_refiner
    assert benchmark_h36m.parse_args([]).flip_prob == 0.0
    assert benchmark_mpii.parse_args([]).flip_prob == 0.5
    assert train_mpii_refiner.parse_args(['--out', 'unused.pth']).flip_prob == 0.5


def test_quick_leave_one_method_out_names_bundled_methods():
    """``benchmark_methods --quick`` holds out three LSP files that exist;
    the ten methods' records each name their method and the annotation they
    are scored against."""
    from benchmarks.benchmark_methods import QUICK_LSP, lsp_methods
    methods = lsp_methods()
    assert set(QUICK_LSP) <= set(methods) and len(methods) == 11
    assert len({r['method'] for recs in methods.values() for r in recs}) == 10
    assert all('annotation_id' in r for recs in methods.values() for r in recs)
