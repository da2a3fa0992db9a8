"""Every bad input to the offline refinement gets a correct result or one
clear error naming the file (issue: robust and fast)."""
import importlib.util
import json
import os
import pickle

import numpy as np
import pytest

from mmport.utils import InputFileError, MMPortError
from tests.conftest import PANOPTIC_PRED, REPO

COCO_ANN = 'data/coco_val_subset/annotations/person_keypoints_val2017_subset.json'
_spec = importlib.util.spec_from_file_location('refine_results',
                                               os.path.join(REPO, 'tools', 'refine_results.py'))
refine_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refine_results)


def _records(n=20, seed=0):
    with open(COCO_ANN) as f:
        anns = [a for a in json.load(f)['annotations'] if a.get('num_keypoints', 0) >= 10][:n]
    rng = np.random.default_rng(seed)
    recs = []
    for a in anns:
        kp = np.reshape(a['keypoints'], (17, 3)).astype(float)
        kp[:, 2] = rng.uniform(0.05, 1, 17)
        kp[:, :2] += rng.normal(0, 3, (17, 2))
        recs.append(dict(image_id=a['image_id'], category_id=1, score=0.9,
                         keypoints=kp.reshape(-1).tolist()))
    return recs


def _refine(tmp_path, ckpt, data, name='res.json', raw=None, ann=COCO_ANN, extra=()):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    elif name.endswith('.json'):
        path.write_text(json.dumps(data))
    else:
        path.write_bytes(pickle.dumps(data))
    out = tmp_path / ('out_' + name)
    args = ([str(path), '--checkpoint', ckpt, '--out', str(out)] + (['--ann', ann] if ann else [])
            + list(extra))
    refine_results.main(args)
    return out


def _load_out(out):
    return json.loads(out.read_text()) if str(out).endswith('.json') else pickle.loads(
        out.read_bytes())


def test_truncated_json(tmp_path, coco_ckpt):
    raw = json.dumps(_records()).encode()[:-7]
    with pytest.raises(InputFileError, match=r'res\.json: is not valid JSON'):
        _refine(tmp_path, coco_ckpt, None, raw=raw)
    assert not (tmp_path / 'out_res.json').exists()


def test_truncated_pickle(tmp_path, hand_ckpt):
    raw = open(PANOPTIC_PRED, 'rb').read()[:1000]
    with pytest.raises(InputFileError, match=r'res\.pkl: '):
        _refine(tmp_path, hand_ckpt, None, name='res.pkl', raw=raw, ann=None)


def test_malicious_pickle(tmp_path, hand_ckpt):
    class Exploit:
        def __reduce__(self):
            return (os.system, ('echo pwned > /tmp/mmport_bad_input_pwned',))
    with pytest.raises(InputFileError, match='refused'):
        _refine(tmp_path, hand_ckpt, [{'preds': Exploit()}], name='res.pkl', ann=None)
    assert not os.path.exists('/tmp/mmport_bad_input_pwned')


def test_wrong_keypoint_count(tmp_path, coco_ckpt):
    recs = _records()
    recs[0]['keypoints'] = recs[0]['keypoints'][:-3]  # 16 joints in one record
    with pytest.raises(InputFileError, match='disagree on the number of keypoints'):
        _refine(tmp_path, coco_ckpt, recs)
    recs = [dict(r, keypoints=r['keypoints'][:-3]) for r in _records()]  # 16 everywhere
    with pytest.raises(InputFileError, match='has 16 keypoints per instance, the refiner'):
        _refine(tmp_path, coco_ckpt, recs)


def test_checkpoint_of_another_skeleton(tmp_path, coco_ckpt):
    with pytest.raises(InputFileError, match='has 21 keypoints per instance'):
        _refine(tmp_path, coco_ckpt, None, name='res.pkl', raw=open(PANOPTIC_PRED, 'rb').read(),
                ann=None)


def test_missing_scores(tmp_path, coco_ckpt):
    recs = _records()
    del recs[3]['score']
    with pytest.raises(InputFileError, match='result 3 has no "score"'):
        _refine(tmp_path, coco_ckpt, recs)


