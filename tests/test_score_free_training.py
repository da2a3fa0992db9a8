"""The score-free training harness (benchmarks/score_free_training.py):
frames, transplanted errors, flips, and that a short training lowers the
loss."""
import numpy as np
import pytest
import torch

from benchmarks.score_free_training import (PoseSource, SamplerConfig, ScoreFreeSampler,
                                            to_box_frame)

FLIP = [5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10]
NO_AUGMENT = dict(flip_prob=0.0, rotate=0.0, scale=(1.0, 1.0), shift=0.0)


def test_to_box_frame_by_hand():
    box = np.array([[10.0, 20.0, 30.0, 60.0]])  # centre (20, 40), longer side 40
    pts = np.array([[[20.0, 40.0], [30.0, 60.0], [10.0, 40.0]]])
    np.testing.assert_allclose(to_box_frame(pts, box)[0], [[0, 0], [0.25, 0.5], [-0.25, 0]])


def poses(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.3, 0.3, (n, 16, 2)), np.ones((n, 16), bool)


def test_transplant_lays_real_errors_on_ground_truth():
    gt, lab = poses()
    err = np.full((1, 16, 2), 0.05)
    err[0, 3] = np.nan  # unknown error: that joint gets synthetic jitter instead
    cfg = SamplerConfig(real_prob=0.0, transplant_prob=1.0, jitter=(0.001, 0.001),
                        miss_prob=0.0, swap_prob=0.0, **NO_AUGMENT)
    sampler = ScoreFreeSampler(PoseSource(gt, lab), None, FLIP, err, cfg)
    inp, target, labelled = sampler.sample(np.random.default_rng(1), 64)
    delta = (inp - target).numpy()
    known = np.arange(16) != 3
    np.testing.assert_allclose(delta[:, known], 0.05, atol=1e-6)
    assert np.abs(delta[:, 3]).max() < 0.01  # jitter of std 0.001
    assert labelled.all()


