import numpy as np
import pytest
from mmpose.datasets.datasets.utils import parse_pose_metainfo

from mmport.datasets.transforms import (ERROR_TYPES, LoadOcclusionFlags, SynthesizePoseErrors,
                                        synthesize_errors)
from mmport.datasets.transforms.error_synthesis import KS_BANDS, ks_to_distance

COCO = parse_pose_metainfo(dict(from_file='configs/_base_/datasets/coco.py'))
SIGMAS = np.asarray(COCO['sigmas'])
FLIP = COCO['flip_indices']


def _pose(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(100, 300, (17, 2))


def _only(kind, k=17):
    probs = np.zeros((k, len(ERROR_TYPES)))
    probs[:, ERROR_TYPES.index(kind)] = 1
    return probs


@pytest.mark.parametrize('kind', ['good', 'jitter', 'miss'])
def test_displacements_stay_in_their_oks_band(kind):
    gt, area = _pose(), 100.0 ** 2
    out, scores, types = synthesize_errors(gt, np.ones(17), area, SIGMAS, FLIP, _only(kind),
                                           np.random.default_rng(0))
    assert (types == ERROR_TYPES.index(kind)).all()
    d = np.linalg.norm(out - gt, axis=1)
    lo, hi = KS_BANDS[kind]
    # distance d <-> ks = exp(-d^2 / (2 s^2 k^2)) must lie in the band
    ks = np.exp(-d ** 2 / (2 * area * (2 * SIGMAS) ** 2))
    assert ((ks >= lo - 1e-9) & (ks <= hi + 1e-9)).all()


def test_inversion_moves_joint_to_its_left_right_partner():
    gt = _pose()
    out, _, types = synthesize_errors(gt, np.ones(17), 100.0 ** 2, SIGMAS, FLIP,
                                      _only('inversion'), np.random.default_rng(0))
    for j in range(17):
        partner = FLIP[j]
        if partner == j:  # the nose has no partner: counted as a miss
            assert types[j] == ERROR_TYPES.index('miss')
            continue
        assert types[j] == ERROR_TYPES.index('inversion')
        radius = ks_to_distance(KS_BANDS['good'][0], 100.0, SIGMAS[j])
        assert np.linalg.norm(out[j] - gt[partner]) <= radius + 1e-9  # the other side


def test_swap_moves_joint_onto_a_nearby_person():
    gt = _pose()
    other = np.concatenate([gt + 15.0, np.full((17, 1), 2.0)], 1)[None]
    out, _, types = synthesize_errors(gt, np.ones(17), 100.0 ** 2, SIGMAS, FLIP, _only('swap'),
                                      np.random.default_rng(0), neighbours=other)
    assert (types == ERROR_TYPES.index('swap')).all()
    for j in range(17):
        nearest = other[0, np.argmin(np.linalg.norm(other[0, :, :2] - gt[j], axis=1)), :2]
        radius = ks_to_distance(KS_BANDS['good'][0], 100.0, SIGMAS[j])
        assert np.linalg.norm(out[j] - nearest) <= radius + 1e-9
    # no other person in the image: a swap cannot happen and becomes a miss
    _, _, types = synthesize_errors(gt, np.ones(17), 100.0 ** 2, SIGMAS, FLIP, _only('swap'),
                                    np.random.default_rng(0))
    assert (types == ERROR_TYPES.index('miss')).all()


def test_probabilities_honoured_over_many_draws():
    probs = dict(jitter=0.2, inversion=0.1, swap=0.0, miss=0.05)
    t = SynthesizePoseErrors(probs=probs,
                             metainfo=dict(from_file='configs/_base_/datasets/coco.py'), seed=0)
    counts = np.zeros(len(ERROR_TYPES))
    for _ in range(2000):
        res = dict(keypoints=_pose()[None].astype(np.float32), keypoints_visible=np.ones((1, 17)),
                   bbox=np.array([[80., 80., 320., 320.]]), flip_indices=FLIP, area=np.array([1e4]))
        counts += np.bincount(t(res)['error_types'][0], minlength=len(ERROR_TYPES))
    freq = counts / counts.sum()
    # the nose (1 of 17 joints) turns its inversions into misses
    expected = np.array([0.65, 0.2, 0.1 * 16 / 17, 0.0, 0.05 + 0.1 / 17])
    np.testing.assert_allclose(freq, expected, atol=0.01)


def test_occluded_joints_are_corrupted_more_often():
    t = SynthesizePoseErrors(probs=dict(jitter=0.1, inversion=0.0, swap=0.0, miss=0.0),
                             occluded_factor=4.0,
                             metainfo=dict(from_file='configs/_base_/datasets/coco.py'), seed=0)
    occluded = np.zeros((1, 17), bool)
    occluded[0, 9:] = True
    bad = np.zeros(17)
    for _ in range(1500):
        res = dict(keypoints=_pose()[None].astype(np.float32), keypoints_visible=np.ones((1, 17)),
                   bbox=np.array([[80., 80., 320., 320.]]), flip_indices=FLIP,
                   keypoints_occluded=occluded)
        bad += t(res)['error_types'][0] != 0
    rate = bad / 1500
    assert rate[:9].mean() == pytest.approx(0.1, abs=0.02)
    assert rate[9:].mean() == pytest.approx(0.4, abs=0.03)


def test_seed_reproducible_and_scores_follow_error_type():
    def run(seed):
        t = SynthesizePoseErrors(metainfo=dict(from_file='configs/_base_/datasets/coco.py'),
                                 seed=seed)
        res = dict(keypoints=_pose()[None].astype(np.float32), keypoints_visible=np.ones((1, 17)),
                   bbox=np.array([[80., 80., 320., 320.]]), flip_indices=FLIP)
        return t(res)
    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a['input_keypoints'], b['input_keypoints'])
    assert not np.array_equal(a['input_keypoints'], c['input_keypoints'])
    _, scores, types = synthesize_errors(_pose(), np.ones(17), 1e4, SIGMAS, FLIP, _only('miss'),
                                         np.random.default_rng(0))
    assert scores.max() <= 0.4


