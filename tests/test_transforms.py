import numpy as np
import pytest
import torch
from mmpose.datasets.datasets.utils import parse_pose_metainfo
from mmpose.registry import TRANSFORMS

from mmport.datasets.transforms import (KeypointRandomAffine, KeypointRandomFlip,
                                        LoadInitialPredictions, MaskJoints,
                                        PackRefinerInputs, SetRefinerInputs, chain_joint_mask,
                                        skeleton_subtrees)

COCO = parse_pose_metainfo(dict(from_file='configs/_base_/datasets/coco.py'))
HAND = parse_pose_metainfo(dict(from_file='configs/_base_/datasets/panoptic_hand2d.py'))


def _sample(meta, seed=0):
    rng = np.random.default_rng(seed)
    k = meta['num_keypoints']
    kpts = rng.uniform(100, 200, (1, k, 2)).astype(np.float32)
    return dict(keypoints=kpts, keypoints_visible=np.ones((1, k), np.float32),
                bbox=np.array([[90., 80., 210., 220.]], np.float32),
                input_keypoints=kpts + 1, input_keypoint_scores=rng.uniform(0, 1, (1, k)),
                flip_indices=meta['flip_indices'], skeleton_links=meta['skeleton_links'],
                img_path='x.jpg', id=7)


def test_registered_in_mmpose():
    for name in ('MaskJoints', 'SetRefinerInputs', 'KeypointRandomAffine',
                 'KeypointRandomFlip', 'PackRefinerInputs', 'LoadInitialPredictions'):
        assert TRANSFORMS.get(name) is not None, name


@pytest.mark.parametrize('ratio', [0.3, 0.4])
@pytest.mark.parametrize('strategy', ['random', 'region'])
def test_mask_ratio_honoured(ratio, strategy):
    t = MaskJoints(ratio=ratio, strategies=[strategy], seed=1)
    for i in range(20):
        mask = t(dict(_sample(HAND), id=i))['joint_mask']
        assert mask.shape == (1, 21) and mask.dtype == bool
        assert mask.sum() == round(ratio * 21)


def test_random_mask_is_uniform_over_joints():
    t = MaskJoints(ratio=0.3, strategies=['random'], seed=0)
    freq = np.mean([t(dict(_sample(HAND), id=i))['joint_mask'][0] for i in range(3000)],
                   axis=0)
    np.testing.assert_allclose(freq, 6 / 21, atol=0.04)


def test_chain_mask_is_a_finger_chain():
    subtrees = skeleton_subtrees(21, HAND['skeleton_links'], root=0)
    # below the index finger's base (5) lie 5..8, and nothing else
    assert np.flatnonzero(subtrees[5]).tolist() == [5, 6, 7, 8]
    assert subtrees[0].all()
    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = chain_joint_mask(subtrees, 0.3, rng)
        assert 1 <= mask.sum() <= round(0.3 * 21)
        idx = np.flatnonzero(mask)
        assert any((subtrees[j] == mask).all() for j in idx)  # exactly one subtree


def test_mask_adds_low_confidence_joints():
    s = _sample(HAND)
    s['input_keypoint_scores'][0, :] = 0.9
    s['input_keypoint_scores'][0, [3, 10]] = 0.1
    mask = MaskJoints(ratio=0.1, strategies=['random'], score_thr=0.3, seed=0)(s)['joint_mask']
    assert mask[0, 3] and mask[0, 10]


def test_mask_erase_hides_masked_confident_joints_only():
    s = _sample(HAND)
    s['input_keypoint_scores'][0, :] = 0.9
    s['input_keypoint_scores'][0, [3, 10]] = 0.1
    doubtful = np.isin(np.arange(21), [3, 10])
    inputs, scores = s['input_keypoints'].copy(), s['input_keypoint_scores'].copy()
    # the same seed draws the same strategy mask with or without erasing
    strategy = MaskJoints(ratio=0.3, strategies=['random'], seed=0)(dict(s))['joint_mask'][0]
    out = MaskJoints(ratio=0.3, strategies=['random'], score_thr=0.3, erase=True, seed=0)(s)
    erased = strategy & ~doubtful
    assert erased.any()
    np.testing.assert_array_equal(out['joint_mask'][0], strategy | doubtful)
    np.testing.assert_array_equal(out['input_keypoint_scores'][0],
                                  np.where(erased, 0.0, scores[0]))
    np.testing.assert_array_equal(out['input_keypoints'][0, ~erased], inputs[0, ~erased])
    centroid = inputs[0, ~strategy].mean(0)
    np.testing.assert_allclose(out['input_keypoints'][0, erased],
                               np.broadcast_to(centroid, (erased.sum(), 2)), rtol=1e-6)
    np.testing.assert_array_equal(out['keypoints'], inputs - 1)  # ground truth untouched


