"""Offline refinement (mmport.apis.refine_results_file, behind
tools/refine_results.py), ONNX export and checkpoint loading, with refiners
trained for a few iterations through the Runner."""
import gzip
import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmport.apis import load_refiner, refine_results_file
from mmport.datasets import load_pose_results
from mmport.evaluation import coco_keypoint_ap
from mmport.utils import InputFileError
from tests.conftest import (BODY, PANOPTIC_ANN, PANOPTIC_PRED, REPO, gated_body_refiner,
                            write_gated_body_checkpoint)

COCO_ANN = 'data/coco_val_subset/annotations/person_keypoints_val2017_subset.json'


def _run_tool(*args):
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def _coco_results(tmp_path, n=60):
    with open(COCO_ANN) as f:
        coco = json.load(f)
    rng = np.random.default_rng(0)
    recs = []
    for a in [a for a in coco['annotations'] if a.get('num_keypoints', 0) >= 10][:n]:
        kp = np.reshape(a['keypoints'], (17, 3)).astype(float)
        scores = rng.uniform(0.05, 1.0, 17)
        kp[:, :2] += rng.normal(0, 4, (17, 2)) * (1 + (scores < 0.3)[:, None] * 5)
        kp[:, 2] = scores
        recs.append(dict(image_id=a['image_id'], category_id=1, score=float(scores.mean()),
                         keypoints=kp.reshape(-1).tolist()))
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(recs))
    return path, recs


def test_refine_results_round_trips_coco_json(tmp_path, coco_ckpt):
    path, recs = _coco_results(tmp_path)
    out = tmp_path / 'refined.json'
    report = refine_results_file(str(path), coco_ckpt, str(out), ann=COCO_ANN, score_thr=0.3)
    assert report.score_thr == 0.3 and len(recs) // 2 < report.matched <= len(recs)
    assert report.coco_ap['instances'] == len(recs)
    for name in ('EPE', 'EPE_replaced'):
        assert report.errors['init'][name] > 0 and report.errors['refined'][name] > 0
    summary = report.summary()
    assert f'{out}: {len(recs)} instances' in summary and 'COCO AP (60 instances)' in summary
    refined = json.loads(out.read_text())
    assert len(refined) == len(recs)
    changed = 0
    for a, b in zip(recs, refined):
        assert a['image_id'] == b['image_id'] and a['score'] == b['score']
        ka, kb = np.reshape(a['keypoints'], (17, 3)), np.reshape(b['keypoints'], (17, 3))
        np.testing.assert_array_equal(ka[:, 2], kb[:, 2])
        moved = ~np.isclose(ka[:, :2], kb[:, :2]).all(1)
        assert not (moved & (ka[:, 2] >= 0.3)).any()  # confident joints never move
        changed += moved.sum()
    assert changed == report.replaced.sum() > 0
    np.testing.assert_allclose(
        np.array([r['keypoints'] for r in refined]).reshape(-1, 17, 3)[..., :2], report.refined,
        rtol=0, atol=1e-9)
    # the output loads in xtcocotools' COCOeval
    ap = coco_keypoint_ap(COCO_ANN, refined, np.full(17, 0.05))
    assert 0 <= ap['AP'] <= 1


def test_refine_results_mmpose0_pickle_with_real_predictions(tmp_path, hand_ckpt):
    out = tmp_path / 'refined.pkl'
    report = refine_results_file(PANOPTIC_PRED, load_refiner(hand_ckpt), str(out),
                                 ann=PANOPTIC_ANN)
    assert report.matched == 846 and not report.coco_ap  # no COCO AP of a pickle
    assert 'matched 846 of 846' in report.summary()
    before, after = load_pose_results(PANOPTIC_PRED), load_pose_results(str(out))
    assert after.format == 'mmpose0_test_pickle' and len(after) == 846
    np.testing.assert_array_equal(before.keypoint_scores, after.keypoint_scores)
    assert before.image_keys == after.image_keys
    np.testing.assert_allclose(after.keypoints, report.refined, atol=1e-4)  # float32 file
    # without out: the same refinement, nothing written
    again = refine_results_file(PANOPTIC_PRED, hand_ckpt, ann=PANOPTIC_ANN)
    np.testing.assert_array_equal(again.replaced, report.replaced)
    assert again.out is None and again.errors == report.errors