def test_occlusion_flag_survives_from_raw_annotation():
    kps = np.zeros((17, 3))
    kps[:, 2] = 2
    kps[[3, 7], 2] = 1
    kps[5, 2] = 0
    res = LoadOcclusionFlags()(dict(keypoints=np.zeros((1, 17, 2)),
                                    raw_ann_info=dict(keypoints=kps.reshape(-1).tolist())))
    assert np.flatnonzero(res['keypoints_occluded'][0]).tolist() == [3, 7]
    with pytest.raises(KeyError, match='raw annotation'):
        LoadOcclusionFlags()(dict(keypoints=np.zeros((1, 17, 2)), raw_ann_info=None))


def test_occlusion_flag_survives_into_the_metric():
    """COCO v=1 flags: raw annotation -> packed sample -> RefinementMetric."""
    from mmengine.registry import init_default_scope
    from mmpose.registry import DATASETS

    from mmport.evaluation import RefinementMetric
    init_default_scope('mmpose')
    meta = dict(from_file='configs/_base_/datasets/coco.py')
    dataset = DATASETS.build(dict(
        type='CocoDataset', data_root='tests/data/coco/', ann_file='test_coco.json',
        data_prefix=dict(img=''), test_mode=True,
        pipeline=[dict(type='LoadOcclusionFlags'),
                  dict(type='SynthesizePoseErrors', metainfo=meta, seed=0),
                  dict(type='PackRefinerInputs')]))
    samples, flagged = [], 0
    for i in range(len(dataset)):
        raw = np.reshape(dataset.get_data_info(i)['raw_ann_info']['keypoints'], (-1, 3))
        packed = dataset[i]['data_samples']
        occluded = packed.gt_instances.keypoints_occluded[0]
        np.testing.assert_array_equal(occluded, raw[:, 2] == 1)
        flagged += occluded.sum()
        inputs = dataset[i]['inputs'].numpy()
        samples.append(dict(
            gt_instances=packed.gt_instances.to_dict(),
            pred_instances=dict(keypoints=inputs[None, :, :2], keypoints_init=inputs[None, :, :2],
                                refined_mask=np.zeros((1, 17), bool))))
    assert flagged == 17  # test_coco.json: 17 joints with v=1 over its 12 instances
    metric = RefinementMetric(norm_items=['bbox'])
    metric.dataset_meta = parse_pose_metainfo(meta)
    metric.process({}, samples)
    m = metric.compute_metrics(metric.results)
    assert np.isfinite(m['EPE_occluded']) and m['EPE_occluded'] == m['init_EPE_occluded']