def test_mask_rejects_bad_config():
    with pytest.raises(ValueError, match='ratio'):
        MaskJoints(ratio=1.5)
    with pytest.raises(ValueError, match='strategies'):
        MaskJoints(strategies=['everything'])


def test_flip_uses_flip_indices_and_mirrors():
    s = _sample(COCO)
    before = {k: s[k].copy() for k in ('keypoints', 'input_keypoints', 'input_keypoint_scores')}
    out = KeypointRandomFlip(prob=1.0)(s)
    assert out['flip']
    # COCO: left_shoulder (5) <-> right_shoulder (6); box centre x = 150
    np.testing.assert_allclose(out['keypoints'][0, 5, 0], 300 - before['keypoints'][0, 6, 0])
    np.testing.assert_allclose(out['keypoints'][0, 5, 1], before['keypoints'][0, 6, 1])
    np.testing.assert_allclose(out['input_keypoint_scores'][0, 5],
                               before['input_keypoint_scores'][0, 6])
    # flipping twice restores everything
    again = KeypointRandomFlip(prob=1.0)(out)
    for k, v in before.items():
        np.testing.assert_allclose(again[k], v, rtol=1e-6)


def test_affine_moves_all_keypoint_sets_together():
    s = _sample(HAND)
    original = s['keypoints'].copy()
    offset = s['input_keypoints'] - s['keypoints']
    out = KeypointRandomAffine(rotate_factor=90, scale_range=(0.5, 1.5), shift_factor=0.2,
                               seed=3)(s)
    new_offset = out['input_keypoints'] - out['keypoints']
    # a similarity transform keeps the offset's length ratio between joints
    ratio = np.linalg.norm(new_offset, axis=-1) / np.linalg.norm(offset, axis=-1)
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-4)
    assert not np.allclose(out['keypoints'], original)
    # the box does not move: it defines the frame
    np.testing.assert_array_equal(out['bbox'], [[90., 80., 210., 220.]])


def test_set_refiner_inputs_uses_real_prediction_or_jittered_gt():
    s = _sample(HAND)
    s['init_keypoints'] = s['keypoints'] + 5
    s['init_keypoint_scores'] = np.full((1, 21), 0.42, np.float32)
    out = SetRefinerInputs(init_prob=1.0)(dict(s))
    np.testing.assert_allclose(out['input_keypoints'], s['init_keypoints'])
    assert out['input_is_init']
    out = SetRefinerInputs(init_prob=0.0, jitter=0.01, score_range=(0.6, 0.9), seed=0)(dict(s))
    assert not out['input_is_init']
    dev = np.abs(out['input_keypoints'] - s['keypoints'])
    assert 0 < dev.mean() < 0.05 * 140
    assert ((out['input_keypoint_scores'] >= 0.6) & (out['input_keypoint_scores'] <= 0.9)).all()
    with pytest.raises(KeyError, match='no initial'):
        SetRefinerInputs(init_prob=1.0)(dict(_sample(HAND)))


def test_pack_refiner_inputs():
    s = _sample(HAND)
    s['joint_mask'] = np.zeros((1, 21), bool)
    s['head_size'] = 140.0
    packed = PackRefinerInputs()(s)
    assert packed['inputs'].shape == (21, 3) and packed['inputs'].dtype == torch.float32
    gt = packed['data_samples'].gt_instances
    assert gt.bboxes.shape == (1, 4) and gt.keypoints.shape == (1, 21, 2)
    assert gt.joint_mask.shape == (1, 21) and gt.head_size.shape == (1,)
    assert packed['data_samples'].metainfo['id'] == 7


def test_transplant_lays_real_errors_onto_other_poses():
    t = SetRefinerInputs(init_prob=0.0, synthetic='transplant', seed=0)
    donor = _sample(HAND, seed=1)
    donor['init_keypoints'] = donor['keypoints'] + np.linspace(0, 14, 21)[None, :, None]
    donor['init_keypoint_scores'] = np.linspace(0.1, 0.9, 21)[None]
    t(dict(donor))  # a real prediction enters the pool (init_prob=0: not used as input)
    other = _sample(HAND, seed=2)
    other['bbox'] = other['bbox'] * 2  # twice the size: errors scale with the box
    out = t(dict(other))
    np.testing.assert_allclose(out['input_keypoints'] - other['keypoints'],
                               2 * (donor['init_keypoints'] - donor['keypoints']), atol=1e-3)
    np.testing.assert_allclose(out['input_keypoint_scores'], donor['init_keypoint_scores'])
    assert not out['input_is_init']