def test_real_samples_and_flip_keep_joint_identity():
    gt, lab = poses(1)
    lab[0, 0] = False  # right ankle unlabelled
    pred = gt + 0.01
    cfg = SamplerConfig(real_prob=1.0, **{**NO_AUGMENT, 'flip_prob': 1.0})
    sampler = ScoreFreeSampler(PoseSource(gt, lab), PoseSource(gt, lab, pred), FLIP, None, cfg)
    inp, target, labelled = sampler.sample(np.random.default_rng(0), 4)
    # mirrored about x = 0 and left/right swapped: joint 5 is the old joint 0
    np.testing.assert_allclose(inp[0, 5].numpy(), [-pred[0, 0, 0], pred[0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(target[0, 2].numpy(), [-gt[0, 3, 0], gt[0, 3, 1]], atol=1e-6)
    assert not labelled[:, 5].any() and labelled[:, 0].all()


@pytest.mark.parametrize('seed', [0])
def test_short_training_lowers_the_loss(seed):
    from benchmarks.benchmark_mpii import build_refiner, refiner_config
    from benchmarks.score_free_training import train_score_free
    gt, lab = poses(64, seed)
    # a systematic offset (as the hourglass models' on MPII) plus small noise
    err = np.random.default_rng(seed).normal(0, 0.003, (64, 16, 2)) + [0.02, -0.03]
    model = build_refiner(refiner_config(embed_dim=16, num_heads=1))
    sampler = ScoreFreeSampler(PoseSource(gt, lab), None, FLIP, err,
                               SamplerConfig(real_prob=0.0, transplant_prob=1.0, **NO_AUGMENT))
    first = train_score_free(model, sampler, iters=1, batch_size=64, seed=seed)['loss']
    torch.manual_seed(seed)
    model = build_refiner(refiner_config(embed_dim=16, num_heads=1))
    last = train_score_free(model, sampler, iters=150, batch_size=64, seed=seed)['loss']
    assert last < 0.5 * first


def test_far_outliers_lie_in_their_range_and_spare_the_other_joints():
    gt, lab = poses(64)
    cfg = SamplerConfig(real_prob=0.0, jitter=(0.001, 0.001), miss_prob=0.0, swap_prob=0.0,
                        outlier_prob=0.25, outlier_range=(0.6, 2.5), **NO_AUGMENT)
    sampler = ScoreFreeSampler(PoseSource(gt, lab), None, FLIP, None, cfg)
    inp, target, _ = sampler.sample(np.random.default_rng(3), 512)
    far = (inp - target).norm(dim=-1) > 0.05
    dist = inp.norm(dim=-1)[far]  # from the box centre, the frame's origin
    assert 0.2 < far.float().mean() < 0.3
    assert dist.min() >= 0.6 - 1e-6 and dist.max() <= 2.5 + 1e-6
    # the other joints keep their jitter of std 0.001
    assert (inp - target)[~far].abs().max() < 0.01


def test_common_offset_is_the_median_error_and_centring_removes_it():
    from benchmarks.score_free_training import common_offset
    rng = np.random.default_rng(0)
    gt, lab = poses(200)
    lab[:5, 0] = False  # unlabelled: NaN error, ignored
    pred = gt + [0.03, -0.04] + rng.normal(0, 0.005, gt.shape)
    pred[:20, 3] += 0.8  # gross errors move a mean, not the median
    src = PoseSource(gt, lab, pred)
    err = src.error_vectors()
    assert np.isnan(err[:5, 0]).all()
    np.testing.assert_allclose(common_offset(err), [0.03, -0.04], atol=1e-3)
    centred = src.error_vectors(centred=True)
    np.testing.assert_allclose(np.nanmedian(centred.reshape(-1, 2), 0), 0, atol=1e-9)
    known = np.isfinite(err)
    np.testing.assert_allclose((centred - err)[known],
                               np.broadcast_to(-common_offset(err), err.shape)[known])
    assert np.isnan(centred[~known]).all()
    np.testing.assert_array_equal(common_offset(np.full((2, 16, 2), np.nan)), [0, 0])


def test_refiners_trained_side_by_side_equal_those_trained_in_turn():
    """benchmarks/parallel_training.py: each job seeds itself, so two worker
    processes give the very weights that one process gives (and two jobs
    with different seeds differ)."""
    from benchmarks.benchmark_mpii import refiner_config
    from benchmarks.parallel_training import TrainingJob, train_refiners
    gt, lab = poses(64)
    err = np.random.default_rng(0).normal(0, 0.02, (64, 16, 2))
    jobs = [TrainingJob(f'job {seed}', refiner_config(embed_dim=16, num_heads=1),
                        PoseSource(gt, lab), None, err, seed, iters=3, batch_size=16,
                        sampler_cfg=SamplerConfig(real_prob=0.0))
            for seed in (0, 1)]
    in_turn = [m.state_dict() for m, _ in train_refiners(jobs, workers=1)]
    side_by_side = [m.state_dict() for m, _ in train_refiners(jobs, workers=2)]
    for a, b in zip(in_turn, side_by_side):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(in_turn[0][k], in_turn[1][k]) for k in in_turn[0])


def test_mpii_refiner_script_writes_the_same_weights_twice(tmp_path):
    """benchmarks/train_mpii_refiner.py seeds the refiners' initial weights,
    not only their training: the same command gives the same file."""
    from benchmarks.train_mpii_refiner import main
    threads = torch.get_num_threads()
    outs = [str(tmp_path / f'run{i}.pth') for i in range(2)]
    try:
        for out in outs:
            main(['--out', out, '--iters', '2', '--batch-size', '8', '--embed-dim', '16',
                  '--num-heads', '1'])
    finally:
        torch.set_num_threads(threads)  # main runs on one thread
    first, second = (torch.load(out, map_location='cpu', weights_only=False) for out in outs)
    assert first['meta']['cfg'] == second['meta']['cfg']
    # the gate moves only joints outside their box: no class margin moves
    from mmengine.config import Config

    from mmport.models.refinement_rule import NEVER, GateRule, RefinementRule
    rule = Config.fromstring(first['meta']['cfg'], '.py').model.test_cfg.rule.to_dict()
    assert RefinementRule.build(rule) == RefinementRule(
        candidates='all', score_thr=None, gate=GateRule(margin=NEVER, outside_box=0.0))
    a, b = first['state_dict'], second['state_dict']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_spawned_workers_skip_only_the_warnings_this_process_printed():
    """benchmarks/parallel_training.py: a process started while the pool is
    open ignores the two import warnings every worker would repeat, prints
    any other, and the environment is restored afterwards."""
    import os
    import subprocess
    import sys
    from benchmarks.parallel_training import _worker_warnings_quiet
    code = ("import warnings; warnings.warn('pkg_resources is deprecated as an API'); "
            "warnings.warn('The metainfo config file x does not exist'); "
            "warnings.warn('something else')")
    before = os.environ.get('PYTHONWARNINGS')

    def stderr():
        return subprocess.run([sys.executable, '-c', code], capture_output=True,
                              text=True).stderr

    with _worker_warnings_quiet():
        quiet = stderr()
    loud = stderr()
    assert 'something else' in quiet and 'pkg_resources' not in quiet
    assert 'metainfo' not in quiet
    assert 'pkg_resources' in loud and 'metainfo' in loud
    assert os.environ.get('PYTHONWARNINGS') == before