def _dump(n=6):
    batches = pickle.loads(open(PANOPTIC_PRED, 'rb').read())
    preds = np.concatenate([b['preds'] for b in batches])[:n]
    return [dict(img_path=f'/x/{i}.jpg', img_id=i, id=i, pred_instances=dict(
        keypoints=preds[i:i + 1, :, :2].copy(), keypoint_scores=preds[i:i + 1, :, 2].copy(),
        bboxes=np.array([[preds[i, :, 0].min(), preds[i, :, 1].min(), preds[i, :, 0].max(),
                          preds[i, :, 1].max()]]))) for i in range(n)]


def test_nan_inf_and_negative_boxes_pass_through(tmp_path, hand_ckpt, capsys):
    dump = _dump(7)
    dump[1]['pred_instances']['keypoints'][0, 4, 0] = np.nan  # NaN keypoint
    dump[2]['pred_instances']['keypoint_scores'][0, 7] = np.inf  # inf score
    dump[3]['pred_instances']['bboxes'][0] = [50, 50, 40, 40]  # negative size
    dump[4]['pred_instances']['bboxes'][0, 2] = np.nan  # NaN box
    dump[5]['pred_instances']['bboxes'][0, 2] = dump[5]['pred_instances']['bboxes'][0, 0]
    # framed by the results' boxes as they are: the unusable ones pass through
    refined = _load_out(_refine(tmp_path, hand_ckpt, dump, name='dump.pkl', ann=None,
                                extra=['--bbox-source', 'results']))
    assert len(refined) == 7
    for i in range(1, 6):  # unchanged, NaN included, and not marked refined
        p = refined[i]['pred_instances']
        np.testing.assert_array_equal(p['keypoints'], dump[i]['pred_instances']['keypoints'])
        assert not p['refined_mask'].any()
    assert refined[6]['pred_instances']['refined_mask'].any()
    # auto: the instances with an unusable box are framed by their keypoints
    # (the boxes themselves are written back as read); NaN values still pass
    capsys.readouterr()
    refined = _load_out(_refine(tmp_path, hand_ckpt, dump, name='dump.pkl', ann=None))
    assert '3 of 7 instances framed by their keypoints' in capsys.readouterr().out
    for i in (1, 2):
        p = refined[i]['pred_instances']
        np.testing.assert_array_equal(p['keypoints'], dump[i]['pred_instances']['keypoints'])
        assert not p['refined_mask'].any()
    assert any(refined[i]['pred_instances']['refined_mask'].any() for i in (3, 4, 5))
    for i in (3, 4, 5):
        np.testing.assert_array_equal(refined[i]['pred_instances']['bboxes'],
                                      dump[i]['pred_instances']['bboxes'])


def test_all_joints_doubtful(tmp_path, coco_ckpt, hand_ckpt, capsys):
    # token mode (COCO config, min_confident=3): nothing to reconstruct from,
    # the instance passes through unchanged and is counted
    recs = _records(4)
    kp = np.reshape(recs[0]['keypoints'], (17, 3))
    kp[:, 2] = 0.01
    recs[0]['keypoints'] = kp.reshape(-1).tolist()
    refined = _load_out(_refine(tmp_path, coco_ckpt, recs))
    assert refined[0]['keypoints'] == recs[0]['keypoints']
    assert '1 instances with candidate joints passed through unchanged' in \
        capsys.readouterr().out
    # hint mode (hand config, min_confident=0) sees the doubtful positions too:
    # every joint is refined
    dump = _dump(2)
    dump[0]['pred_instances']['keypoint_scores'][:] = 0.05
    refined = _load_out(_refine(tmp_path, hand_ckpt, dump, name='dump.pkl', ann=None))
    assert refined[0]['pred_instances']['refined_mask'].all()


