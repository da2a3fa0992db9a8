"""The refiners shipped in checkpoints/: they load from the file alone (config,
default threshold and gate included), refine real results files end to end,
and the chained config picks the body refiner up. The body refiner ships with
a rule that moves nothing; its gating, moving and rescoring are tested with
the rule it shipped with before (``GATED_BODY_RULE``) over the same weights."""
import gzip
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

import mmport  # noqa: F401
from mmport.apis import load_refiner, refine_results_file
from mmport.datasets import load_pose_results
from mmport.models.do_no_harm import joints_outside_boxes
from mmport.models.refinement_rule import RefinementRule
from mmport.utils import InputFileError, load_json
from tests.conftest import BODY, GATED_BODY_RULE, PANOPTIC_PRED, gated_body_refiner

HAND = 'checkpoints/port_panoptic_hand21.pth'
COCO_PRED = 'data/body_real/coco_blazepose.json.gz'
COCO_GT = 'data/body_real/coco_gt.json.gz'


def test_shipped_body_refiner_loads_with_its_rule():
    refiner = load_refiner(BODY)
    assert refiner.num_keypoints == 17 and not refiner.training
    # its rule moves nothing: no joint moves and the instance scores are kept
    # until a rule is fitted to a detector
    assert refiner.rule == RefinementRule.keep_input() and refiner.rule.moves_nothing
    assert refiner.rule.rescore is None
    assert refiner.rule.describe().startswith('moves nothing')
    assert len(refiner.rule.describe().splitlines()) == 1
    # the network still estimates keypoint similarities (the starting point
    # for fitting a gate and a rescoring to a detector)
    assert refiner.network.predict_errors and refiner.can_rescore
    assert refiner.quality_kind == 'keypoint_similarity'
    res = load_pose_results(COCO_PRED)
    kpts = torch.from_numpy(res.keypoints[:32]).float()
    scores = torch.from_numpy(res.keypoint_scores[:32]).float()
    boxes = torch.from_numpy(res.bboxes[:32]).float()
    _, quality = refiner.reconstruct_with_errors(kpts, scores, boxes,
                                                 torch.ones(32, 17, dtype=torch.bool))
    assert quality.shape == (32, 17, 2) and torch.isfinite(quality).all()
    assert quality.std() > 0
    # ... and the same weights with a gate move some joints
    refiner.rule = GATED_BODY_RULE
    _, replaced = refiner.refine(kpts, scores, boxes)
    assert replaced.any()
    ckpt = torch.load(BODY, map_location='cpu', weights_only=False)
    assert 'train_shipped_refiners' in ckpt['meta']['mmport']['trained_by']
    # its file holds the rule itself, not loose legacy keys
    assert set(Config.fromstring(ckpt['meta']['cfg'], '.py').model.test_cfg) == {'rule'}


def test_shipped_hand_refiner_refines_real_predictions_below_its_threshold():
    refiner = load_refiner(HAND)
    assert refiner.num_keypoints == 21 and refiner.rule.score_thr == 0.3
    res = load_pose_results(PANOPTIC_PRED)
    kpts = torch.from_numpy(res.keypoints).float()
    scores = torch.from_numpy(res.keypoint_scores).float()
    out, replaced = refiner.refine(kpts, scores, torch.from_numpy(res.bboxes).float())
    assert replaced.any() and not replaced[scores >= 0.3].any()
    assert torch.equal(out[~replaced], kpts[~replaced])
    assert (out[replaced] - kpts[replaced]).norm(dim=-1).median() > 0.5


