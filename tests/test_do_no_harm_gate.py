"""The do-no-harm gate: error estimates, the rule, and its training loss."""
import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

from mmport.datasets import load_pose_results
from mmport.fitting import choose_gate_margins
from mmport.models.do_no_harm import (DISTANCE_FLOOR, expected_gain_gate, expected_quality,
                                     joint_tolerances, joints_outside_boxes, outside_box_margins,
                                     quality_loss)
from mmport.models.refinement_rule import RuleError
from tests.conftest import PANOPTIC_PRED

HAND_META = dict(from_file='configs/_base_/datasets/panoptic_hand2d.py')


def gated_refiner(**gate):
    init_default_scope('mmpose')
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='PORTRefiner', metainfo=HAND_META,
        network=dict(type='PoseRelationTransformer', embed_dim=32, depth=2, num_heads=1,
                     mask_mode='hint', predict_errors=True),
        test_cfg=dict(rule=dict(score_thr=0.5, gate=dict(gate)))))
    torch.nn.init.normal_(model.network.head.weight, std=0.1)  # move joints visibly
    torch.nn.init.normal_(model.network.error_head.weight, std=0.5)  # gate both ways
    return model.eval()


@pytest.fixture(scope='module')
def real():
    res = load_pose_results(PANOPTIC_PRED)
    return (torch.from_numpy(res.keypoints[:64]).float(),
            torch.from_numpy(res.keypoint_scores[:64]).float(),
            torch.from_numpy(res.bboxes[:64]).float())


def test_gate_rule_is_a_strict_comparison_of_qualities():
    log_err = torch.tensor([[[0.0, -1.0], [0.0, 1.0], [0.0, 0.0], [-2.0, -2.5]]])
    quality = expected_quality(log_err, 'log_distance')
    np.testing.assert_array_equal(expected_gain_gate(quality).numpy(),
                                  [[True, False, False, True]])
    # a margin of 0.6 asks the reconstruction to be exp(0.6) times closer
    np.testing.assert_array_equal(expected_gain_gate(quality, 0.6).numpy(),
                                  [[True, False, False, False]])
    similarity = expected_quality(torch.tensor([[[0.0, 0.1], [2.0, 1.0]]]), 'keypoint_similarity')
    torch.testing.assert_close(similarity, torch.sigmoid(torch.tensor([[[0.0, 0.1], [2.0, 1.0]]])))
    np.testing.assert_array_equal(expected_gain_gate(similarity).numpy(), [[True, False]])
    np.testing.assert_array_equal(expected_gain_gate(similarity, 0.05).numpy(), [[False, False]])
    with pytest.raises(ValueError, match='predict_errors'):
        expected_gain_gate(None)


def test_joints_with_negative_expected_gain_are_left_exactly(real):
    kpts, scores, boxes = real
    refiner = gated_refiner()
    out, replaced = refiner.refine(kpts, scores, boxes)
    rec, quality = refiner.reconstruct_with_errors(kpts, scores, boxes, scores < 0.5)
    harmful = (scores < 0.5) & (quality[..., 1] <= quality[..., 0])
    helpful = (scores < 0.5) & (quality[..., 1] > quality[..., 0])
    assert harmful.sum() > 20 and helpful.sum() > 20  # the test sees both cases
    # exactly the input where the expected gain is not positive ...
    assert torch.equal(out[harmful], kpts[harmful])
    assert not replaced[harmful].any()
    # ... the reconstruction where it is, and nothing above the threshold moves
    assert torch.equal(replaced, helpful)
    torch.testing.assert_close(out[helpful], rec[helpful])
    assert torch.equal(out[scores >= 0.5], kpts[scores >= 0.5])
    # without the gate every doubtful joint moves
    refiner.rule = refiner.rule.replace(gate=None)
    _, ungated = refiner.refine(kpts, scores, boxes)
    assert torch.equal(ungated, scores < 0.5)