def test_empty_predictions_and_images_without_instances(tmp_path, coco_ckpt, hand_ckpt):
    out = _refine(tmp_path, coco_ckpt, [])
    assert _load_out(out) == []
    dump = [dict(img_path='a.jpg', img_id=1, pred_instances=dict(
        keypoints=np.zeros((0, 21, 2)), keypoint_scores=np.zeros((0, 21)),
        bboxes=np.zeros((0, 4))))]
    out = _refine(tmp_path, hand_ckpt, dump, name='dump.pkl', ann=None)
    assert len(_load_out(out)) == 1


def test_duplicate_records_are_all_kept(tmp_path, coco_ckpt):
    recs = _records(5)
    recs = recs + recs  # the same image ids and poses twice
    refined = _load_out(_refine(tmp_path, coco_ckpt, recs))
    assert len(refined) == 10
    assert refined[:5] == refined[5:]


def test_mmpose_dump_round_trip(tmp_path, hand_ckpt):
    dump = _dump(6)
    refined = _load_out(_refine(tmp_path, hand_ckpt, dump, name='dump.pkl', ann=None))
    assert len(refined) == 6
    for before, after in zip(dump, refined):
        p = after['pred_instances']
        np.testing.assert_array_equal(p['keypoints_init'], before['pred_instances']['keypoints'])
        moved = ~np.isclose(p['keypoints'], p['keypoints_init']).all(-1)
        np.testing.assert_array_equal(moved, p['refined_mask'] & moved)
    assert any(a['pred_instances']['refined_mask'].any() for a in refined)


def test_bad_annotation_file(tmp_path, coco_ckpt):
    bad = tmp_path / 'ann.json'
    bad.write_text('{"images": []')
    with pytest.raises(InputFileError, match=r'ann\.json: is not valid JSON'):
        _refine(tmp_path, coco_ckpt, _records(), ann=str(bad))
    bad.write_text('[1, 2]')
    with pytest.raises(InputFileError, match='not a COCO annotation file'):
        _refine(tmp_path, coco_ckpt, _records(), ann=str(bad))


def _mutations(rng, recs):
    """Random malformed variants of a valid COCO results list."""
    text = json.dumps(recs)
    kind = rng.integers(9)
    if kind == 0:  # truncated
        return None, text[:rng.integers(1, len(text))].encode()
    if kind == 1:  # random bytes flipped
        raw = bytearray(text.encode())
        for i in rng.integers(0, len(raw), 5):
            raw[i] = rng.integers(0, 256)
        return None, bytes(raw)
    recs = json.loads(text)
    r = recs[rng.integers(len(recs))]
    if kind == 2:
        r.pop(rng.choice(['image_id', 'keypoints', 'score']))
    elif kind == 3:
        r['keypoints'] = r['keypoints'][:rng.integers(0, 51)]
    elif kind == 4:
        r['keypoints'][rng.integers(51)] = ['x', None, [1, 2], {'a': 1}][rng.integers(4)]
    elif kind == 5:
        r['keypoints'][rng.integers(51)] = float(rng.choice([np.nan, np.inf, -np.inf, 1e30]))
    elif kind == 6:
        r['score'] = ['high', None, [0.5]][rng.integers(3)]
    elif kind == 7:
        return [{'not': 'a list'}, 'text', 3, [None], [[]]][rng.integers(5)], None
    else:
        r['image_id'] = [None, 'abc', 10**12, -1][rng.integers(4)]
    return recs, None


def test_fuzz_malformed_results_files(tmp_path, coco_ckpt):
    rng = np.random.default_rng(0)
    base = _records(8)
    outcomes = {'refined': 0, 'error': 0}
    for trial in range(60):
        data, raw = _mutations(rng, base)
        name = f'fuzz{trial}.json'
        try:
            out = _refine(tmp_path, coco_ckpt, data, name=name, raw=raw)
        except MMPortError as err:
            assert name in str(err)  # the message names the file
            assert not (tmp_path / f'out_{name}').exists()  # nothing half-written
            outcomes['error'] += 1
            continue
        refined = json.loads(out.read_text())
        assert len(refined) == len(data)  # never a silently shorter output
        outcomes['refined'] += 1
    assert outcomes['refined'] > 0 and outcomes['error'] > 0, outcomes
