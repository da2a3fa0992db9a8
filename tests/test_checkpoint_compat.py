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