def test_refine_results_tool_is_the_function(tmp_path, hand_ckpt):
    out = tmp_path / 'refined.pkl'
    rc, log = _run_tool('tools/refine_results.py', PANOPTIC_PRED, '--ann', PANOPTIC_ANN,
                        '--checkpoint', hand_ckpt, '--out', str(out), '--score-thr', '0.4')
    assert rc == 0, log
    report = refine_results_file(PANOPTIC_PRED, hand_ckpt, str(out), ann=PANOPTIC_ANN,
                                 score_thr=0.4)
    assert report.summary() in log


def test_checkpoint_of_another_skeleton_is_refused(tmp_path, coco_ckpt):
    with pytest.raises(InputFileError, match='has 21 keypoints per instance, the refiner'):
        refine_results_file(PANOPTIC_PRED, coco_ckpt, str(tmp_path / 'x.pkl'))
    assert not (tmp_path / 'x.pkl').exists()
    rc, log = _run_tool('tools/refine_results.py', PANOPTIC_PRED, '--checkpoint', coco_ckpt,
                        '--out', str(tmp_path / 'x.pkl'))
    assert rc == 2  # the tool: one error line, no traceback
    assert 'has 21 keypoints per instance, the refiner' in log and 'Traceback' not in log
    assert not (tmp_path / 'x.pkl').exists()


def test_malicious_or_broken_checkpoint_is_refused(tmp_path):
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': {'cfg': 'x'}}, evil)  # a valid zip to start with
    import zipfile
    with zipfile.ZipFile(evil) as z:
        names = z.namelist()
    data_pkl = [n for n in names if n.endswith('data.pkl')][0]

    class Exploit:
        def __reduce__(self):
            return (os.system, ('echo pwned > /tmp/mmport_ckpt_pwned',))
    with zipfile.ZipFile(evil, 'w') as z:
        z.writestr(data_pkl, pickle.dumps({'meta': Exploit()}, protocol=2))
        z.writestr(data_pkl.rsplit('/', 1)[0] + '/version', '3\n')
    with pytest.raises(InputFileError, match='not a readable checkpoint'):
        load_refiner(str(evil))
    assert not os.path.exists('/tmp/mmport_ckpt_pwned')
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(b'not a checkpoint at all')
    with pytest.raises(InputFileError, match='broken.pth'):
        load_refiner(str(broken))


def _panoptic_inputs():
    """The 846 real MobileNetV2 predictions: keypoints (N, 21, 2), scores
    (N, 21), annotation boxes (N, 4) xyxy, all float32."""
    res = load_pose_results(PANOPTIC_PRED)
    with open(PANOPTIC_ANN) as f:
        boxes = np.array([a['bbox'] for a in json.load(f)['annotations']], np.float32)
    boxes[:, 2:] += boxes[:, :2]
    return res.keypoints.astype(np.float32), res.keypoint_scores.astype(np.float32), boxes


