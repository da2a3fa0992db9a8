"""PORTRefiner's test-time rule on real Panoptic predictions and bad inputs."""
import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

from mmport.datasets import load_pose_results
from tests.conftest import PANOPTIC_PRED

HAND_META = dict(from_file='configs/_base_/datasets/panoptic_hand2d.py')


@pytest.fixture(scope='module')
def refiner():
    init_default_scope('mmpose')
    torch.manual_seed(0)
    model = MODELS.build(dict(type='PORTRefiner', metainfo=HAND_META,
                              network=dict(type='PoseRelationTransformer', mask_mode='hint'),
                              test_cfg=dict(rule=dict(score_thr=0.3, min_confident=3))))
    torch.nn.init.normal_(model.network.head.weight, std=0.1)  # move joints visibly
    return model.eval()


@pytest.fixture(scope='module')
def real():
    res = load_pose_results(PANOPTIC_PRED)
    kpts = torch.from_numpy(res.keypoints[:64]).float()
    scores = torch.from_numpy(res.keypoint_scores[:64]).float()
    boxes = torch.from_numpy(res.bboxes[:64]).float()
    return kpts, scores, boxes


def test_only_low_confidence_joints_change(refiner, real):
    kpts, scores, boxes = real
    out, replaced = refiner.refine(kpts, scores, boxes)
    assert out.shape == kpts.shape
    np.testing.assert_array_equal(replaced.numpy(), (scores < 0.3).numpy() & replaced.numpy())
    assert replaced.any()
    torch.testing.assert_close(out[~replaced], kpts[~replaced])
    assert (out[replaced] - kpts[replaced]).norm(dim=-1).min() > 0


def test_bad_instances_pass_through_unchanged(refiner, real):
    kpts, scores, boxes = (t.clone() for t in real)
    scores[:8] = 0.1  # 0-7: every joint below the threshold, none confident
    boxes[8, 2] = boxes[8, 0]  # 8: zero-width box
    boxes[9] = torch.tensor([10., 10., 5., 5.])  # 9: negative size
    boxes[10, 1] = float('nan')  # 10: NaN box
    kpts[11, 3] = float('inf')  # 11: inf keypoint
    scores[12, 5] = float('nan')  # 12: missing score
    out, replaced = refiner.refine(kpts, scores, boxes)
    bad = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert not replaced[bad].any()
    torch.testing.assert_close(out[bad], kpts[bad], equal_nan=True)
    # the good instances in the same batch are refined as if alone
    alone, _ = refiner.refine(real[0][13:], real[1][13:], real[2][13:])
    torch.testing.assert_close(out[13:], alone)


def test_empty_batch_and_wrong_skeleton(refiner):
    out, replaced = refiner.refine(torch.zeros(0, 21, 2), torch.zeros(0, 21), torch.zeros(0, 4))
    assert out.shape == (0, 21, 2) and replaced.shape == (0, 21)
    with pytest.raises(ValueError, match='built for 21 keypoints'):
        refiner.refine(torch.zeros(2, 17, 2), torch.zeros(2, 17), torch.zeros(2, 4))


def test_linear_blend_moves_less_than_replace(refiner, real):
    kpts, scores, boxes = real
    replaced_out, mask = refiner.refine(kpts, scores, boxes)
    own = refiner.rule
    refiner.rule = own.replace(blend='linear')
    try:
        blended, mask2 = refiner.refine(kpts, scores, boxes)
    finally:
        refiner.rule = own
    assert torch.equal(mask, mask2)
    w = (scores / 0.3).clamp(0, 1)[..., None]
    torch.testing.assert_close(blended, torch.where(mask[..., None],
                                                    w * kpts + (1 - w) * replaced_out, kpts))


def test_joint_errors_l1_and_euclidean():
    from mmport.models.port_refiner import joint_errors
    pred = torch.tensor([[[3., 4.], [1., 1.]]], requires_grad=True)
    target = torch.tensor([[[0., 0.], [1., 1.]]])
    torch.testing.assert_close(joint_errors(pred, target, 'l1'), torch.tensor([[7., 0.]]))
    err = joint_errors(pred, target, 'euclidean')
    torch.testing.assert_close(err, torch.tensor([[5., 0.]]))
    err.sum().backward()  # a joint already on target must not give NaN gradients
    torch.testing.assert_close(pred.grad, torch.tensor([[[0.6, 0.8], [0., 0.]]]))


