import numpy as np
import pytest
import torch

from mmport.structures import (check_instance_batch, frame_from_bboxes, from_frame,
                               hop_aggregation_matrices, hop_distances, to_frame, valid_bboxes)

CHAIN = [(0, 1), (1, 2), (2, 3)]


def test_hop_distances_chain():
    dist = hop_distances(5, CHAIN)
    assert dist[0].tolist() == [0, 1, 2, 3, 5]  # joint 4 is unreachable -> K
    assert (dist == dist.T).all()


def test_hop_matrices_average_rings():
    mats = hop_aggregation_matrices(4, CHAIN, 1)
    assert mats.shape == (2, 4, 4)
    np.testing.assert_array_equal(mats[0], np.eye(4))
    # joint 1 has neighbours 0 and 2: each weighted 1/2
    np.testing.assert_allclose(mats[1, 1], [0.5, 0, 0.5, 0])
    np.testing.assert_allclose(mats[1, 0], [0, 1, 0, 0])


def test_hop_matrices_reject_bad_links():
    with pytest.raises(ValueError, match='out of range'):
        hop_aggregation_matrices(3, [(0, 3)], 1)


@pytest.mark.parametrize('rotate_axis', [None, (0, 2)])
def test_normalisation_round_trip_is_exact(rotate_axis):
    g = torch.Generator().manual_seed(0)
    kpts = torch.rand(8, 5, 2, generator=g, dtype=torch.float64) * 400 + 50
    xy = torch.rand(8, 2, generator=g, dtype=torch.float64) * 300
    boxes = torch.cat([xy, xy + torch.rand(8, 2, generator=g, dtype=torch.float64) * 200 + 10], 1)
    frame = frame_from_bboxes(boxes, kpts, rotate_axis)
    back = from_frame(to_frame(kpts, frame), frame)
    torch.testing.assert_close(back, kpts, rtol=0, atol=1e-9)


def test_normalisation_invariant_to_position_and_size():
    kpts = torch.tensor([[[10., 20.], [30., 50.], [60., 20.]]])
    box = torch.tensor([[0., 0., 100., 80.]])
    moved = kpts * 3 + torch.tensor([500., -40.])
    moved_box = box * 3 + torch.tensor([500., -40., 500., -40.])
    a = to_frame(kpts, frame_from_bboxes(box))
    b = to_frame(moved, frame_from_bboxes(moved_box))
    torch.testing.assert_close(a, b)
    # aspect ratio kept: both axes divided by the longer side (100)
    torch.testing.assert_close(a[0, 0], torch.tensor([(10 - 50) / 100, (20 - 40) / 100]))


def test_rotation_puts_reference_bone_up():
    kpts = torch.tensor([[[0., 0.], [5., 5.], [10., 0.]]])  # bone 0 -> 2 points right
    frame = frame_from_bboxes(torch.tensor([[-10., -10., 10., 10.]]), kpts, (0, 2))
    out = to_frame(kpts, frame)
    bone = out[0, 2] - out[0, 0]
    torch.testing.assert_close(bone, torch.tensor([0., -0.5]), atol=1e-6, rtol=0)


def test_invalid_boxes_are_detected_and_refused():
    boxes = torch.tensor([[0., 0., 10., 10.], [5., 5., 5., 9.], [0., 0., float('nan'), 1.],
                          [3., 3., 1., 8.]])
    assert valid_bboxes(boxes).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match='positive'):
        frame_from_bboxes(boxes)


def test_check_instance_batch_names_the_bad_shape():
    for lib in (np.zeros, torch.zeros):
        check_instance_batch(21, lib((3, 21, 2)), lib((3, 21)), lib((3, 4)))
        check_instance_batch(21, lib((0, 21, 2)), lib((0, 21)), lib((0, 4)))
        with pytest.raises(ValueError, match=r'must be \(B, 21, 2\), got \(3, 17, 2\)'):
            check_instance_batch(21, lib((3, 17, 2)), lib((3, 17)), lib((3, 4)))
        with pytest.raises(ValueError, match=r'bboxes \(3, 4\), got \(3, 21\) and \(2, 4\)'):
            check_instance_batch(21, lib((3, 21, 2)), lib((3, 21)), lib((2, 4)))