def test_onnx_export_matches_pytorch_on_real_predictions(tmp_path, hand_ckpt):
    import onnx
    import onnxruntime as ort

    from mmport.deployment import export_onnx
    refiner = load_refiner(hand_ckpt)
    onnx_file = export_onnx(refiner, str(tmp_path / 'port.onnx'))
    assert not refiner.training  # export used to leave it in train mode
    meta = {p.key: p.value for p in onnx.load(onnx_file).metadata_props}
    assert json.loads(meta.pop('mmport.rule')) == refiner.rule.to_config()
    assert meta == {'mmport.score_thr': '0.3', 'mmport.num_keypoints': '21',
                    'mmport.candidates': 'below_score', 'mmport.rescore': 'none'}
    kpts, scores, boxes = _panoptic_inputs()
    session = ort.InferenceSession(onnx_file, providers=['CPUExecutionProvider'])
    for batch in (1, 846):  # dynamic batch axis
        onnx_out, onnx_rep = session.run(None, dict(keypoints=kpts[:batch],
                                                    scores=scores[:batch],
                                                    bboxes=boxes[:batch]))
        ref, rep = refiner.refine(torch.from_numpy(kpts[:batch]),
                                  torch.from_numpy(scores[:batch]),
                                  torch.from_numpy(boxes[:batch]))
        np.testing.assert_array_equal(onnx_rep, rep.numpy())
        err = np.abs(onnx_out - ref.numpy()).max()
        assert err < 1e-3, err  # pixels
    assert rep.any()
    # flip test (instance and mirror image in one network call) exports too
    refiner.rule = refiner.rule.replace(flip_test=True)
    session = ort.InferenceSession(export_onnx(refiner, str(tmp_path / 'flip.onnx')),
                                   providers=['CPUExecutionProvider'])
    onnx_out, _ = session.run(None, dict(keypoints=kpts, scores=scores, bboxes=boxes))
    flipped, _ = refiner.refine(*(torch.from_numpy(a) for a in (kpts, scores, boxes)))
    assert np.abs(onnx_out - flipped.numpy()).max() < 1e-3
    assert np.abs(flipped.numpy() - ref.numpy()).max() > 0.1  # it did change the output
    from mmport.deployment import compare_onnx_with_pytorch
    err, masks_equal, _ = compare_onnx_with_pytorch(refiner, str(tmp_path / 'flip.onnx'))
    assert err < 1e-3 and masks_equal
    rc, log = _run_tool('tools/export_onnx.py', hand_ckpt, '--out', str(tmp_path / 'b.onnx'))
    assert rc == 0 and 'max abs error' in log and 'masks equal: True' in log, log


def test_openvino_refiner_matches_pytorch_on_real_predictions(tmp_path, hand_ckpt):
    import onnx

    from mmport.deployment import OpenVINORefiner, export_onnx
    refiner = load_refiner(hand_ckpt)
    onnx_file = export_onnx(refiner, str(tmp_path / 'port.onnx'))
    kpts, scores, boxes = _panoptic_inputs()
    # 100 per request: several full chunks and a shorter last one
    ov_refiner = OpenVINORefiner(onnx_file, chunk_size=100, num_requests=3)
    assert (ov_refiner.score_thr, ov_refiner.num_keypoints) == (0.3, 21)
    for batch in (0, 1, 846):
        ref, rep = refiner.refine(*(torch.from_numpy(a[:batch]) for a in (kpts, scores, boxes)))
        out, ov_rep = ov_refiner.refine(kpts[:batch], scores[:batch], boxes[:batch])
        assert out.shape == (batch, 21, 2) and out.dtype == np.float32
        np.testing.assert_array_equal(ov_rep, rep.numpy())
        assert batch == 0 or np.abs(out - ref.numpy()).max() < 1e-3  # pixels
    todo = (scores < 0.3).any(1)
    assert 100 < todo.sum() < 846 and rep.any()
    np.testing.assert_array_equal(out[~todo], kpts[~todo])  # skipped: unchanged
    # bf16: same joints replaced, positions within a pixel
    out16, rep16 = OpenVINORefiner(onnx_file, precision='bf16').refine(kpts, scores, boxes)
    np.testing.assert_array_equal(rep16, rep.numpy())
    assert np.abs(out16 - ref.numpy()).max() < 1.0
    # bad inputs: one clear error each
    with pytest.raises(ValueError, match='built for 21 keypoints'):
        ov_refiner.refine(np.zeros((2, 17, 2)), np.zeros((2, 17)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match='scores must be'):
        ov_refiner.refine(kpts[:2], scores[:3], boxes[:2])
    with pytest.raises(ValueError, match='precision'):
        OpenVINORefiner(onnx_file, precision='fp16')
    with pytest.raises(ValueError, match='chunk_size'):
        OpenVINORefiner(onnx_file, chunk_size=0)
    model = onnx.load(onnx_file)
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / 'no_meta.onnx'))
    with pytest.raises(InputFileError, match='no_meta.onnx: has no mmport.score_thr'):
        OpenVINORefiner(str(tmp_path / 'no_meta.onnx'))
    (tmp_path / 'broken.onnx').write_bytes(b'not a model')
    with pytest.raises(InputFileError, match='broken.onnx: is not a model OpenVINO can read'):
        OpenVINORefiner(str(tmp_path / 'broken.onnx'))
    with pytest.raises(InputFileError, match='does not exist'):
        OpenVINORefiner(str(tmp_path / 'missing.onnx'))