def test_unknown_loss_type_is_refused():
    init_default_scope('mmpose')
    with pytest.raises(ValueError, match='loss_type'):
        MODELS.build(dict(type='PORTRefiner', metainfo=HAND_META,
                          network=dict(type='PoseRelationTransformer'),
                          train_cfg=dict(loss_type='l3')))


def test_chunked_refine_equals_one_batch(refiner, real):
    kpts, scores, boxes = real
    whole, mask, _ = refiner.refine_batch(kpts, scores, boxes)
    default = refiner.chunk_size
    refiner.chunk_size = 7  # 64 poses: 9 full chunks and a remainder
    try:
        chunked, mask2 = refiner.refine(kpts, scores, boxes)
    finally:
        refiner.chunk_size = default
    assert torch.equal(mask, mask2)
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=0)
    init_default_scope('mmpose')
    with pytest.raises(ValueError, match='chunk_size'):
        MODELS.build(dict(type='PORTRefiner', metainfo=HAND_META,
                          network=dict(type='PoseRelationTransformer'),
                          test_cfg=dict(chunk_size=0)))


def test_flip_test_makes_the_refinement_mirror_equivariant():
    """Averaging over the instance and its mirror image makes the rule
    exactly mirror-equivariant: refining a mirrored body (left and right
    joints swapped by COCO's flip_indices) gives the mirrored refinement.
    Without flip test an untrained network is not."""
    init_default_scope('mmpose')
    torch.manual_seed(0)
    kw = dict(type='PORTRefiner', metainfo=dict(from_file='configs/_base_/datasets/coco.py'),
              network=dict(type='PoseRelationTransformer', mask_mode='hint', embed_dim=32))
    model = MODELS.build(dict(kw, test_cfg=dict(rule=dict(score_thr=0.3, flip_test=True))))
    model.eval()
    torch.nn.init.normal_(model.network.head.weight, std=0.1)
    idx = model.flip_indices
    assert idx[5:7] == [6, 5]  # shoulders swap
    rng = np.random.default_rng(0)
    kpts = torch.from_numpy(rng.uniform(100, 300, (32, 17, 2))).float()
    scores = torch.from_numpy(rng.uniform(0, 1, (32, 17))).float()
    boxes = torch.tensor([[90., 80., 320., 310.]]).repeat(32, 1)
    centre_x = 205.0

    def mirror(p):
        return torch.stack([2 * centre_x - p[..., 0], p[..., 1]], -1)[:, idx]

    out, replaced = model.refine(kpts, scores, boxes)
    out_m, replaced_m = model.refine(mirror(kpts), scores[:, idx], boxes)
    assert replaced.any() and torch.equal(replaced_m, replaced[:, idx])
    torch.testing.assert_close(out_m, mirror(out), atol=1e-3, rtol=0)
    # the plain rule is not equivariant, so the check above can fail
    model.rule = model.rule.replace(flip_test=False)
    plain, _ = model.refine(kpts, scores, boxes)
    plain_m, _ = model.refine(mirror(kpts), scores[:, idx], boxes)
    assert (plain_m - mirror(plain)).abs().max() > 0.1
    bare = dict(kw, metainfo=None, network=dict(
        type='PoseRelationTransformer', num_keypoints=17, skeleton_links=[(0, 1)]))
    with pytest.raises(ValueError, match='flip_indices'):
        MODELS.build(dict(bare, test_cfg=dict(rule=dict(flip_test=True))))
    late = MODELS.build(bare).eval()  # switched on after building, as a config override does
    with pytest.raises(ValueError, match='flip_indices'):
        late.rule = late.rule.replace(flip_test=True)


def test_instances_without_doubtful_joints_skip_the_network(refiner, real):
    kpts, scores, boxes = real
    seen = []
    handle = refiner.network.register_forward_hook(lambda m, args, out: seen.append(len(out)))
    try:
        out, replaced = refiner.refine(kpts, scores, boxes)
    finally:
        handle.remove()
    doubtful = (scores < 0.3).any(1)
    assert 0 < doubtful.sum() < len(kpts)  # both kinds in these 64 real hands
    assert sum(seen) == int(doubtful.sum())
    torch.testing.assert_close(out[~doubtful], kpts[~doubtful])
    assert not replaced[~doubtful].any()
    whole, mask, _ = refiner.refine_batch(kpts, scores, boxes)  # every instance
    assert torch.equal(mask, replaced)
    torch.testing.assert_close(out, whole, atol=1e-4, rtol=0)