def test_per_joint_margins_keep_a_joint_class_fixed(real):
    kpts, scores, boxes = real
    log_err = torch.tensor([[[0.0, -1.0], [0.0, -1.0], [0.0, -0.5]]])
    quality = expected_quality(log_err, 'log_distance')
    np.testing.assert_array_equal(
        expected_gain_gate(quality, [0.0, float('inf'), 0.6]).numpy(), [[True, False, False]])
    with pytest.raises(ValueError, match='one per joint'):
        expected_gain_gate(quality, [0.0, 0.0])
    refiner = gated_refiner()
    _, shared = refiner.refine(kpts, scores, boxes)
    # three joint classes that moved (as if their moves hurt on training data)
    fixed = torch.nonzero(shared.any(0)).flatten()[:3].tolist()
    assert len(fixed) == 3
    margins = [float('inf') if j in fixed else 0.0 for j in range(21)]
    refiner.rule = refiner.rule.replace(gate=dict(margin=margins))
    out, replaced = refiner.refine(kpts, scores, boxes)
    assert not replaced[:, fixed].any()
    assert torch.equal(out[:, fixed], kpts[:, fixed])
    others = [j for j in range(21) if j not in fixed]
    assert torch.equal(replaced[:, others], shared[:, others])


def test_joints_outside_their_box_get_the_outside_box_margin():
    kpts = torch.tensor([[[0., 0.], [10., 5.], [11., 5.], [5., -1.]],
                         [[2., 2.], [3., 3.], [0., 0.], [30., 3.]]])
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 4., 4.]])
    outside = joints_outside_boxes(kpts, boxes)
    # on the box's edge is inside
    np.testing.assert_array_equal(outside.numpy(), [[False, False, True, True],
                                                    [False, False, True, True]])
    inf = float('inf')
    margins = outside_box_margins([0.1, inf, inf, 0.0], outside, 0.05)
    np.testing.assert_array_equal(margins.numpy(), [[0.1, inf, 0.05, 0.0],
                                                    [0.1, inf, 0.05, 0.0]])
    np.testing.assert_array_equal(outside_box_margins(0.2, outside, 0.0).numpy(),
                                  [[0.2, 0.2, 0.0, 0.0], [0.2, 0.2, 0.0, 0.0]])
    # per-joint margins (B, K) are what the gate takes
    quality = torch.tensor([[[0.0, 0.1]] * 4] * 2)
    np.testing.assert_array_equal(expected_gain_gate(quality, margins).numpy(),
                                  [[False, False, True, True], [False, False, True, True]])
    with pytest.raises(ValueError, match='one per joint class'):
        outside_box_margins([0.0, 0.0], outside, 0.0)
    with pytest.raises(ValueError, match='outside_box_margin'):
        outside_box_margins(0.0, outside, -0.1)


def test_refiner_moves_joints_outside_their_box_whatever_their_class_margin(real):
    kpts, scores, boxes = real
    kpts, scores = kpts.clone(), scores.clone()
    # one doubtful joint per instance put outside its box, as a placeholder
    # at the image origin or a joint on another person would lie
    rows, cols = torch.arange(len(kpts)), torch.arange(len(kpts)) % 21
    kpts[rows, cols] = boxes[rows, :2] - 40
    scores[rows, cols] = 0.0
    refiner = gated_refiner(margin='never')
    _, fixed = refiner.refine(kpts, scores, boxes)
    assert not fixed.any()  # inf: no joint moves
    refiner.rule = refiner.rule.replace(gate=dict(margin='never', outside_box=0.0))
    out, replaced = refiner.refine(kpts, scores, boxes)
    _, quality = refiner.reconstruct_with_errors(kpts, scores, boxes, scores < 0.5)
    outside = joints_outside_boxes(kpts, boxes)
    assert outside[rows, cols].all()
    gain = quality[..., 1] > quality[..., 0]
    expected = outside & (scores < 0.5) & gain
    # the test sees joints outside that move and that do not, and joints
    # inside that would move at margin 0
    assert expected.sum() >= 5 and (outside & ~gain).sum() >= 5
    assert ((scores < 0.5) & gain & ~outside).sum() >= 20
    assert torch.equal(replaced, expected)
    assert torch.equal(out[~replaced], kpts[~replaced])
    with pytest.raises(RuleError, match='outside_box'):
        gated_refiner(outside_box=-1.0)