def test_refine_results_tool_refuses_a_bad_rescore_in_one_line(tmp_path):
    body = ('data/body_real/coco_blazepose.json.gz', '--checkpoint',
            'checkpoints/port_coco17_refiner.pth', '--out', str(tmp_path / 'o.json'))
    code, out = _run_tool('tools/refine_results.py', *body, '--rescore', '1.5')
    assert code == 2 and 'argument --rescore: must be in [0, 1], got 1.5' in out
    assert 'Traceback' not in out
    code, out = _run_tool('tools/refine_results.py', 'data/body_real/coco_blazepose.json.gz',
                          '--checkpoint', 'checkpoints/port_panoptic_hand21.pth',
                          '--out', str(tmp_path / 'o.json'), '--rescore', '0.5')
    assert code == 2 and 'Traceback' not in out
    assert 'port_panoptic_hand21.pth: does not estimate keypoint similarities' in out
    assert not (tmp_path / 'o.json').exists()


# Ground truth never enters refinement (issue #29): the refiner reads the
# results file alone; an annotation file only scores. The shipped body
# refiner's rule moves nothing: these tests refine with its weights and the
# gated, rescoring rule it shipped with before (GATED_BODY_RULE).

HAND = 'checkpoints/port_panoptic_hand21.pth'
MPII_REFINER = 'checkpoints/port_mpii16_scorefree.pth'
LSP_PRED = 'data/body_real/lsp_blazepose.json.gz'
LSP_GT = 'data/body_real/lsp_gt.json.gz'
MPII = 'data/mpii/mpii_val_preds.npz'

_spec = importlib.util.spec_from_file_location('refine_results_tool',
                                               os.path.join(REPO, 'tools', 'refine_results.py'))
_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tool)


def _lsp_records(n=300):
    """The first ``n`` of BlazePose's real LSP results, each with its ``bbox``."""
    with gzip.open(os.path.join(REPO, LSP_PRED), 'rt') as f:
        return json.load(f)[:n]


def _lsp_json(tmp_path, n=300):
    recs = _lsp_records(n)
    path = tmp_path / 'lsp.json'
    path.write_text(json.dumps(recs))
    return str(path), LSP_GT, write_gated_body_checkpoint(tmp_path), []


def _mpii_dump(tmp_path, n=300):
    """An MMPose ``--dump`` pickle of the 8-stack hourglass' real predictions
    of the first ``n`` MPII validation persons, each with the box it ran on
    (MPII's protocol box), and a COCO-style annotation file of them (with
    head sizes). The third values are "predicted" flags, not confidences."""
    d = np.load(os.path.join(REPO, MPII))
    from benchmarks.mpii_coco import mpii_annotations
    dump = []
    for i in range(n):
        image_id = int(d['val_image_id'][i])
        box = d['val_bbox'][i].astype(float)
        dump.append(dict(img_path=f'/mpii/images/{image_id}.jpg', img_id=image_id, id=i,
                         pred_instances=dict(
                             keypoints=d['pred_hg_s8'][i][None].astype(np.float32),
                             keypoint_scores=d['predicted_hg_s8'][i][None].astype(np.float32),
                             bboxes=box[None].astype(np.float32),
                             bbox_scores=np.ones(1, np.float32))))
    path, ann = tmp_path / 'mpii_dump.pkl', tmp_path / 'mpii_ann.json'
    path.write_bytes(pickle.dumps(dump))
    ann.write_text(json.dumps(mpii_annotations(d, range(n))))
    return str(path), str(ann), MPII_REFINER, ['--scores', 'none']


