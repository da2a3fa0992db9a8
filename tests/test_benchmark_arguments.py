"""Every benchmark's command line refuses a worker count below 1."""
import argparse
import importlib

import pytest

from benchmarks.parallel_training import positive_int


def test_positive_int():
    assert positive_int('1') == 1
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int('0')


@pytest.mark.parametrize('script', ['benchmark_mpii', 'benchmark_h36m', 'benchmark_panoptic',
                                    'benchmark_coco', 'benchmark_body_real',
                                    'sweep_thresholds'])
def test_benchmarks_refuse_fewer_than_one_worker(script, capsys):
    """``--workers 0`` is an argparse error in every benchmark, not a
    quietly sequential run."""
    module = importlib.import_module(f'benchmarks.{script}')
    with pytest.raises(SystemExit):
        module.main(['--workers', '0'])
    assert 'must be 1 or more, got 0' in capsys.readouterr().err