def test_refining_a_real_coco_results_file_end_to_end(tmp_path):
    out = tmp_path / 'refined.json.gz'
    refiner = gated_body_refiner()
    report = refine_results_file(COCO_PRED, refiner, out=str(out), ann=COCO_GT)
    with gzip.open(COCO_PRED, 'rt') as f:
        source = json.load(f)
    with gzip.open(out, 'rt') as f:
        refined = json.load(f)
    assert len(refined) == len(source) == len(report.refined) == 307
    before = np.array([r['keypoints'] for r in source]).reshape(-1, 17, 3)
    after = np.array([r['keypoints'] for r in refined]).reshape(-1, 17, 3)
    changed = np.abs(after[..., :2] - before[..., :2]).sum(-1) > 1e-3
    np.testing.assert_array_equal(changed, report.replaced)
    np.testing.assert_array_equal(after[..., 2], before[..., 2])  # scores kept
    # the boxes BlazePose ran on are written back as read
    assert [r['bbox'] for r in refined] == [r['bbox'] for r in source]
    # results are matched to annotations (for scoring only) by the overlap
    # of their keypoints' extent: in crowded photos a few match no one
    assert 280 <= report.matched <= 307
    # COCO AP over all 307 with xtcocotools: BlazePose's own AP on this set
    assert report.coco_ap['init'] == pytest.approx(0.2704, abs=1e-4)
    assert report.coco_ap['instances'] == 307
    # every person is framed by the box BlazePose ran on, so the refiner
    # rescores them all; its gate moves a few joints of this detector it
    # has never seen, and those moves lower the error
    assert 0 < report.replaced.sum() < 0.1 * report.replaced.size
    assert report.errors['refined']['EPE'] < report.errors['init']['EPE']
    assert report.framed_by_keypoints == 0 and report.scores_kept_unboxed == 0
    assert report.rescore == refiner.rule.rescore.weight == 0.75
    assert 'instance scores rescored' in report.summary()
    assert 'framed by their keypoints' not in report.summary()
    scores = np.array([r['score'] for r in refined])
    assert ((scores > 0) & (scores <= 1)).all()
    assert not np.allclose(scores, [r['score'] for r in source])
    assert 15 < report.errors['init']['EPE'] < 35
    # no annotation at all: the same refinement, the same file
    bare_out = tmp_path / 'bare.json.gz'
    bare = refine_results_file(COCO_PRED, refiner, out=str(bare_out))
    assert bare.rescore == report.rescore and bare.matched is None and not bare.coco_ap
    assert bare_out.read_bytes() == out.read_bytes()


def test_shipped_body_refiner_leaves_a_real_results_file_as_it_is(tmp_path):
    """BlazePose's real COCO results refined with the shipped body file: its
    rule moves nothing, so every keypoint, keypoint score and instance score
    is written back as read, and COCO AP does not change."""
    out = tmp_path / 'refined.json.gz'
    report = refine_results_file(COCO_PRED, BODY, out=str(out), ann=COCO_GT)
    with gzip.open(COCO_PRED, 'rt') as f:
        source = json.load(f)
    with gzip.open(out, 'rt') as f:
        refined = json.load(f)
    assert len(refined) == len(source) == len(report.refined) == 307
    assert not report.replaced.any() and report.rescore == 0
    before = np.array([r['keypoints'] for r in source]).reshape(-1, 17, 3)
    after = np.array([r['keypoints'] for r in refined]).reshape(-1, 17, 3)
    np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(report.refined, load_pose_results(COCO_PRED).keypoints)
    assert [r['score'] for r in refined] == [r['score'] for r in source]
    assert [r['bbox'] for r in refined] == [r['bbox'] for r in source]
    assert report.coco_ap['instances'] == 307
    assert report.coco_ap['init'] == pytest.approx(0.2704, abs=1e-4)
    assert report.coco_ap['refined'] == report.coco_ap['init']
    assert report.errors['refined']['EPE'] == report.errors['init']['EPE']
    assert 'instance scores rescored' not in report.summary()


def test_rescore_zero_keeps_the_files_instance_scores(tmp_path):
    refiner = gated_body_refiner()
    out = tmp_path / 'kept.json'
    report = refine_results_file(COCO_PRED, refiner, out=str(out), ann=COCO_GT, rescore=0)
    assert report.rescore == 0 and refiner.rule.rescore is not None  # the caller's untouched
    with gzip.open(COCO_PRED, 'rt') as f:
        source = [r['score'] for r in json.load(f)]
    assert [r['score'] for r in json.loads(out.read_text())] == pytest.approx(source, abs=0)
    assert report.coco_ap['refined'] == report.coco_ap['init']  # nothing moved, same scores
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        refine_results_file(COCO_PRED, refiner, rescore=1.5)
    hand = load_refiner(HAND)
    with pytest.raises(ValueError, match='keypoint similarities'):
        refine_results_file(PANOPTIC_PRED, hand, rescore=0.5)


def test_rescored_instance_scores_raise_ap_on_real_coco_photos():
    """On BlazePose's COCO photos, each person framed by the crop
    BlazePose ran on (the results' ``bbox``), the refiner's rescored
    instance scores rank the persons better than BlazePose's own: the AP of
    the same refined keypoints is higher with them (xtcocotools)."""
    refiner = gated_body_refiner()
    rescored = refine_results_file(COCO_PRED, refiner, ann=COCO_GT)
    kept = refine_results_file(COCO_PRED, refiner, ann=COCO_GT, rescore=0)
    assert rescored.rescore > 0 and kept.rescore == 0
    np.testing.assert_array_equal(rescored.refined, kept.refined)
    assert rescored.coco_ap['refined'] > kept.coco_ap['refined'] + 0.002