def _panoptic_pickle(tmp_path):
    return PANOPTIC_PRED, PANOPTIC_ANN, HAND, []


_FORMATS = {'coco_json': (_lsp_json, 'refined.json.gz'),
            'mmpose_dump': (_mpii_dump, 'refined.pkl'),
            'mmpose0_test_pickle': (_panoptic_pickle, 'refined.pkl')}


def _refined_joints(log):
    return int(re.search(r'(\d+) joints of \d+ instances refined', log).group(1))


@pytest.mark.parametrize('kind', sorted(_FORMATS))
def test_annotations_never_change_the_refined_file(tmp_path, capsys, kind):
    """``tools/refine_results.py X --out A`` and the same with ``--ann ANN``
    write the same bytes, on real predictions of three formats: BlazePose's
    LSP results (COCO json with ``bbox``, the shipped body refiner's weights
    with the gated rule it shipped with before, which rescores), the
    hourglass' MPII predictions (an MMPose dump with ``bboxes``, the shipped
    score-free refiner) and MobileNetV2's Panoptic
    hands (an MMPose 0.x pickle with ``boxes``, the shipped hand refiner).
    The annotations did score: the log holds the matched instances."""
    make, name = _FORMATS[kind]
    results, ann, ckpt, extra = make(tmp_path)
    written, logs = {}, {}
    for with_ann in (False, True):
        out = tmp_path / f'{int(with_ann)}_{name}'
        _tool.main([results, '--checkpoint', ckpt, '--out', str(out), *extra]
                   + (['--ann', ann] if with_ann else []))
        written[with_ann], logs[with_ann] = out.read_bytes(), capsys.readouterr().out
    assert written[True] == written[False]
    assert load_pose_results(str(tmp_path / f'1_{name}')).format == kind
    assert 'matched' not in logs[False] and re.search(r'matched [1-9]\d* of', logs[True])
    # the same refinement, and one that changed the file
    assert _refined_joints(logs[True]) == _refined_joints(logs[False])
    if kind == 'coco_json':  # every person has a box: the body refiner rescored them
        assert 'instance scores rescored' in logs[True] and 'COCO AP' in logs[True]
        assert 'framed by their keypoints' not in logs[True]
        rescored = load_pose_results(str(tmp_path / f'1_{name}')).scores
        assert not np.allclose(rescored, load_pose_results(results).scores)
    else:
        assert _refined_joints(logs[True]) > 0


def test_refiner_frames_are_the_results_boxes(tmp_path):
    """``auto``: the results' own box where it is finite and not degenerate
    (a COCO json ``bbox`` as xyxy, ``center`` / ``scale`` as a box of side
    scale * 200), else the confident keypoints' extent; ``results`` keeps the
    unusable box (the instance passes through unchanged); ``keypoints``
    frames every instance by its keypoints. Annotation boxes are no
    source."""
    from mmport.apis import BBOX_SOURCES
    from mmport.apis.framing import frame_kinds, keypoint_extent_boxes, refiner_boxes
    assert BBOX_SOURCES == ('auto', 'results', 'keypoints')
    recs = _lsp_records(4)
    del recs[1]['bbox']
    recs[2].pop('bbox')
    recs[2].update(center=[60.0, 80.0], scale=[0.3, 0.6])
    recs[3]['bbox'] = [10, 10, 0, 50]  # degenerate
    path = tmp_path / 'res.json'
    path.write_text(json.dumps(recs))
    res = load_pose_results(str(path))
    np.testing.assert_allclose(res.bboxes[0], np.add(recs[0]['bbox'], [0, 0] + recs[0]['bbox'][:2]))
    assert list(frame_kinds(res)) == ['results', 'keypoints', 'results', 'keypoints']
    boxes = refiner_boxes(res, 0.5)
    np.testing.assert_array_equal(boxes[0], res.bboxes[0])
    np.testing.assert_allclose(boxes[2], [30, 20, 90, 140])
    np.testing.assert_array_equal(
        boxes[1], keypoint_extent_boxes(res.keypoints, res.keypoint_scores, 0.5)[1])
    assert (boxes[3] != res.bboxes[3]).any()  # the extent, not the degenerate box
    assert list(frame_kinds(res, 'results')) == ['results'] * 4
    assert np.isnan(refiner_boxes(res, 0.5, 'results')[1]).all()
    assert list(frame_kinds(res, 'keypoints')) == ['keypoints'] * 4
    with pytest.raises(ValueError, match='bbox source must be one of'):
        frame_kinds(res, 'ann')


