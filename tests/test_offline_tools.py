"""Offline refinement (mmport.apis.refine_results_file, behind
tools/refine_results.py), ONNX export and checkpoint loading, with refiners
trained for a few iterations through the Runner."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmport.apis import load_refiner, refine_results_file
from mmport.datasets import load_pose_results
from mmport.evaluation import coco_keypoint_ap
from mmport.utils import InputFileError
from tests.conftest import PANOPTIC_ANN, PANOPTIC_PRED, REPO

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
    assert meta == {'mmport.score_thr': '0.3', 'mmport.num_keypoints': '21'}
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
    refiner.test_cfg['flip_test'] = True
    session = ort.InferenceSession(export_onnx(refiner, str(tmp_path / 'flip.onnx')),
                                   providers=['CPUExecutionProvider'])
    onnx_out, _ = session.run(None, dict(keypoints=kpts, scores=scores, bboxes=boxes))
    flipped, _ = refiner.refine(*(torch.from_numpy(a) for a in (kpts, scores, boxes)))
    assert np.abs(onnx_out - flipped.numpy()).max() < 1e-3
    assert np.abs(flipped.numpy() - ref.numpy()).max() > 0.1  # it did change the output
    from mmport.deployment import compare_onnx_with_pytorch
    err, masks_equal = compare_onnx_with_pytorch(refiner, str(tmp_path / 'flip.onnx'))
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
