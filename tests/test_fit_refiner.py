"""tools/fit_refiner.py and what it is made of: the rule choice with its
honest promise and identity floor, the metric maths, the robust loss, the
training batches, and end to end on real files (fit, refine, bad input)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmport.apis import fit_refiner, load_refiner, refine_results_file
from mmport.datasets import crossed_folds
from mmport.fitting.fit_metric import (FitTargets, build_targets, choose_metric, gain,
                                       metric_value, moved_outcomes)
from mmport.fitting.fit_training import FitBatches, FitSettings, FramedPersons
from mmport.fitting.rule_choice import IDENTITY, candidate_rules, choose_rule, rule_label
from mmport.models.port_refiner import joint_errors
from mmport.utils import InputFileError, load_json

LSP_PRED = 'data/lsp_methods/preds/WangLiCVPR13_pc.json.gz'
LSP_GT = 'data/lsp_methods/lsp_test_gt.json.gz'


# ----------------------------------------------------------- rule choice
def test_rule_choice_scores_each_fold_with_the_rule_of_the_other_folds():
    # rule 1 is best on folds 0-2, rule 2 on fold 3 only
    gains = np.array([[0.0, 1.0, 0.0],
                      [0.0, 1.2, 0.1],
                      [0.0, 0.8, 0.0],
                      [0.0, 0.0, 5.0]])
    choice = choose_rule(gains)
    assert choice.index == 2  # best mean (5.1 / 4 > 3.0 / 4)
    # fold 3 is scored with the rule the others chose (1), not its own best
    assert choice.fold_rules == [2, 2, 2, 1]
    np.testing.assert_allclose(choice.fold_gains, [0.0, 0.1, 0.0, 0.0])
    assert choice.promise == pytest.approx(0.025)
    assert not choice.keep  # 0.025 is not above its spread (0.05)


def test_rule_choice_keeps_a_steady_gain_and_drops_a_noisy_or_negative_one():
    steady = choose_rule(np.array([[0.0, 1.0], [0.0, 1.1], [0.0, 0.9], [0.0, 1.0]]))
    assert steady.keep and steady.index == 1 and steady.promise == pytest.approx(1.0)
    noisy = choose_rule(np.array([[0.0, 3.0], [0.0, -1.0], [0.0, 2.5], [0.0, -1.2]]))
    assert noisy.promise > 0 and not noisy.keep
    worse = choose_rule(np.array([[-0.1, -0.2], [-0.1, -0.3]]))
    assert not worse.keep
    with pytest.raises(ValueError, match='folds, rules'):
        choose_rule(np.zeros(3))


def test_a_rule_for_unseen_methods_lowers_no_method_where_it_is_chosen():
    gains = np.array([[0.0, 1.0, 0.5], [0.0, 1.2, 0.4], [0.0, 0.8, 0.6]])
    # rule 1 helps most on average but lowers one method in fold 0
    worst = np.array([[0.0, -0.3, 0.1], [0.0, 0.2, 0.1], [0.0, 0.1, 0.2]])
    choice = choose_rule(gains, worst)
    assert choice.index == 2
    # fold 0 is scored with rule 1 (chosen on folds 1, 2, where it lowers none)
    assert choice.fold_rules == [1, 2, 2]
    np.testing.assert_allclose(choice.fold_gains, [1.0, 0.4, 0.6])
    # every rule lowers some method: the identity, gain 0
    none = choose_rule(gains, -np.ones_like(gains))
    assert none.index == IDENTITY and none.fold_rules == [IDENTITY] * 3
    assert none.promise == 0 and not none.keep
    assert rule_label(None) == 'moves nothing'


def test_crossed_folds_score_no_method_or_image_their_refiner_trained_on():
    rng = np.random.default_rng(0)
    images = [f'im{i}' for i in rng.integers(0, 40, 300)]
    methods = [f'm{i}' for i in rng.integers(0, 5, 300)]
    splits = crossed_folds(images, methods, num_folds=4, seed=1)
    assert len(splits) == 4
    scored = np.concatenate([te for _, te in splits])
    assert len(scored) == len(set(scored.tolist())) and 40 < len(scored) < 150
    for train, test in splits:
        assert len(train) and len(test)
        for key in (images, methods):
            assert not {key[i] for i in train} & {key[i] for i in test}
    # two methods: two folds; one method cannot be held out
    assert len(crossed_folds(images, ['a', 'b'] * 150, num_folds=4)) == 2
    with pytest.raises(ValueError, match='needs two'):
        crossed_folds(images, ['a'] * 300)


def test_candidate_rules_follow_what_the_refiner_can_read():
    scored = candidate_rules(True, 'keypoint_similarity', can_rescore=True)
    labels = [rule_label(r) for r in scored]
    assert 'all gate 0.05' in labels and '<0.5 no gate' in labels
    assert '<0.3 gate 0.1 rescore 0.5' in labels
    assert not any(r.candidates == 'all' and r.gate is None for r in scored)
    free = candidate_rules(False, 'keypoint_similarity', can_rescore=False)
    assert all(r.candidates == 'all' and r.gate is not None and r.rescore is None for r in free)
    assert len(free) == 5
    # for unseen methods, stricter gates too
    unseen = candidate_rules(False, 'keypoint_similarity', can_rescore=False, unseen=True)
    assert [rule_label(r) for r in unseen[5:]] == ['all gate 0.3', 'all gate 0.5']


# ---------------------------------------------------------------- metrics
def _targets(metric, tolerance=None):
    gt = np.zeros((2, 3, 2))
    vis = np.array([[2, 2, 0], [2, 1, 2]])
    return FitTargets(metric, gt, vis, tolerance)


def test_pck_counts_joints_within_the_tolerance_and_ignores_unlabelled():
    t = _targets('PCK@0.2', tolerance=np.array([2.0, 4.0]))  # 0.2 torso: 2 px, 4 px
    pred = np.zeros((2, 3, 2))
    pred[0, 0, 0] = 2.0    # on the tolerance: a hit
    pred[0, 1, 0] = 2.1    # a miss
    pred[0, 2, 0] = 100.0  # unlabelled: not scored
    pred[1, :, 1] = [3.9, 4.1, np.nan]  # hit, miss, non-finite miss
    assert metric_value(pred, t) == pytest.approx(2 / 5)


def test_gain_is_points_for_accuracies_and_percent_for_epe():
    assert gain(0.80, 0.82, 'PCK@0.2') == pytest.approx(2.0)
    assert gain(10.0, 9.0, 'EPE') == pytest.approx(10.0)
    assert gain(10.0, 11.0, 'EPE') == pytest.approx(-10.0)


def test_metric_follows_the_annotations():
    assert choose_metric([dict(head_size=10.0)], 16, True, [0.1] * 16) == 'PCKh@0.5'
    assert choose_metric([dict(torso_size=50.0)], 14, True, [0.1] * 14) == 'PCK@0.2'
    assert choose_metric([dict(area=100.0)], 17, True, [0.1] * 17) == 'AP'
    assert choose_metric([dict(area=100.0)], 17, False, [0.1] * 17) == 'EPE'
    assert choose_metric([dict(area=100.0)], 21, True, None) == 'EPE'


def test_moved_outcomes_count_moves_and_harm():
    t = _targets('PCK@0.2', tolerance=np.array([10.0, 10.0]))
    init = np.ones((2, 3, 2))
    refined = init.copy()
    refined[0, 0] = 0.0   # moved, better
    refined[1, 1] = 5.0   # moved, worse
    out = moved_outcomes(init, refined, t)
    assert out['moved_joints'] == 2 and out['moved'] == pytest.approx(2 / 5)
    assert out['worsened'] == pytest.approx(0.5)


def test_ap_targets_take_the_oks_half_point_as_tolerance():
    anns = [dict(keypoints=[0, 0, 2] * 17, area=100.0, image_id=1, id=1)]
    sigmas = [0.05] * 17
    t = build_targets(anns, [dict(id=1)], 'AP', sigmas)
    d = t.tolerance[0]
    # OKS of a joint at that distance is 0.5
    assert np.exp(-d ** 2 / (2 * 100.0 * (2 * 0.05) ** 2)) == pytest.approx(0.5)


# ------------------------------------------------------- loss and batches
def test_welsch_loss_saturates_beyond_its_scale():
    target = torch.zeros(1, 3, 2)
    pred = torch.tensor([[[0.01, 0.0], [0.2, 0.0], [2.0, 0.0]]], requires_grad=True)
    err = joint_errors(pred, target, 'welsch', scale=0.05)
    assert err[0, 0] < err[0, 1] < err[0, 2] <= 0.05
    assert err[0, 2].item() == pytest.approx(0.05, rel=1e-6)
    err.sum().backward()
    # a far joint (a sure miss) pulls nothing, a near one does
    assert pred.grad[0, 2].abs().max() < 1e-8 < pred.grad[0, 0].abs().max()
    np.testing.assert_allclose(joint_errors(pred.detach(), target, 'euclidean')[0].numpy(),
                               [0.01, 0.2, 2.0], rtol=1e-6)


def test_score_free_batches_reconstruct_every_joint_and_erase_some_to_the_centroid():
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 0.2, (50, 14, 2)).astype(np.float32)
    persons = FramedPersons(gt, np.ones((50, 14), bool))
    settings = FitSettings(batch_size=64, erase_ratio=(0.3, 0.3), rotate=0.0, scale=(1, 1),
                           shift=0.0, flip_prob=0.0, noise=0.0)
    inp, sc, mask, target, vis = FitBatches(persons, settings, None, use_scores=False).batch()
    assert mask.all() and (sc == 0).all() and vis.all()
    moved = (inp - target).norm(dim=-1) > 1e-6
    assert 0.2 < moved.float().mean() < 0.4  # the erased joints, about 30%
    kept = ~moved
    centroid = (target * kept[..., None]).sum(1) / kept.sum(1, keepdim=True)
    torch.testing.assert_close(inp[moved], centroid[:, None].expand_as(inp)[moved])


def test_scored_batches_mask_doubtful_joints_and_show_real_predictions():
    gt = np.zeros((4, 5, 2), np.float32)
    pred = np.full((4, 5, 2), 0.1, np.float32)
    scores = np.tile(np.array([0.9, 0.9, 0.9, 0.9, 0.1], np.float32), (4, 1))
    persons = FramedPersons(gt, np.ones((4, 5), bool), pred, scores)
    settings = FitSettings(batch_size=32, real=1.0, transplant=0.0, erase_ratio=(0.0, 0.0),
                           rotate=0.0, scale=(1, 1), shift=0.0, flip_prob=0.0,
                           score_thresholds=(0.5, ))
    inp, sc, mask, target, _ = FitBatches(persons, settings, None, use_scores=True).batch()
    torch.testing.assert_close(inp, torch.full_like(inp, 0.1))
    assert mask[:, 4].all() and not mask[:, :4].any()


# ------------------------------------------------------------- end to end
def _lsp_subset(tmp_path, n_images=120, perfect=False, shift_ids=0):
    """The first ``n_images`` LSP persons: Wang & Li's predictions (or the
    ground truth itself with ``perfect``) and their annotations."""
    gt = load_json(LSP_GT)
    keep = {im['id'] for im in gt['images'][:n_images]}
    ann = dict(gt, images=[im for im in gt['images'] if im['id'] in keep],
               annotations=[a for a in gt['annotations'] if a['image_id'] in keep])
    if perfect:
        res = [dict(image_id=a['image_id'] + shift_ids, category_id=1, score=1.0,
                    keypoints=[v if i % 3 < 2 else 1 for i, v in enumerate(a['keypoints'])],
                    bbox=[0, 0, 200, 200]) for a in ann['annotations']]
    else:
        res = [dict(r, image_id=r['image_id'] + shift_ids) for r in load_json(LSP_PRED)
               if r['image_id'] in keep]
    res_path, ann_path = tmp_path / 'res.json', tmp_path / 'ann.json'
    res_path.write_text(json.dumps(res))
    ann_path.write_text(json.dumps(ann))
    return str(res_path), str(ann_path)


def test_fit_on_a_real_file_writes_a_refiner_the_tools_read(tmp_path):
    res, ann = _lsp_subset(tmp_path)
    out = tmp_path / 'fitted.pth'
    report = fit_refiner(res, ann, str(out), scores='none', num_folds=3, iters=40,
                         progress=False)
    assert report.metric == 'PCK@0.2' and report.persons == 120 and len(report.folds) == 3
    assert sum(f['persons'] for f in report.folds) == 120
    # Wang & Li's PCK@0.2 on these persons, before, in every fold and in total
    before = np.mean([f['before'] * f['persons'] for f in report.folds]) * 3 / 120
    assert report.total['before'] == pytest.approx(before, abs=1e-9)
    assert 0.4 < report.total['before'] < 0.7
    assert 'cross-validated gain' in report.summary()
    refiner = load_refiner(str(out))
    assert refiner.rule == report.rule and not refiner.network.use_scores
    ckpt = torch.load(str(out), map_location='cpu', weights_only=False)
    fit = ckpt['meta']['mmport']['fit']
    assert fit['metric'] == 'PCK@0.2' and fit['keep'] == report.keep
    assert fit['promise'] == pytest.approx(report.promise)
    assert ckpt['meta']['mmport']['init'] == 'checkpoints/port_lsp14_pretrained.pth'
    # the refine tool reads it; where the rule was kept, it moves joints
    refined = refine_results_file(res, str(out), scores='none')
    assert refined.replaced.any() == (report.keep and not report.rule.moves_nothing)


def test_held_out_refinement_keeps_unmoved_joints_exactly():
    """A fold's refinement under a rule that moves nothing returns the
    input keypoints bit for bit (float64), so the report's moved share counts
    only joints a rule replaced."""
    from mmport.apis.refiner_fitting import refine_held_out
    from mmport.models.refinement_rule import RefinementRule
    refiner = load_refiner('checkpoints/port_lsp14_pretrained.pth')
    records = load_json(LSP_PRED)[:20]
    kpts = np.array([r['keypoints'] for r in records], np.float64).reshape(20, 14, 3)[..., :2]
    kpts += 1e-3 / 3  # values a float32 cast would change
    boxes = np.array([r['bbox'] for r in records], np.float64)
    boxes[:, 2:] += boxes[:, :2]
    rules = [RefinementRule.keep_input(), RefinementRule.build(dict(
        candidates='all', score_thr=None, gate=dict(margin=0.0)))]
    outputs = refine_held_out(refiner, dict(rules=rules, keypoints=kpts, scores=np.zeros((20, 14)),
                                            boxes={None: boxes}, instance_scores=np.ones(20)))
    assert np.array_equal(outputs[0][0], kpts) and outputs[0][0].dtype == np.float64
    moved = np.abs(outputs[1][0] - kpts).sum(-1) > 0
    assert 0 < moved.sum() < moved.size


def test_nothing_to_gain_writes_the_identity_rule(tmp_path):
    # perfect predictions: no rule can beat them, so the written rule moves
    # nothing, and says so
    res, ann = _lsp_subset(tmp_path, perfect=True)
    out = tmp_path / 'fitted.pth'
    report = fit_refiner(res, ann, str(out), scores='none', num_folds=3, iters=20,
                         progress=False)
    assert report.total['before'] == 1.0 and report.promise <= 0
    assert not report.keep and report.rule.moves_nothing
    assert 'moves nothing' in report.summary()
    assert load_refiner(str(out)).rule.moves_nothing
    refined = refine_results_file(res, str(out), scores='none')
    assert not refined.replaced.any()


def test_a_fit_for_unseen_methods_holds_methods_out(tmp_path):
    """Three LSP methods' predictions of the same 80 persons in one file,
    each record naming its method: every fold scores methods and images its
    refiner did not train on; a file without method names is refused."""
    gt = load_json(LSP_GT)
    keep = {im['id'] for im in gt['images'][:80]}
    ann = dict(gt, images=[im for im in gt['images'] if im['id'] in keep],
               annotations=[a for a in gt['annotations'] if a['image_id'] in keep])
    res = [dict(r, method=m) for m in ('WangLiCVPR13', 'TompsonNIPS14', 'FanCVPR15')
           for r in load_json(f'data/lsp_methods/preds/{m}_pc.json.gz') if r['image_id'] in keep]
    res_path, ann_path = tmp_path / 'res.json', tmp_path / 'ann.json'
    res_path.write_text(json.dumps(res))
    ann_path.write_text(json.dumps(ann))
    report = fit_refiner(str(res_path), str(ann_path), str(tmp_path / 'f.pth'), scores='none',
                         hold_out='method', iters=20, progress=False)
    assert report.hold_out == 'method' and report.persons == 240 and len(report.folds) == 3
    # each fold scores one method on a third of the images
    assert 60 <= report.total['persons'] <= 100
    assert all(15 <= f['persons'] <= 40 for f in report.folds)
    assert 'holding out methods and images together' in report.summary()
    fit = torch.load(str(tmp_path / 'f.pth'), map_location='cpu',
                     weights_only=False)['meta']['mmport']['fit']
    assert fit['hold_out'] == 'method' and fit['folds'] == 3
    for r in res:
        r.pop('method')
    res_path.write_text(json.dumps(res))
    with pytest.raises(InputFileError, match='"method" field'):
        fit_refiner(str(res_path), str(ann_path), None, scores='none', hold_out='method',
                    iters=5, progress=False)


@pytest.mark.parametrize('case, message', [
    ('no_match', 'matches an annotation'),
    ('few', 'at least 60'),
    ('keypoints', 'keypoints'),
    ('nan', 'non-finite'),
])
def test_bad_input_is_refused_with_one_line(tmp_path, case, message):
    if case == 'no_match':
        res, ann = _lsp_subset(tmp_path, shift_ids=100000)
    elif case == 'few':
        res, ann = _lsp_subset(tmp_path, n_images=30)
    else:
        res, ann = _lsp_subset(tmp_path)
        records = json.loads(open(res).read())
        if case == 'keypoints':
            for r in records:
                r['keypoints'] = r['keypoints'][:-3]
        else:
            records[3]['keypoints'][0] = float('nan')
        with open(res, 'w') as f:
            f.write(json.dumps(records))
    with pytest.raises(InputFileError, match=message) as err:
        fit_refiner(res, ann, str(tmp_path / 'x.pth'), scores='none', iters=5, progress=False)
    assert '\n' not in str(err.value)
    assert not (tmp_path / 'x.pth').exists()


def test_cli_prints_one_line_on_bad_input(tmp_path):
    res, ann = _lsp_subset(tmp_path, n_images=30)
    proc = subprocess.run([sys.executable, 'tools/fit_refiner.py', res, '--ann', ann,
                           '--out', str(tmp_path / 'x.pth'), '--scores', 'none'],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'at least 60' in proc.stderr and 'Traceback' not in proc.stderr


def test_the_same_fit_through_mmpose_tools_train(tmp_path):
    """configs/port/port_fit_coco_keypoints-only.py, given RESULTS and ANN by
    --cfg-options, fine-tunes the pretrained body refiner with tools/train.py
    on real BlazePose predictions; the checkpoint is a refiner the tools
    read, with the fit's loss and a rule that moves nothing."""
    import gzip
    import shutil
    ann = tmp_path / 'coco_gt.json'
    with gzip.open('data/body_real/coco_gt.json.gz', 'rb') as src, open(ann, 'wb') as dst:
        shutil.copyfileobj(src, dst)
    work = tmp_path / 'work'
    cmd = [sys.executable, 'tools/train.py', 'configs/port/port_fit_coco_keypoints-only.py',
           '--work-dir', str(work), '--cfg-options', f'train_dataloader.dataset.ann_file={ann}',
           'train_dataloader.dataset.pipeline.0.results_file='
           'data/body_real/coco_blazepose.json.gz',
           'train_cfg.max_iters=10', 'train_cfg.val_interval=10',
           'default_hooks.checkpoint.interval=10']
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    refiner = load_refiner(str(work / 'iter_10.pth'))
    assert refiner.train_cfg['loss_type'] == 'welsch' and refiner.rule.moves_nothing
    start = load_refiner('checkpoints/port_coco17_refiner.pth')
    moved = [k for k, v in start.state_dict().items()
             if not torch.equal(v, refiner.state_dict()[k])]
    # fine-tuned from the pretrained weights: changed, but only a little
    assert moved
    assert max((v - refiner.state_dict()[k]).abs().max().item()
               for k, v in start.state_dict().items() if v.is_floating_point()) < 0.05
    out = refine_results_file('data/body_real/coco_blazepose.json.gz', refiner)
    assert not out.replaced.any()