def test_results_without_boxes_are_framed_by_their_keypoints(tmp_path):
    """BlazePose's LSP results stripped of their boxes: every person is
    framed by its keypoints, the summary says so, and the body refiner with
    its gated, rescoring rule keeps every score (its expected OKS is learned in box frames);
    ``--bbox-source results`` is refused in one line."""
    recs = [{k: v for k, v in r.items() if k != 'bbox'} for r in _lsp_records(200)]
    path = tmp_path / 'nobox.json'
    path.write_text(json.dumps(recs))
    out = tmp_path / 'refined.json'
    refiner = gated_body_refiner()
    report = refine_results_file(str(path), refiner, str(out))
    assert report.framed_by_keypoints == 200 and report.rescore == 0
    assert report.scores_kept_unboxed == 200
    summary = report.summary()
    assert '200 of 200 instances framed by their keypoints: the file gives no usable box' \
        in summary and 'instance scores kept' in summary
    assert [r['score'] for r in json.loads(out.read_text())] == [r['score'] for r in recs]
    # one person without a box is enough to keep every score
    recs = _lsp_records(200)
    del recs[7]['bbox']
    one = tmp_path / 'one_without.json'
    one.write_text(json.dumps(recs))
    report = refine_results_file(str(one), refiner)
    assert report.framed_by_keypoints == 1 and report.scores_kept_unboxed == 1
    assert report.rescore == 0 and '1 of 200 instances framed by their keypoints' in \
        report.summary() and 'instance scores kept: 1 of 200' in report.summary()
    rc, log = _run_tool('tools/refine_results.py', str(path),
                        '--checkpoint', BODY, '--out', str(tmp_path / 'x.json'),
                        '--bbox-source', 'results')
    assert rc == 2 and 'nobox.json: gives no person box' in log and 'Traceback' not in log
    assert not (tmp_path / 'x.json').exists()


def _lsp_mmpose0_pickle(tmp_path, n=256, batch=64):
    """BlazePose's real LSP results as an MMPose 0.x test pickle: ``boxes``
    hold the centre and scale (units of 200 px) of each record's ``bbox``,
    its area and the record's score."""
    recs = _lsp_records(n)
    batches = []
    for start in range(0, n, batch):
        part = recs[start:start + batch]
        box = np.array([r['bbox'] for r in part], np.float32)
        boxes = np.concatenate([box[:, :2] + box[:, 2:] / 2, box[:, 2:] / 200,
                                box[:, 2:3] * box[:, 3:4],
                                np.array([[r['score']] for r in part], np.float32)], 1)
        batches.append(dict(
            preds=np.array([r['keypoints'] for r in part], np.float32).reshape(-1, 17, 3),
            boxes=boxes, image_paths=[f'lsp/images/im{r["image_id"]:04d}.jpg' for r in part],
            bbox_ids=list(range(start, start + len(part))), output_heatmap=None))
    path = tmp_path / 'lsp_mmpose0.pkl'
    path.write_bytes(pickle.dumps(batches))
    return path, batches, recs


