import os
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEST_DATA = osp.join(REPO, 'tests', 'data')
PANOPTIC_ANN = osp.join(REPO, 'data', 'panoptic', 'annotations', 'panoptic_test.json')
PANOPTIC_PRED = osp.join(REPO, 'data', 'panoptic', 'mobilenetv2_panoptic_256x256_test.pkl')


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    # configs name data paths relative to the repository root, as tools do
    monkeypatch.chdir(REPO)
    os.environ.setdefault('OMP_NUM_THREADS', '2')