def test_offline_refinement_writes_rescored_instance_scores(tmp_path):
    refiner = gated_body_refiner()
    scores = {}
    for weight in (1.0, 0.5):
        refiner.rule = refiner.rule.replace(rescore=dict(weight=weight))
        out = tmp_path / f'rescored_{weight}.json'
        # every person of this file has the box BlazePose ran on; the
        # weight is the one asked for
        report = refine_results_file(COCO_PRED, refiner, out=str(out), ann=COCO_GT,
                                     rescore=weight)
        assert report.rescore == weight and 'rescored' in report.summary()
        assert not report.scores_kept_unboxed
        scores[weight] = np.array([r['score'] for r in json.loads(out.read_text())])
    with gzip.open(COCO_PRED, 'rt') as f:
        source = np.array([r['score'] for r in json.load(f)])
    # weight 1: the refiner's expected OKS of every person (every frame is usable)
    assert ((scores[1.0] > 0) & (scores[1.0] < 1)).all()
    assert np.corrcoef(scores[1.0], source)[0, 1] < 0.99
    # weight 0.5: the geometric mean of the file's score and that estimate
    np.testing.assert_allclose(scores[0.5], np.sqrt(source * scores[1.0]), rtol=1e-5)


def test_chained_config_takes_the_shipped_refiner_and_its_rule():
    init_default_scope('mmpose')
    cfg = Config.fromfile('configs/port/port_td-hm_mobilenetv2_coco-256x192.py')
    assert cfg.model.refiner_checkpoint == BODY
    model = MODELS.build(cfg.model)
    shipped = load_refiner(BODY)
    assert model.refiner.rule == shipped.rule
    for key, value in shipped.state_dict().items():
        assert torch.equal(model.refiner.state_dict()[key], value), key


def test_mpii_refiner_exports_with_its_outside_box_gate(tmp_path):
    """The shipped score-free MPII refiner moves only joints outside their
    box: its ONNX export moves the same joints of real predictions (Tompson
    et al.'s, whose pelvis and thorax often lie outside) as PyTorch."""
    import onnxruntime as ort
    from mmport.deployment import export_onnx
    refiner = load_refiner('checkpoints/port_mpii16_scorefree.pth')
    d = np.load('data/mpii/mpii_val_preds.npz')
    kpts = d['pred_tompson'][:200].astype(np.float32)
    boxes = d['val_bbox'][:200].astype(np.float32)
    scores = np.zeros(kpts.shape[:2], np.float32)
    refined, replaced = refiner.refine(torch.from_numpy(kpts), torch.from_numpy(scores),
                                       torch.from_numpy(boxes))
    outside = joints_outside_boxes(torch.from_numpy(kpts), torch.from_numpy(boxes)).numpy()
    assert replaced.sum() > 100 and not (replaced.numpy() & ~outside).any()
    path = export_onnx(refiner, str(tmp_path / 'mpii.onnx'))
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    out, out_replaced = session.run(None, dict(keypoints=kpts, scores=scores, bboxes=boxes))
    assert (out_replaced == replaced.numpy()).all()
    assert np.abs(out - refined.numpy()).max() < 1e-2


def test_gated_body_refiner_exports_with_its_gate(tmp_path):
    from mmport.deployment import compare_onnx_with_pytorch, export_onnx
    refiner = gated_body_refiner()
    rng = np.random.default_rng(0)
    kpts = torch.tensor(rng.uniform(20, 180, (256, 17, 2)), dtype=torch.float32)
    scores = torch.tensor(rng.uniform(0, 1, (256, 17)), dtype=torch.float32)
    boxes = torch.tensor([[0., 0., 200., 200.]]).repeat(256, 1)
    # a margin that half of the positive expected gains on these random
    # poses exceed: the gate then lets some joints move and keeps others
    _, quality = refiner.reconstruct_with_errors(kpts, scores, boxes,
                                                 torch.ones(256, 17, dtype=torch.bool))
    gain = (quality[..., 1] - quality[..., 0]).detach()
    assert (gain > 0).sum() > 100
    margin = float(torch.quantile(gain[gain > 0], 0.5))
    refiner.rule = refiner.rule.replace(gate=dict(margin=margin))
    _, replaced = refiner.refine(kpts, scores, boxes)
    assert 0.01 < replaced.float().mean() < 0.5
    path = export_onnx(refiner, str(tmp_path / 'body.onnx'))
    max_diff, masks_equal, score_diff = compare_onnx_with_pytorch(refiner, path, num_poses=256)
    assert masks_equal and max_diff < 1e-2