def test_seeded_draws_are_per_sample():
    from mmport.datasets.transforms.randomness import RandomSource, sample_key
    assert sample_key(dict(sample_idx=3, img_id=np.int64(785), id='a')) == [3, 785, 3904355907]
    assert sample_key(dict(img_path='x.jpg')) == []
    source = RandomSource(seed=5)
    first = [source.generator(dict(id=i)).random() for i in range(4)]
    again = [source.generator(dict(id=i)).random() for i in reversed(range(4))][::-1]
    assert first == again and len(set(first)) == 4  # any order; samples differ
    assert RandomSource(seed=6).generator(dict(id=0)).random() != first[0]
    # no identifying field: one private sequence (the order of calls matters)
    unkeyed = RandomSource(seed=5)
    assert unkeyed.generator().random() != unkeyed.generator().random()
    # unseeded: numpy's global state, which mmengine seeds per run and worker
    np.random.seed(0)
    a = RandomSource().generator(dict(id=1)).random()
    np.random.seed(0)
    assert RandomSource().generator(dict(id=1)).random() == a


def _seeded_inputs(num_workers, reverse=False):
    """The COCO config's held-out pipeline (SynthesizePoseErrors, seed 1234)
    through a torch DataLoader: input pose (N, 17, 3) of every sample of fold
    0, in dataset order."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from mmpose.registry import DATASETS
    init_default_scope('mmpose')
    cfg = Config.fromfile('configs/port/port_coco_keypoints-only.py')
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    order = list(range(len(dataset)))[::-1 if reverse else 1]
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, sampler=order,
                                         num_workers=num_workers, collate_fn=pseudo_collate)
    inputs = torch.cat([torch.stack(batch['inputs']) for batch in loader]).numpy()
    return inputs[::-1] if reverse else inputs


def test_seeded_pipeline_gives_the_same_samples_for_any_num_workers():
    single = _seeded_inputs(0)
    assert single.shape[1:] == (17, 3) and len(single) > 32  # several batches per worker
    np.testing.assert_array_equal(single, _seeded_inputs(2))
    np.testing.assert_array_equal(single, _seeded_inputs(0, reverse=True))  # any order
    # the draws differ between samples: the first two samples' errors are not equal
    assert not np.array_equal(single[0, :, 2], single[1, :, 2])


def _panoptic_sample(index: int = 0) -> dict:
    """A real Panoptic hand as MMPose's top-down dataset gives it: the
    annotation's box and keypoints, the image path the results file names."""
    from mmport.utils import load_json
    coco = load_json('data/panoptic/annotations/panoptic_test.json')
    ann = coco['annotations'][index]
    image = next(im for im in coco['images'] if im['id'] == ann['image_id'])
    x, y, w, h = ann['bbox']
    kpts = np.asarray(ann['keypoints'], np.float32).reshape(1, -1, 3)
    return dict(img_path=image['file_name'], img_id=ann['image_id'],
                bbox=np.array([[x, y, x + w, y + h]], np.float32),
                keypoints=kpts[..., :2], keypoints_visible=(kpts[..., 2] > 0).astype(np.float32))


def test_load_initial_predictions_frames_by_the_results_box():
    from mmport.datasets.prediction_files import load_pose_results
    results = 'data/panoptic/mobilenetv2_panoptic_256x256_test.pkl'
    res = load_pose_results(results)
    sample = _panoptic_sample(0)
    ann_box = sample['bbox'].copy()
    out = LoadInitialPredictions(results)(dict(sample))
    i = [n for n, k in enumerate(res.image_keys) if k.endswith(sample['img_path'])][0]
    # the frame is the crop the detector ran on (the 0.x pickle's centre and
    # scale * 200), not the annotation's box, which is kept as gt_bbox
    np.testing.assert_allclose(out['bbox'][0], res.bboxes[i], rtol=1e-6)
    np.testing.assert_array_equal(out['gt_bbox'], ann_box)
    assert not np.allclose(out['bbox'], ann_box)
    np.testing.assert_allclose(out['init_keypoints'][0], res.keypoints[i], rtol=1e-6)
    kept = LoadInitialPredictions(results, frame='annotation')(dict(sample))
    np.testing.assert_array_equal(kept['bbox'], ann_box)
    assert 'gt_bbox' not in kept
    with pytest.raises(ValueError, match='frame must be'):
        LoadInitialPredictions(results, frame='ann')
