"""mmport.apis.explain_refinement (tools/explain_refinement.py) and
PORTRefiner.explain on a real hand and a real body."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmport.apis import explain_refinement, load_refiner
from mmport.utils import MMPortError
from mmport.datasets.transforms import SynthesizePoseErrors
from tests.conftest import PANOPTIC_ANN, PANOPTIC_PRED, REPO

COCO_ANN = 'data/coco_val_subset/annotations/person_keypoints_val2017_subset.json'


def test_attention_rows_are_distributions(hand_ckpt):
    refiner = load_refiner(hand_ckpt)
    kpts = torch.rand(3, 21, 2) * 100
    scores = torch.rand(3, 21)
    boxes = torch.tensor([[0., 0., 100., 100.]] * 3)
    refined, replaced, attention = refiner.explain(kpts, scores, boxes, 0.5)
    assert attention.shape == (3, 2, 21, 21)  # (B, depth, K, K), heads averaged
    torch.testing.assert_close(attention.sum(-1), torch.ones(3, 2, 21))
    torch.testing.assert_close(refined, refiner.refine(kpts, scores, boxes, 0.5)[0])


def test_explain_a_real_hand_on_its_image(tmp_path, hand_ckpt):
    out = tmp_path / 'hand.png'
    proc = subprocess.run(
        [sys.executable, 'tools/explain_refinement.py', PANOPTIC_PRED, '--checkpoint',
         hand_ckpt, '--ann', PANOPTIC_ANN, '--image', 'ex2_2.flv_000040_l', '--image-root',
         'tests/data/panoptic', '--out', str(out), '--score-thr', '0.5'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert out.stat().st_size > 20_000
    explanation = explain_refinement(PANOPTIC_PRED, hand_ckpt, str(tmp_path / 'again.png'),
                                     PANOPTIC_ANN, 'ex2_2.flv_000040_l',
                                     image_root='tests/data/panoptic', score_thr=0.5)
    # the tool prints the function's summary (up to the file name)
    assert explanation.summary().split(': ', 1)[1] in proc.stdout
    assert 'most attended' in proc.stdout
    assert explanation.score < 0.5 and explanation.moved > 0
    assert explanation.attention.shape == (21,)
    np.testing.assert_allclose(explanation.attention.sum(), 1, rtol=1e-5)
    assert explanation.joint not in explanation.most_attended()
    with pytest.raises(MMPortError, match='no instance of an image matching'):
        explain_refinement(PANOPTIC_PRED, hand_ckpt, str(tmp_path / 'x.png'), image='nowhere')


def test_explain_a_real_body(tmp_path, coco_ckpt):
    with open(COCO_ANN) as f:
        coco = json.load(f)
    meta = dict(from_file='configs/_base_/datasets/coco.py')
    synth = SynthesizePoseErrors(metainfo=meta, seed=0, probs=dict(jitter=0.3, miss=0.2))
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    flip = parse_pose_metainfo(meta)['flip_indices']
    recs = []
    for a in coco['annotations']:
        if a['image_id'] != 785 or not a.get('num_keypoints'):
            continue
        kp = np.reshape(a['keypoints'], (17, 3)).astype(np.float32)
        x, y, w, h = a['bbox']
        res = synth(dict(keypoints=kp[None, :, :2], keypoints_visible=(kp[None, :, 2] > 0),
                         bbox=np.array([[x, y, x + w, y + h]]), flip_indices=flip,
                         area=np.array([a['area']])))
        recs.append(dict(image_id=785, category_id=1, score=1.0, keypoints=np.concatenate(
            [res['input_keypoints'][0], res['input_keypoint_scores'][0][:, None]], 1)
            .reshape(-1).tolist()))
    assert recs
    path = tmp_path / 'body.json'
    path.write_text(json.dumps(recs))
    out = tmp_path / 'body.png'
    explanation = explain_refinement(str(path), coco_ckpt, str(out), COCO_ANN,
                                     '000000000785.jpg', image_root='tests/data/coco')
    assert 'most attended' in explanation.summary() and out.stat().st_size > 20_000
    assert explanation.joint_names[0] == 'nose' and len(explanation.attention) == 17
