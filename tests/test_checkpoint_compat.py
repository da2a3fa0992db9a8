"""mmport's checkpoint loader: what runner checkpoints hold loads, nothing else."""
import pickle

import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.optim.scheduler import OneCycleLR
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler

from mmport.utils.checkpoint_compat import load_checkpoint_file


def _one_cycle_state(strategy: str) -> dict:
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    scheduler = OneCycleLR(optimizer, eta_max=1e-3, total_steps=10, anneal_strategy=strategy,
                           by_epoch=False)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    return scheduler.state_dict()


@pytest.mark.parametrize('strategy', ['cos', 'linear'])
def test_one_cycle_scheduler_state_round_trips(tmp_path, strategy):
    state = _one_cycle_state(strategy)
    torch.save({'param_schedulers': [state], 'meta': {'epoch': 0}}, tmp_path / 'ckpt.pth')
    loaded = load_checkpoint_file(str(tmp_path / 'ckpt.pth'))['param_schedulers'][0]
    assert loaded['anneal_func'] is getattr(OneCycleParamScheduler, f'_annealing_{strategy}')
    assert loaded['last_step'] == 4
    assert loaded['anneal_func'](1.0, 0.0, 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize('cls, name', [(OneCycleParamScheduler, '__init__'),
                                       (HistoryBuffer, '__init__'),
                                       (OneCycleParamScheduler, 'step')])
def test_other_attributes_of_allowed_classes_are_refused(tmp_path, cls, name):
    class Reach:
        def __reduce__(self):
            return getattr, (cls, name)

    path = tmp_path / 'reach.pth'
    torch.save({'meta': {}}, path)
    import zipfile
    with zipfile.ZipFile(path) as z:
        data_pkl = [n for n in z.namelist() if n.endswith('data.pkl')][0]
        version = data_pkl.rsplit('/', 1)[0] + '/version'
        files = {n: z.read(n) for n in z.namelist()}
    files[data_pkl] = pickle.dumps({'meta': Reach()}, protocol=2)
    with zipfile.ZipFile(path, 'w') as z:
        for n, data in files.items():
            z.writestr(n, data)
    assert version in files
    with pytest.raises(pickle.UnpicklingError, match='is not allowed'):
        load_checkpoint_file(str(path))


@pytest.mark.parametrize('version, environ, wanted', [
    ('2.14.0', {}, True),
    ('2.6.0+cpu', {}, True),
    ('2.10.0.dev20250101', {}, True),
    ('2.5.1', {}, False),  # torch.load still unpickles anything: mmengine's loader works
    ('1.13.1', {}, False),
    ('2.14.0', {'MMPORT_SAFE_CHECKPOINT_LOADER': '0'}, False),
    ('2.14.0', {'MMPORT_SAFE_CHECKPOINT_LOADER': 'off'}, False),
    ('2.14.0', {'MMPORT_SAFE_CHECKPOINT_LOADER': '1'}, True),
])
def test_loader_replaced_only_where_needed(version, environ, wanted):
    from mmport.utils.checkpoint_compat import safe_loader_wanted
    assert safe_loader_wanted(version, environ) is wanted


LOADERS = r'''
import torch
from mmengine.runner.checkpoint import CheckpointLoader, load_from_http, load_from_local
import mmport
from mmport.utils.checkpoint_compat import load_checkpoint_file
local = CheckpointLoader._get_checkpoint_loader('work_dirs/x.pth')
print({load_checkpoint_file: 'mmport', load_from_local: 'mmengine'}[local],
      CheckpointLoader._get_checkpoint_loader('https://x/y.pth') is load_from_http)
'''


@pytest.mark.parametrize('switch, expected', [(None, 'mmport'), ('0', 'mmengine')])
def test_import_mmport_replaces_the_local_loader_unless_told_not_to(switch, expected):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO
    env = {k: v for k, v in os.environ.items() if k != 'MMPORT_SAFE_CHECKPOINT_LOADER'}
    if switch is not None:
        env['MMPORT_SAFE_CHECKPOINT_LOADER'] = switch
    proc = subprocess.run([sys.executable, '-c', LOADERS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [expected, 'True']  # remote schemes keep mmengine's


def test_restore_gives_local_files_back_to_mmengine():
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_local

    from mmport.utils.checkpoint_compat import (register_safe_checkpoint_loader,
                                                restore_mmengine_checkpoint_loader)
    assert register_safe_checkpoint_loader()  # torch 2.14 here
    assert CheckpointLoader._get_checkpoint_loader('a.pth') is load_checkpoint_file
    restore_mmengine_checkpoint_loader()
    try:
        assert CheckpointLoader._get_checkpoint_loader('a.pth') is load_from_local
    finally:
        register_safe_checkpoint_loader()
    assert CheckpointLoader._get_checkpoint_loader('a.pth') is load_checkpoint_file