def test_gate_needs_an_error_head():
    init_default_scope('mmpose')
    with pytest.raises(RuleError, match='predict_errors'):
        MODELS.build(dict(type='PORTRefiner', metainfo=HAND_META,
                          network=dict(type='PoseRelationTransformer', mask_mode='hint'),
                          test_cfg=dict(rule=dict(gate=dict(margin=0.0)))))
    net = MODELS.build(dict(type='PoseRelationTransformer', num_keypoints=3,
                            skeleton_links=[(0, 1)]))
    with pytest.raises(RuntimeError, match='predict_errors'):
        net.forward_with_errors(torch.zeros(1, 3, 2), torch.zeros(1, 3, dtype=torch.bool),
                                torch.ones(1, 3))


def test_quality_loss_log_distance_is_l1_of_log_errors():
    inputs = torch.tensor([[[0.3, 0.4], [0.0, 0.0]]])        # errors 0.5 and 0
    recon = torch.tensor([[[0.0, 0.1], [0.0, 0.2]]])         # errors 0.1 and 0.2
    target = torch.zeros(1, 2, 2)
    raw = torch.log(torch.tensor([[[0.5, 0.1], [1.0, 0.2]]]) + DISTANCE_FLOOR)
    # joint 0 is estimated exactly; joint 1's input estimate is off by
    # log((1 + floor) / floor)
    full = quality_loss(raw, inputs, recon, target, torch.ones(1, 2))
    expected = np.log((1 + DISTANCE_FLOOR) / DISTANCE_FLOOR) / 2
    assert full.item() == pytest.approx(expected, rel=1e-5)
    only_first = quality_loss(raw, inputs, recon, target, torch.tensor([[1., 0.]]))
    assert only_first.item() == pytest.approx(0.0, abs=1e-6)


def test_quality_loss_keypoint_similarity_is_bce_with_oks_terms():
    tol = joint_tolerances([0.05, 0.1], scale=0.5)  # 2 * sigma * scale
    torch.testing.assert_close(tol, torch.tensor([0.05, 0.1]))
    inputs = torch.tensor([[[0.05, 0.0], [0.0, 0.0]]])  # d = tolerance, and 0
    recon = torch.tensor([[[0.0, 0.0], [0.0, 0.2]]])    # d = 0, and 2 tolerances
    sim = torch.tensor([[[np.exp(-0.5), 1.0], [1.0, np.exp(-2.0)]]], dtype=torch.float32)
    raw = torch.zeros(1, 2, 2)  # estimates 0.5 everywhere
    loss = quality_loss(raw, inputs, recon, torch.zeros(1, 2, 2), torch.ones(1, 2),
                        'keypoint_similarity', tol)
    bce = -(sim * np.log(0.5) + (1 - sim) * np.log(0.5))  # = log 2 for any target
    assert loss.item() == pytest.approx(bce.sum().item() / 2, rel=1e-5)
    # the loss is lowest where the estimate is the actual similarity
    exact = torch.logit(sim.clamp(1e-6, 1 - 1e-6))
    best = quality_loss(exact, inputs, recon, torch.zeros(1, 2, 2), torch.ones(1, 2),
                        'keypoint_similarity', tol)
    for shift in (-0.3, 0.3):
        worse = quality_loss(exact + shift, inputs, recon, torch.zeros(1, 2, 2),
                             torch.ones(1, 2), 'keypoint_similarity', tol)
        assert worse.item() > best.item()
    with pytest.raises(ValueError, match='tolerances'):
        quality_loss(raw, inputs, recon, torch.zeros(1, 2, 2), torch.ones(1, 2),
                     'keypoint_similarity')


