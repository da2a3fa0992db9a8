"""benchmarks/benchmark_mpii.py's model offsets: removing a method's common
offset, and the check that it helps before it is removed."""
import numpy as np

from benchmarks.benchmark_mpii import MPIIData, lowers_pckh_costs, remove_offset


def test_remove_offset_by_hand():
    points = np.array([[[10.0, 20.0], [30.0, 40.0]]])
    boxes = np.array([[0.0, 0.0, 100.0, 50.0]])  # longer side 100 px
    np.testing.assert_allclose(remove_offset(points, boxes, np.array([0.01, -0.02])),
                               [[[9.0, 22.0], [29.0, 42.0]]])


def test_lowers_pckh_costs_counts_misses_then_errors_and_ties_keep():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (50, 16, 2))
    labelled = np.ones((50, 16), bool)
    tolerance = np.full(50, 5.0)
    pred = gt + [4.0, 0.0] + rng.normal(0, 1, gt.shape)
    assert lowers_pckh_costs(pred, pred - [4.0, 0.0], gt, labelled, tolerance)
    assert not lowers_pckh_costs(pred - [4.0, 0.0], pred, gt, labelled, tolerance)
    assert not lowers_pckh_costs(pred, pred.copy(), gt, labelled, tolerance)
    # all within the tolerance either way: the summed error decides
    near = gt + [1.0, 0.0]
    assert lowers_pckh_costs(near, near - [0.5, 0.0], gt, labelled, tolerance)
    # joints not labelled do not count: moving only joint 0 is then a tie
    far = pred.copy()
    far[:, 0] += 100
    assert lowers_pckh_costs(far, pred, gt, labelled, tolerance)
    labelled[:, 0] = False
    assert not lowers_pckh_costs(far, pred, gt, labelled, tolerance)
    assert lowers_pckh_costs(far, far - [4.0, 0.0], gt, labelled, tolerance)


def test_hourglass_offset_of_some_persons_helps_on_the_others():
    """The bundled MPII predictions: the 1-stack hourglass's common offset,
    estimated on half of the persons, lowers the other half's PCKh costs
    (the offset the benchmark's --model-offsets removes)."""
    data = MPIIData('data/mpii/mpii_val_preds.npz')
    half = np.arange(len(data.gt)) % 2 == 0
    offset = data.model_offset(np.flatnonzero(half), 'hg_s1')
    assert np.linalg.norm(offset) > 0.005  # box sizes
    other = ~half
    assert lowers_pckh_costs(data.pred['hg_s1'][other], data.predictions('hg_s1', offset)[other],
                             data.gt[other], data.labelled[other], 0.5 * data.head[other])
