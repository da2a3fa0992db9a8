"""Instance rescoring from the refiner's expected keypoint similarities."""
import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

from mmport.fitting import fit_similarity_calibration
from mmport.models.instance_rescoring import (calibrated_similarity,
                                              expected_instance_similarity,
                                              rescored_instance_scores)

COCO_META = dict(from_file='configs/_base_/datasets/coco.py')


def test_expected_similarity_takes_each_output_joints_estimate():
    quality = torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]],
                            [[0.4, 0.7], [0.6, 0.3], [1.0, 0.0]]])
    replaced = torch.tensor([[False, True, False], [True, False, False]])
    torch.testing.assert_close(expected_instance_similarity(quality, replaced),
                               torch.tensor([(0.9 + 0.8 + 0.5) / 3, (0.7 + 0.6 + 1.0) / 3]))


def test_rescoring_is_a_geometric_blend():
    scores, oks = torch.tensor([0.9, 0.4, 0.5]), torch.tensor([0.25, 0.81, 0.5])
    torch.testing.assert_close(rescored_instance_scores(scores, oks, 0.0), scores)
    torch.testing.assert_close(rescored_instance_scores(scores, oks, 1.0), oks)
    torch.testing.assert_close(rescored_instance_scores(scores, oks, 0.5),
                               torch.tensor([(0.9 * 0.25) ** 0.5, (0.4 * 0.81) ** 0.5, 0.5]))
    # the ranking flips where the estimate disagrees strongly enough
    assert rescored_instance_scores(scores, oks, 0.5)[1] > rescored_instance_scores(
        scores, oks, 0.5)[0]
    kept = rescored_instance_scores(scores, oks, 1.0, valid=torch.tensor([True, False, True]))
    torch.testing.assert_close(kept, torch.tensor([0.25, 0.4, 0.5]))
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        rescored_instance_scores(scores, oks, 1.5)


def body_refiner(**rescore):
    init_default_scope('mmpose')
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='PORTRefiner', metainfo=COCO_META, quality_kind='keypoint_similarity',
        network=dict(type='PoseRelationTransformer', embed_dim=32, depth=2, num_heads=1,
                     mask_mode='hint', predict_errors=True),
        test_cfg=dict(rule=dict(score_thr=0.5, gate=dict(margin=0.0),
                                rescore=dict(rescore) if rescore else None))))
    torch.nn.init.normal_(model.network.error_head.weight, std=0.5)
    return model.eval()


def test_refine_and_rescore_uses_the_estimates_of_every_instance():
    rng = np.random.default_rng(0)
    n = 40
    kpts = torch.from_numpy(rng.uniform(20, 180, (n, 17, 2))).float()
    scores = torch.from_numpy(rng.uniform(0, 1, (n, 17))).float()
    scores[:5] = 0.9  # no joint below the threshold: still judged
    boxes = torch.tensor([[0., 0., 200., 200.]]).repeat(n, 1)
    inst = torch.from_numpy(rng.uniform(0.2, 1, n)).float()
    refiner = body_refiner(weight=1.0)
    refined, replaced, rescored = refiner.refine_and_rescore(kpts, scores, boxes, inst)
    plain, plain_replaced = refiner.refine(kpts, scores, boxes)
    assert torch.equal(replaced, plain_replaced)
    torch.testing.assert_close(refined, plain)
    # each output joint judged by the estimate of what it is: a replaced
    # joint by the reconstruction that replaced it (the pass in which the
    # candidates were masked), a joint that is no candidate by its input's
    # estimate in a pass where every joint is one (where the error head is
    # trained)
    candidates = scores < 0.5
    _, first = refiner.reconstruct_with_errors(kpts, scores, boxes, candidates)
    _, every = refiner.reconstruct_with_errors(kpts, scores, boxes, torch.ones_like(replaced))
    judged = torch.where(candidates[..., None], first, every)
    torch.testing.assert_close(rescored, expected_instance_similarity(judged, replaced))
    assert replaced.any() and not torch.allclose(first[replaced], every[replaced])
    assert not torch.allclose(rescored[:5], inst[:5])
    refiner.rule = refiner.rule.replace(rescore=dict(weight=0.5))
    _, _, half = refiner.refine_and_rescore(kpts, scores, boxes, inst)
    torch.testing.assert_close(half, (inst * rescored).sqrt())
    refiner.rule = refiner.rule.replace(rescore=None)  # off: the scores come back as given
    _, _, same = refiner.refine_and_rescore(kpts, scores, boxes, inst)
    assert torch.equal(same, inst)
    with pytest.raises(ValueError, match='instance_scores'):  # checked when off too
        refiner.refine_and_rescore(kpts, scores, boxes, inst[:-1])
    # every joint a candidate already: one pass judges
    refiner.rule = refiner.rule.replace(candidates='all', score_thr=None,
                                        rescore=dict(weight=1.0))
    _, all_replaced, one_pass = refiner.refine_and_rescore(kpts, scores, boxes, inst)
    torch.testing.assert_close(one_pass, expected_instance_similarity(every, all_replaced))
    # a person the refiner cannot judge (no valid box) keeps its score
    boxes[3] = torch.tensor([5., 5., 5., 5.])
    _, _, rescored = refiner.refine_and_rescore(kpts, scores, boxes, inst)
    assert rescored[3] == inst[3]