def test_rescoring_exports_and_pytorch_onnx_openvino_agree(tmp_path):
    """The body refiner with a gate and a rescoring rule on BlazePose's real COCO
    predictions, framed by the boxes BlazePose ran on: the ONNX graph (run
    by onnxruntime and by OpenVINO) gives PyTorch's refined keypoints,
    replaced joints and rescored instance scores; an export without the
    rescoring says that it drops it."""
    import onnx
    import onnxruntime as ort
    from mmport.deployment import OpenVINORefiner, export_onnx
    from mmport.deployment.onnx_export import META_RESCORE
    refiner = gated_body_refiner()
    refiner.rule = refiner.rule.replace(rescore=dict(weight=0.5))
    res = load_pose_results(COCO_PRED)
    kpts = res.keypoints.astype(np.float32)
    scores = res.keypoint_scores.astype(np.float32)
    boxes = res.bboxes.astype(np.float32)
    inst = res.scores.astype(np.float32)
    ref, replaced, rescored = refiner.refine_and_rescore(
        *(torch.from_numpy(a) for a in (kpts, scores, boxes, inst)))
    assert not torch.allclose(rescored, torch.from_numpy(inst))  # it does rescore
    assert replaced.any()  # and its gate moves some joints
    path = export_onnx(refiner, str(tmp_path / 'body.onnx'))
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    out, out_replaced, out_scores = session.run(
        None, dict(keypoints=kpts, scores=scores, bboxes=boxes, instance_scores=inst))
    ov = OpenVINORefiner(path, chunk_size=100)
    assert ov.rescoring
    ov_out, ov_replaced, ov_scores = ov.refine_and_rescore(kpts, scores, boxes, inst)
    for got, got_replaced, got_scores in ((out, out_replaced, out_scores),
                                          (ov_out, ov_replaced, ov_scores)):
        assert np.array_equal(got_replaced, replaced.numpy())
        assert np.abs(got - ref.numpy()).max() < 1e-2
        assert np.abs(got_scores - rescored.numpy()).max() < 1e-4
    dropped = export_onnx(refiner, str(tmp_path / 'dropped.onnx'), export_rescoring=False)
    meta = {p.key: p.value for p in onnx.load(dropped).metadata_props}
    assert meta[META_RESCORE] == 'dropped'
    assert len(ort.InferenceSession(dropped).get_inputs()) == 3


# ------------------------------------------- score-free LSP-14 refiner
LSP14 = 'checkpoints/port_lsp14_scorefree.pth'


def _lsp_held_out(method: str, n: int = 40) -> list:
    """A method's predictions of the first ``n`` LSP test images the shipped
    score-free refiner did not train on (im1501 ..)."""
    return [r for r in load_json(f'data/lsp_methods/preds/{method}.json.gz')
            if 501 <= r['image_id'] < 501 + n]


def test_scorefree_lsp_refiner_moves_only_what_its_gate_allows():
    """Three published methods' real predictions: the shipped rule, and the
    same weights under the loosest gate, replace exactly the joints whose
    expected gain clears the margin and leave every other value as it was."""
    from mmport.models.do_no_harm import expected_gain_gate
    refiner = load_refiner(LSP14)
    assert refiner.num_keypoints == 14 and not refiner.network.use_scores
    fit = torch.load(LSP14, map_location='cpu', weights_only=False)['meta']['mmport']['fit']
    assert fit['hold_out'] == 'method' and fit['metric'] == 'PCK@0.2'
    records = [r for m in ('WangLiCVPR13_pc', 'FanCVPR15_pc', 'BulatTzimiropoulosECCV16_pc')
               for r in _lsp_held_out(m)]
    kpts = torch.tensor([r['keypoints'] for r in records]).reshape(len(records), 14, 3)[..., :2]
    boxes = torch.tensor([r['bbox'] for r in records], dtype=torch.float32)
    boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy: the image each person was cropped to
    zeros = torch.zeros(kpts.shape[:2])
    for rule in (refiner.rule, refiner.rule.replace(gate=dict(margin=0.0))):
        refiner.rule = rule
        out, replaced = refiner.refine(kpts, zeros, boxes)
        rec, quality = refiner.reconstruct_with_errors(kpts, zeros, boxes,
                                                       torch.ones_like(replaced))
        margin = rule.gate.margins(14)
        assert torch.equal(replaced, expected_gain_gate(quality, margin))
        assert torch.equal(out[~replaced], kpts[~replaced])
        torch.testing.assert_close(out[replaced], rec[replaced])
    # the loosest gate moves some joints of these methods, and not all
    assert 0 < replaced.sum() < replaced.numel()


def test_scorefree_lsp_refiner_refuses_a_file_of_another_layout(tmp_path):
    from benchmarks.mpii_coco import mpii_results
    path = tmp_path / 'mpii.json'
    path.write_text(json.dumps(mpii_results(np.load('data/mpii/mpii_val_preds.npz'), 'hg_s8',
                                            persons=range(20))))
    with pytest.raises(InputFileError, match='16 keypoints per instance') as err:
        refine_results_file(str(path), LSP14, scores='none')
    assert '\n' not in str(err.value)