def test_mmpose0_pickle_output_carries_rescored_scores(tmp_path, capsys):
    """``--rescore 0.5`` with the body refiner on a 17-joint 0.x pickle: each
    batch's score column ``boxes[:, 5]`` holds the rescored scores (the
    report's), the rest of ``boxes`` is written back as read; ``--rescore 0``
    keeps the file's scores."""
    path, batches, recs = _lsp_mmpose0_pickle(tmp_path)
    res = load_pose_results(str(path))
    np.testing.assert_allclose(res.bboxes, [[x, y, x + w, y + h] for x, y, w, h in
                                            (r['bbox'] for r in recs)], atol=1e-3)
    out = tmp_path / 'rescored.pkl'
    gated = write_gated_body_checkpoint(tmp_path)
    _tool.main([str(path), '--checkpoint', gated, '--out', str(out), '--rescore', '0.5'])
    assert 'rescored by the refiner (weight 0.5' in capsys.readouterr().out
    written = safe_load(out)
    report = refine_results_file(str(path), gated_body_refiner(), rescore=0.5)
    given = np.concatenate([b['boxes'][:, 5] for b in batches])
    scores = np.concatenate([b['boxes'][:, 5] for b in written])
    assert written[0]['boxes'].dtype == np.float32
    assert not np.allclose(scores, given)
    for before, after in zip(batches, written):
        np.testing.assert_array_equal(after['boxes'][:, :5], before['boxes'][:, :5])
        assert after['image_paths'] == before['image_paths']
    np.testing.assert_allclose(load_pose_results(str(out)).scores, scores)
    np.testing.assert_allclose(load_pose_results(str(out)).keypoints, report.refined,
                               atol=1e-3)
    # the weight-0.5 blend of the file's score with the expected OKS (0, 1)
    expected = scores ** 2 / given
    assert ((expected > 0) & (expected < 1 + 1e-4)).all()
    kept = tmp_path / 'kept.pkl'
    _tool.main([str(path), '--checkpoint', gated, '--out', str(kept), '--rescore', '0'])
    np.testing.assert_array_equal(
        np.concatenate([b['boxes'][:, 5] for b in safe_load(kept)]), given)


def test_mmpose_dump_output_carries_rescored_scores(tmp_path):
    """The same for an MMPose dump: ``pred_instances.bbox_scores`` are the
    rescored scores, ``bbox_scores_init`` the dump's own."""
    recs = _lsp_records(64)
    dump = [dict(img_path=f'lsp/im{r["image_id"]:04d}.jpg', img_id=r['image_id'], id=i,
                 pred_instances=dict(
                     keypoints=np.reshape(r['keypoints'], (1, 17, 3))[..., :2],
                     keypoint_scores=np.reshape(r['keypoints'], (1, 17, 3))[..., 2],
                     bboxes=np.array([r['bbox'][:2] + [r['bbox'][0] + r['bbox'][2],
                                                       r['bbox'][1] + r['bbox'][3]]]),
                     bbox_scores=np.array([r['score']], np.float32)))
            for i, r in enumerate(recs)]
    path = tmp_path / 'dump.pkl'
    path.write_bytes(pickle.dumps(dump))
    out = tmp_path / 'out.pkl'
    refiner = gated_body_refiner()
    report = refine_results_file(str(path), refiner, str(out), rescore=0.5)
    assert report.rescore == 0.5
    written = safe_load(out)
    scores = np.concatenate([w['pred_instances']['bbox_scores'] for w in written])
    init = np.concatenate([w['pred_instances']['bbox_scores_init'] for w in written])
    np.testing.assert_array_equal(init, np.float32([r['score'] for r in recs]))
    assert scores.dtype == np.float32 and not np.allclose(scores, init)
    np.testing.assert_allclose(load_pose_results(str(out)).scores, scores)
    # not rescored: the dump's scores as they were
    refine_results_file(str(path), refiner, str(out), rescore=0)
    assert all('bbox_scores_init' not in w['pred_instances'] for w in safe_load(out))


def safe_load(path):
    from mmport.utils import safe_load_pickle
    return safe_load_pickle(str(path))