def test_error_head_is_trained_by_pose_loss(real):
    kpts, scores, boxes = real
    refiner = gated_refiner()
    refiner.train()
    mask = scores < 0.5
    losses = refiner.pose_loss(kpts, scores, boxes, mask, kpts + 3.0, torch.ones_like(mask))
    assert set(losses) == {'loss_masked', 'loss_visible', 'loss_error'}
    losses['loss_error'].backward()
    assert refiner.network.error_head.weight.grad.abs().sum() > 0
    assert refiner.network.head.weight.grad is None  # the error loss leaves positions alone


def test_margins_are_chosen_per_joint_class_on_validation_costs():
    inf = float('inf')
    # four validation persons, three joint classes; cost 1 = outside the tolerance
    gain = torch.tensor([[0.03, 0.30, 0.5], [0.01, 0.15, 0.5], [0.08, 0.04, 0.5],
                         [0.50, 0.01, 0.5]])
    input_cost = torch.tensor([[1., 1., 0.], [0., 1., 0.], [1., 0., 0.], [1., 0., 0.]])
    recon_cost = torch.tensor([[0., 0., 1.], [1., 0., 0.], [0., 1., 0.], [0., 1., 0.]])
    # joint 0: every move but person 1's helps; margin 0.02 skips only it (cost
    # 0), 0 moves all and 0.05 skips person 0 too (1), inf moves none (3)
    # joint 1: moves with gain > 0.1 help, smaller ones hurt: 0.1 and 0.05
    # (the same moves) tie, and the larger margin wins
    # joint 2: moving only hurts: kept where it is
    assert choose_gate_margins(gain, input_cost, recon_cost) == [0.02, 0.1, inf]
    # unlabelled joints do not count: with person 1 alone, joint 0's only
    # candidate move hurts, and margins that skip it tie with inf, which wins
    weight = torch.tensor([[False, True, True], [True, True, True],
                           [False, True, True], [False, True, True]])
    assert choose_gate_margins(gain, input_cost, recon_cost, weight)[0] == inf
    # a second criterion (distances) only breaks the first one's ties: for
    # joint 2 the distances favour moving, the hits forbid it
    dist_in = torch.tensor([[5., 5., 2.], [1., 5., 2.], [5., 1., 2.], [5., 1., 2.]])
    dist_rec = torch.tensor([[1., 1., 1.5], [6., 1., 1.], [1., 6., 1.], [1., 6., 1.]])
    lexi = choose_gate_margins(gain, torch.stack([input_cost, dist_in], -1),
                               torch.stack([recon_cost, dist_rec], -1))
    assert lexi == [0.02, 0.1, inf]
    tie = torch.zeros(4, 3)
    assert choose_gate_margins(gain, torch.stack([tie, dist_in], -1),
                               torch.stack([tie, dist_rec], -1)) == [0.02, 0.1, 0.2]
    # a grid of one margin: that margin or inf
    assert choose_gate_margins(gain, dist_in, dist_rec, margins=(0.0,)) == [0.0, inf, 0.0]
    with pytest.raises(ValueError, match='finite'):
        choose_gate_margins(gain, input_cost * inf, recon_cost)
    with pytest.raises(ValueError, match=r'\(N, K\)'):
        choose_gate_margins(gain[0], input_cost, recon_cost)