def test_rescoring_needs_keypoint_similarity_estimates():
    init_default_scope('mmpose')
    with pytest.raises(ValueError, match='rescore'):
        MODELS.build(dict(type='PORTRefiner', metainfo=COCO_META,
                          network=dict(type='PoseRelationTransformer', embed_dim=16, depth=1,
                                       num_heads=1, predict_errors=True),
                          test_cfg=dict(rule=dict(rescore=dict(weight=0.5)))))


def test_calibration_maps_estimates_to_observed_similarity():
    rng = np.random.default_rng(0)
    expected = rng.uniform(0.2, 0.9, 4000)
    # a refiner that overestimates: the observed OKS is lower, and noisy
    observed = np.clip(expected ** 2 + rng.normal(0, 0.05, expected.shape), 0, 1)
    xs, ys = fit_similarity_calibration(expected, observed)
    assert len(xs) == 21 and np.all(np.diff(xs) > 0) and np.all(np.diff(ys) > 0)
    assert xs[0] == expected.min() and xs[-1] == expected.max()
    probe = torch.tensor([0.3, 0.5, 0.7, 0.85])
    mapped = calibrated_similarity(probe, [xs, ys])
    torch.testing.assert_close(mapped, probe ** 2, atol=0.02, rtol=0)
    # exact at the knots, linear between them, constant beyond the ends
    torch.testing.assert_close(calibrated_similarity(torch.tensor(xs), [xs, ys]),
                               torch.tensor(ys).float())
    mid = calibrated_similarity(torch.tensor([(xs[3] + xs[4]) / 2]), [xs, ys])
    assert abs(mid.item() - (ys[3] + ys[4]) / 2) < 1e-6
    ends = calibrated_similarity(torch.tensor([0.0, 1.0]), [xs, ys])
    torch.testing.assert_close(ends, torch.tensor([ys[0], ys[-1]]).float())
    # monotone, so one refiner's ranking of its instances is kept
    order = torch.argsort(torch.from_numpy(expected).float())
    assert bool((calibrated_similarity(torch.from_numpy(expected).float(), [xs, ys])[order]
                 .diff() >= 0).all())


def test_calibration_refuses_bad_input():
    with pytest.raises(ValueError, match='all equal'):
        fit_similarity_calibration(np.full(10, 0.5), np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match='finite'):
        fit_similarity_calibration(np.array([0.1, np.nan]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match=r'\(N,\)'):
        fit_similarity_calibration(np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match='increasing'):
        calibrated_similarity(torch.zeros(2), [[0.5, 0.2], [0.1, 0.3]])
    with pytest.raises(ValueError, match='calibration'):  # at build time, not at first use
        body_refiner(weight=1.0, calibration=[[0.2], [0.3]])


def test_refine_and_rescore_applies_the_calibration():
    rng = np.random.default_rng(1)
    n = 30
    kpts = torch.from_numpy(rng.uniform(20, 180, (n, 17, 2))).float()
    scores = torch.from_numpy(rng.uniform(0, 1, (n, 17))).float()
    boxes = torch.tensor([[0., 0., 200., 200.]]).repeat(n, 1)
    inst = torch.from_numpy(rng.uniform(0.2, 1, n)).float()
    boxes[3] = torch.tensor([5., 5., 5., 5.])  # not judged: keeps its score
    raw = body_refiner(weight=1.0).refine_and_rescore(kpts, scores, boxes, inst)[2]
    calibration = [[0.0, 0.5, 1.0], [0.0, 0.1, 0.9]]
    refiner = body_refiner(weight=0.5, calibration=calibration)
    _, _, half = refiner.refine_and_rescore(kpts, scores, boxes, inst)
    mapped = calibrated_similarity(raw, calibration)
    expected = (inst * mapped).sqrt()
    expected[3] = inst[3]
    torch.testing.assert_close(half, expected)
    assert not torch.allclose(half, (inst * raw).sqrt())
