"""Score-free refinement of results files without per-joint confidences
(tools/refine_results.py --scores none), on real MPII predictions."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmport.models.do_no_harm import joints_outside_boxes
from tests.conftest import REPO

MPII = 'data/mpii/mpii_val_preds.npz'


def _run_tool(*args):
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def mpii_files(tmp_path_factory):
    """The first 40 validation persons as a COCO-style annotation file (with
    head sizes) and the 8-stack hourglass' real predictions of them as a
    results file whose third values are 1 (predicted), not confidences, and
    whose ``bbox`` is the box the model ran on (MPII's protocol box)."""
    from benchmarks.mpii_coco import mpii_annotations, mpii_results
    d = np.load(f'{REPO}/{MPII}')
    tmp = tmp_path_factory.mktemp('mpii')
    recs = mpii_results(d, 'hg_s8', range(40))
    ann = tmp / 'ann.json'
    ann.write_text(json.dumps(mpii_annotations(d, range(40))))
    res = tmp / 'results.json'
    res.write_text(json.dumps(recs))
    return ann, res, recs


def _save(model, cfg, path):
    from mmengine.config import Config
    torch.save({'state_dict': model.state_dict(),
                'meta': dict(cfg=Config(dict(model=cfg)).pretty_text)}, path)


@pytest.fixture(scope='module')
def score_free_ckpt(tmp_path_factory):
    """A small score-free refiner trained for a few iterations on the MPII
    training ground truth with the models' error vectors."""
    from benchmarks.benchmark_mpii import MODELS, MPIIData, build_refiner, refiner_config
    from benchmarks.score_free_training import (SamplerConfig, ScoreFreeSampler,
                                                train_score_free)
    data = MPIIData(f'{REPO}/{MPII}')
    cfg = refiner_config(embed_dim=16, num_heads=1)
    # the initial weights from a seed, as the training draw: unseeded, one
    # start in five or so moved none of the 40 persons' joints
    torch.manual_seed(0)
    model = build_refiner(cfg)
    donors = data.real(np.arange(200), MODELS).error_vectors()
    sampler = ScoreFreeSampler(data.train, None, model.metainfo['flip_indices'], donors,
                               SamplerConfig(real_prob=0.0))
    train_score_free(model, sampler, iters=20, batch_size=32)
    path = tmp_path_factory.mktemp('ckpt') / 'score_free.pth'
    _save(model, cfg, path)
    return str(path)


def test_refine_results_score_free_moves_positions_keeps_flags(mpii_files, score_free_ckpt,
                                                                tmp_path):
    ann, res, recs = mpii_files
    out = tmp_path / 'refined.json'
    rc, log = _run_tool('tools/refine_results.py', str(res), '--ann', str(ann),
                        '--checkpoint', score_free_ckpt, '--out', str(out), '--scores', 'none')
    assert rc == 0, log
    assert 'score-free' in log and 'PCKh@0.5' in log and 'matched 40 of 40' in log
    refined = json.loads(out.read_text())
    assert [r['annotation_id'] for r in refined] == [r['annotation_id'] for r in recs]
    before = np.array([r['keypoints'] for r in recs]).reshape(40, 16, 3)
    after = np.array([r['keypoints'] for r in refined]).reshape(40, 16, 3)
    np.testing.assert_array_equal(before[..., 2], after[..., 2])  # flags written back as read
    assert not np.allclose(before[..., :2], after[..., :2])      # every joint was a candidate


def test_scores_none_needs_a_score_free_refiner(mpii_files, tmp_path):
    from benchmarks.benchmark_mpii import build_refiner, refiner_config
    ann, res, _ = mpii_files
    cfg = refiner_config(embed_dim=16, num_heads=1)
    cfg['network']['use_scores'] = True
    ckpt = tmp_path / 'scored.pth'
    _save(build_refiner(cfg), cfg, ckpt)
    rc, log = _run_tool('tools/refine_results.py', str(res), '--ann', str(ann),
                        '--checkpoint', str(ckpt), '--out', str(tmp_path / 'o.json'),
                        '--scores', 'none')
    assert rc != 0 and 'reads confidences' in log and 'use_scores=False' in log


def test_flip_test_gate_is_mirror_equivariant(score_free_ckpt):
    """With flip test the score-free rule, the gate's decisions included
    (its error estimates are averaged with the mirror image's, joints
    swapped), refines a mirrored MPII pose into the mirrored refinement:
    on real hourglass predictions, the same joints move, mirrored."""
    from benchmarks.benchmark_mpii import build_refiner, refiner_config
    d = np.load(f'{REPO}/{MPII}')
    model = build_refiner(refiner_config(embed_dim=16, num_heads=1, flip_test=True))
    model.load_state_dict(torch.load(score_free_ckpt, weights_only=False)['state_dict'])
    idx = model.flip_indices
    assert idx[:6] == [5, 4, 3, 2, 1, 0]  # MPII's ankle ... hip, right <-> left
    n = 64
    pred = torch.as_tensor(d['pred_hg_s1'][:n], dtype=torch.float32)
    boxes = torch.as_tensor(d['val_bbox'][:n], dtype=torch.float32)
    centre_x = (boxes[:, 0] + boxes[:, 2])[:, None] / 2

    def mirror(p):
        return torch.stack([2 * centre_x - p[..., 0], p[..., 1]], -1)[:, idx]

    zeros = torch.zeros(n, 16)
    # a margin in the widest gap between expected gains of the middle 80%,
    # so that the gate decides both ways whatever the few training
    # iterations made of the network, and no gain lies within rounding of it
    _, quality = model.reconstruct_with_errors(pred, zeros, boxes,
                                               torch.ones(n, 16, dtype=torch.bool))
    gains = (quality[..., 1] - quality[..., 0]).flatten().sort().values
    middle = gains[len(gains) // 10:9 * len(gains) // 10]
    gap = (middle[1:] - middle[:-1]).argmax()
    assert middle[gap + 1] - middle[gap] > 1e-5
    model.rule = model.rule.replace(gate=dict(margin=((middle[gap] + middle[gap + 1]) / 2).item()))
    out, moved = model.refine(pred, zeros, boxes)
    out_m, moved_m = model.refine(mirror(pred), zeros, boxes)
    assert moved.any() and not moved.all()  # the gate decided both ways
    assert torch.equal(moved_m, moved[:, idx])
    torch.testing.assert_close(out_m, mirror(out), atol=1e-2, rtol=0)


@pytest.mark.parametrize('model', ['tompson', 'hg_s1', 'hg_s8'])
def test_shipped_mpii_refiner_does_not_lower_pckh(model):
    """checkpoints/port_mpii16_scorefree.pth on each model's real MPII
    validation predictions, framed by the annotation boxes: PCKh@0.5 does
    not go down and EPE goes down. (The refiner was trained with these
    persons' error vectors, not their positions.)"""
    from mmport.apis import load_refiner
    from mmport.evaluation import mpii_pose_errors
    d = np.load(f'{REPO}/{MPII}')
    refiner = load_refiner(f'{REPO}/checkpoints/port_mpii16_scorefree.pth')
    assert not refiner.network.use_scores and refiner.rule.gate is not None
    pred = torch.as_tensor(d[f'pred_{model}'])
    refined, moved = refiner.refine(pred, torch.zeros(pred.shape[:2]),
                                    torch.as_tensor(d['val_bbox']))
    args = (d['val_gt'], d['val_visibility'], d['val_head_size'])
    before = mpii_pose_errors(pred.numpy(), *args)
    after = mpii_pose_errors(refined.numpy(), *args)
    assert after['PCKh@0.5'] >= before['PCKh@0.5']
    assert after['EPE'] < before['EPE']
    # the gate leaves some joints exactly where they were
    kept = ~moved.numpy()
    assert kept.any() and np.array_equal(refined.numpy()[kept], pred.numpy()[kept])


def test_margin_inputs_leave_out_joints_the_outside_box_margin_decides(score_free_ckpt):
    """The class margins are chosen on the joints inside their boxes when
    the refiner decides those outside by ``test_cfg.outside_box_margin``:
    on Tompson et al.'s real predictions (pelvis and thorax often far off
    the body) the labelled joints outside their annotation box do not
    count, all the others do."""
    from benchmarks.benchmark_mpii import build_refiner, margin_inputs, refiner_config
    d = np.load(f'{REPO}/{MPII}')
    n = 200
    pred, boxes = d['pred_tompson'][:n].astype(float), d['val_bbox'][:n].astype(float)
    labelled = d['val_visibility'][:n] > 0
    args = (pred, boxes, d['val_gt'][:n].astype(float), labelled,
            0.5 * d['val_head_size'][:n].astype(float))
    outside = joints_outside_boxes(torch.from_numpy(pred), torch.from_numpy(boxes)).numpy()
    assert (outside & labelled).sum() >= 20  # the test sees such joints
    state = torch.load(score_free_ckpt, weights_only=False)['state_dict']
    for margin, counted in ((None, labelled), (0.0, labelled & ~outside)):
        model = build_refiner(refiner_config(embed_dim=16, num_heads=1,
                                             outside_box_margin=margin))
        model.load_state_dict(state)
        np.testing.assert_array_equal(margin_inputs(model, *args)[3].numpy(), counted)


def test_shipped_mpii_refiner_does_no_harm_on_a_method_of_another_kind():
    """checkpoints/port_mpii16_scorefree.pth on BlazePose's real predictions
    (LSP, LSPET and COCO photos, as MPII poses: benchmarks.blazepose_as_mpii),
    a method it never saw: its gate moves only joints outside their box,
    PCKh@0.5 of the labelled limb joints does not go down and EPE goes
    down; moving every joint it expects to gain would lower PCKh@0.5."""
    from benchmarks.blazepose_as_mpii import blazepose_mpii_poses
    from mmport.apis import load_refiner
    from mmport.evaluation import mpii_pose_errors
    poses = blazepose_mpii_poses(root=f'{REPO}/data')
    refiner = load_refiner(f'{REPO}/checkpoints/port_mpii16_scorefree.pth')
    args = (poses.gt, poses.visibility, poses.head_size)
    before = mpii_pose_errors(poses.pred, *args)
    pred = torch.as_tensor(poses.pred, dtype=torch.float32)
    boxes = torch.as_tensor(poses.bbox, dtype=torch.float32)
    zeros = torch.zeros(pred.shape[:2])
    refined, moved = refiner.refine(pred, zeros, boxes)
    after = mpii_pose_errors(refined.double().numpy(), *args)
    assert after['PCKh@0.5'] >= before['PCKh@0.5'] and after['EPE'] < before['EPE']
    outside = joints_outside_boxes(pred, boxes)
    assert moved.any() and not (moved & ~outside).any()
    refiner.rule = refiner.rule.replace(gate=dict(margin=0.0))
    refined_0, _ = refiner.refine(pred, zeros, boxes)
    assert mpii_pose_errors(refined_0.double().numpy(), *args)['PCKh@0.5'] < before['PCKh@0.5']