def test_margins_with_domains_guard_the_worst_domain():
    inf = float('inf')
    # one joint class, two domains of three joints each (e.g. refiners
    # validated on a model whose errors they were not trained on)
    gain = torch.tensor([[0.3], [0.15], [0.01], [0.3], [0.15], [0.01]])
    input_cost = torch.tensor([[1.], [1.], [1.], [1.], [0.], [0.]])
    recon_cost = torch.tensor([[0.], [0.], [0.], [0.], [1.], [0.]])
    domains = torch.tensor([0, 0, 0, 1, 1, 1])
    # pooled, moving everything (margin 0) helps most: 4 misses fixed, 1 made
    assert choose_gate_margins(gain, input_cost, recon_cost) == [0.0]
    # per domain: margins 0 to 0.1 fix nothing in domain 1 (one miss fixed,
    # one made); 0.2 (only the largest gains) fixes one miss in each
    assert choose_gate_margins(gain, input_cost, recon_cost, domains=domains) == [0.2]
    # a domain in which every move hurts keeps the joint class where it is,
    # however much the other gains
    fine = torch.tensor([[0.], [0.], [0.], [3.], [3.], [3.]])
    hurt = torch.tensor([[1.], [1.], [1.], [0.], [0.], [0.]])
    assert choose_gate_margins(gain, fine, hurt) == [0.0]
    assert choose_gate_margins(gain, fine, hurt, domains=domains) == [inf]
    # one domain is the plain choice
    assert choose_gate_margins(gain, input_cost, recon_cost,
                               domains=torch.zeros(6, dtype=torch.long)) == [0.0]
    with pytest.raises(ValueError, match='domains'):
        choose_gate_margins(gain, input_cost, recon_cost, domains=domains[:4])


def test_margins_with_a_confidence_bound_refuse_noisy_gains():
    inf = float('inf')
    gain = torch.full((40, 1), 0.5)
    fixed = torch.zeros(40, 1)  # every reconstruction within the tolerance
    # noisy: 21 misses fixed, 19 made (net 2, standard error about 6.3)
    noisy = torch.cat([torch.ones(21, 1), torch.zeros(19, 1)])
    noisy_rec = torch.cat([torch.zeros(21, 1), torch.ones(19, 1)])
    assert choose_gate_margins(gain, noisy, noisy_rec) == [0.2]
    assert choose_gate_margins(gain, noisy, noisy_rec, z=2.0) == [inf]
    # clear: 30 fixed, 2 made (net 28, standard error about 3.6)
    clear = torch.cat([torch.ones(30, 1), torch.zeros(10, 1)])
    clear_rec = torch.cat([torch.zeros(38, 1), torch.ones(2, 1)])
    assert choose_gate_margins(gain, clear, clear_rec, z=2.0) == [0.2]
    # only the moved joints' differences count: staying is 0
    some = torch.tensor([0.5] * 30 + [0.0] * 10)[:, None]
    assert choose_gate_margins(some, clear, clear_rec, z=2.0) == [0.2]
    # the bound applies on the first criterion that is not 0: the same
    # misses (none), then distances lowered by 1 +- 0.1 (clear) or +- 5
    dist = torch.full((40, 1), 5.0)
    wobble = torch.tensor([0.1, -0.1] * 20)[:, None]
    for spread, expected in ((1.0, 0.2), (50.0, inf)):
        assert choose_gate_margins(gain, torch.stack([fixed, dist], -1),
                                   torch.stack([fixed, dist - 1 + spread * wobble], -1),
                                   z=2.0) == [expected]
    # correlated samples: 20 misses fixed, all in one image of 20 persons
    # and none in 20 others, is one lucky image, not 20 gains
    one_image = torch.cat([torch.ones(20, 1), torch.zeros(20, 1)])
    clusters = torch.cat([torch.zeros(20, dtype=torch.long), torch.arange(1, 21)])
    assert choose_gate_margins(gain, one_image, fixed, z=2.0) == [0.2]
    assert choose_gate_margins(gain, one_image, fixed, z=2.0, clusters=clusters) == [inf]
    # with domains, each must clear the bound
    domains = torch.cat([torch.zeros(40, dtype=torch.long), torch.ones(40, dtype=torch.long)])
    both = [torch.cat(x) for x in ((gain, gain), (clear, noisy), (clear_rec, noisy_rec))]
    assert choose_gate_margins(*both, domains=domains) == [0.2]
    assert choose_gate_margins(*both, domains=domains, z=2.0) == [inf]
    with pytest.raises(ValueError, match='clusters'):
        choose_gate_margins(gain, clear, clear_rec, clusters=clusters[:3])
    with pytest.raises(ValueError, match='z must'):
        choose_gate_margins(gain, clear, clear_rec, z=-1.0)
