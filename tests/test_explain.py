"""The explain tool and PORTRefiner.explain on a real hand and a real body."""
import json
import subprocess
import sys

import numpy as np
import torch

from mmport.apis import load_refiner
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


def _run(*args):
    proc = subprocess.run([sys.executable, 'tools/explain_refinement.py', *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_explain_a_real_hand_on_its_image(tmp_path, hand_ckpt):
    out = tmp_path / 'hand.png'
    log = _run(PANOPTIC_PRED, '--checkpoint', hand_ckpt, '--ann', PANOPTIC_ANN, '--image',
               'ex2_2.flv_000040_l', '--image-root', 'tests/data/panoptic', '--out', str(out),
               '--score-thr', '0.5')
    assert 'most attended' in log
    assert out.stat().st_size > 20_000


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
    log = _run(str(path), '--checkpoint', coco_ckpt, '--ann', COCO_ANN, '--image',
               '000000000785.jpg', '--image-root', 'tests/data/coco', '--out', str(out))
    assert 'most attended' in log and out.stat().st_size > 20_000
