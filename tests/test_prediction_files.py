import gzip
import json
import os
import pickle

import numpy as np
import pytest

from mmport.datasets import load_pose_results
from mmport.utils import InputFileError, load_json, safe_load_pickle
from tests.conftest import PANOPTIC_ANN, PANOPTIC_PRED


class _Exploit:
    def __reduce__(self):
        return (os.system, ('echo pwned > /tmp/mmport_pwned',))


def test_real_mmpose0_predictions_load_safely():
    res = load_pose_results(PANOPTIC_PRED)
    assert res.format == 'mmpose0_test_pickle'
    assert res.keypoints.shape == (846, 21, 2) and res.keypoint_scores.shape == (846, 21)
    assert res.keypoint_scores.min() == pytest.approx(0.013, abs=1e-3)
    with open(PANOPTIC_ANN) as f:
        ann = json.load(f)
    names = [img['file_name'] for img in ann['images']]
    assert all(key.endswith(name) for key, name in zip(res.image_keys, names))
    # baseline of these predictions, as documented in data/panoptic/SOURCE.md
    gt = np.array([a['keypoints'] for a in ann['annotations']]).reshape(-1, 21, 3)[..., :2]
    assert np.linalg.norm(res.keypoints - gt, axis=-1).mean() == pytest.approx(9.75, abs=0.005)


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / 'evil.pkl'
    path.write_bytes(pickle.dumps([{'preds': _Exploit()}]))
    with pytest.raises(InputFileError, match=r'evil\.pkl: refused.*posix\.system|os\.system'):
        load_pose_results(str(path))
    assert not os.path.exists('/tmp/mmport_pwned')


def test_truncated_pickle_is_a_clear_error(tmp_path):
    data = pickle.dumps([{'preds': np.zeros((2, 21, 3)), 'image_paths': ['a', 'b']}])
    path = tmp_path / 'cut.pkl'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputFileError, match='cut.pkl'):
        safe_load_pickle(str(path))


def test_coco_json_results(tmp_path):
    recs = [dict(image_id=1, category_id=1, keypoints=[1, 2, 0.5] * 17, score=0.9),
            dict(image_id=2, category_id=1, keypoints=[3, 4, 0.1] * 17, score=0.8)]
    path = tmp_path / 'res.json'
    path.write_text(json.dumps(recs))
    res = load_pose_results(str(path))
    assert res.format == 'coco_json' and res.keypoints.shape == (2, 17, 2)
    assert res.image_keys == ['1', '2'] and res.scores.tolist() == [0.9, 0.8]
    path.write_text(json.dumps(recs)[:-10])
    with pytest.raises(InputFileError, match='not valid JSON'):
        load_pose_results(str(path))
    path.write_text(json.dumps([dict(image_id=1, keypoints=[1, 2], score=1)]))
    with pytest.raises(InputFileError, match='triples'):
        load_pose_results(str(path))


def test_gzipped_json_results_and_their_errors(tmp_path):
    records = [dict(image_id=1, category_id=1, score=0.9,
                    keypoints=[10.0, 20.0, 0.5] * 17)]
    plain, packed = tmp_path / 'r.json', tmp_path / 'r.json.gz'
    plain.write_text(json.dumps(records))
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = load_pose_results(str(plain)), load_pose_results(str(packed))
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert b.keypoints.shape == (1, 17, 2) and b.keypoint_scores[0, 0] == 0.5
    not_gzip = tmp_path / 'x.json.gz'
    not_gzip.write_text(json.dumps(records))
    with pytest.raises(InputFileError, match='x.json.gz'):
        load_json(str(not_gzip))
    truncated = tmp_path / 't.json.gz'
    truncated.write_bytes(packed.read_bytes()[:20])
    with pytest.raises(InputFileError, match='t.json.gz'):
        load_pose_results(str(truncated))


def test_coco_json_boxes_are_the_records_own(tmp_path):
    """A record's ``bbox`` [x, y, w, h] (the box the estimator ran on) is read
    as xyxy; MMPose 0.x's ``center`` / ``scale`` (units of 200 px) as the box
    of side scale * 200 around the centre; a record with neither gets a NaN
    row; ``bbox`` wins over ``center`` / ``scale``."""
    kp = [10.0, 20.0, 0.5] * 17
    recs = [dict(image_id=1, category_id=1, keypoints=kp, score=0.9, bbox=[10, 20, 30, 40]),
            dict(image_id=1, category_id=1, keypoints=kp, score=0.8, center=[100, 50],
                 scale=[0.5, 1.0]),
            dict(image_id=2, category_id=1, keypoints=kp, score=0.7),
            dict(image_id=2, category_id=1, keypoints=kp, score=0.6, bbox=[1, 2, 3, 4],
                 center=[100, 50], scale=[0.5, 1.0])]
    path = tmp_path / 'res.json'
    path.write_text(json.dumps(recs))
    res = load_pose_results(str(path))
    np.testing.assert_array_equal(res.bboxes[0], [10, 20, 40, 60])
    np.testing.assert_array_equal(res.bboxes[1], [50, -50, 150, 150])
    assert np.isnan(res.bboxes[2]).all()
    np.testing.assert_array_equal(res.bboxes[3], [1, 2, 4, 6])
    # the box fields stay in the record, to be written back as read
    assert res.extra[0]['bbox'] == [10, 20, 30, 40] and res.extra[1]['scale'] == [0.5, 1.0]
    # no record with a box: no boxes at all
    path.write_text(json.dumps([recs[2]]))
    assert load_pose_results(str(path)).bboxes is None
    path.write_text(json.dumps([dict(recs[0], bbox=[1, 2, 3])]))
    with pytest.raises(InputFileError, match=r'result 0: "bbox" must be \[x, y, w, h\]'):
        load_pose_results(str(path))


def test_real_mmpose0_boxes_are_centre_and_scale():
    """The 0.x pickle's boxes: centre and scale * 200 (MobileNetV2's padded
    square crops around the hands)."""
    res = load_pose_results(PANOPTIC_PRED)
    raw = np.concatenate([b['boxes'] for b in safe_load_pickle(PANOPTIC_PRED)]).astype(float)
    np.testing.assert_allclose((res.bboxes[:, :2] + res.bboxes[:, 2:]) / 2, raw[:, :2])
    np.testing.assert_allclose(res.bboxes[:, 2:] - res.bboxes[:, :2], raw[:, 2:4] * 200)
    np.testing.assert_array_equal(res.scores, raw[:, 5])
