import numpy as np
import pytest
from mmpose.datasets.datasets.utils import parse_pose_metainfo
from mmpose.registry import METRICS

from mmport.evaluation import RefinementMetric, pose_errors, refinement_report


def test_ground_truth_as_prediction_is_perfect():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (5, 21, 2))
    mask = np.ones((5, 21), bool)
    norm = {'bbox': np.full((5, 2), 100.0), 'head': np.full((5, 2), 40.0)}
    out = pose_errors(gt, gt, mask, 0.7, norm)
    assert out['EPE'] == 0 and out['PCK@0.7'] == 1 and out['PCKh@0.7'] == 1
    # MMPose's AUC counts a zero error as wrong at threshold 0: (20 - 1) / 20
    assert out['AUC'] == pytest.approx(0.95)
    assert out['count'] == 105


def test_hand_computed_case():
    gt = np.array([[[0., 0.], [10., 0.]]])
    pred = np.array([[[3., 4.], [10., 0.]]])  # errors 5 and 0
    mask = np.ones((1, 2), bool)
    out = pose_errors(pred, gt, mask, 0.4, {'bbox': np.array([[10., 10.]])})
    assert out['EPE'] == pytest.approx(2.5)
    assert out['PCK@0.4'] == pytest.approx(0.5)  # joint 0 at 0.5 box sizes fails
    # AUC (30 px, 20 thresholds i/20): joint 0 (5/30 = 0.167) passes from i = 4,
    # joint 1 from i = 1: (3 * 0.5 + 16 * 1) / 20
    assert out['AUC'] == pytest.approx(0.875)
    assert np.isnan(pose_errors(pred, gt, np.zeros((1, 2), bool))['EPE'])


def test_report_subsets():
    gt = np.zeros((2, 3, 2))
    init = gt.copy()
    init[0, 1] = [6., 8.]  # error 10, replaced
    init[1, 2] = [3., 4.]  # error 5, occluded, not replaced
    refined = init.copy()
    refined[0, 1] = [3., 4.]  # refined to error 5
    replaced = np.zeros((2, 3), bool)
    replaced[0, 1] = True
    occluded = np.zeros((2, 3), bool)
    occluded[1, 2] = True
    visible = np.ones((2, 3))
    visible[1, 0] = 0  # unlabelled: never scored
    rep = refinement_report(init, refined, gt, visible, replaced, occluded)
    assert rep['init']['EPE'] == pytest.approx(15 / 5)
    assert rep['refined']['EPE'] == pytest.approx(10 / 5)
    assert rep['init']['EPE_replaced'] == pytest.approx(10)
    assert rep['refined']['EPE_replaced'] == pytest.approx(5)
    assert rep['refined']['EPE_occluded'] == pytest.approx(5)
    assert rep['refined']['count_replaced'] == 1


def test_registered_metric_side_by_side():
    metric = METRICS.build(dict(type='RefinementMetric', pck_thr=0.7, norm_items=['bbox', 'head']))
    assert isinstance(metric, RefinementMetric)
    metric.dataset_meta = parse_pose_metainfo(
        dict(from_file='configs/_base_/datasets/panoptic_hand2d.py'))
    gt = np.zeros((1, 21, 2))
    init = gt.copy()
    init[0, 3] = [30., 40.]  # 50 px off
    refined = gt.copy()
    refined[0, 3] = [3., 4.]  # 5 px off
    replaced = np.zeros((1, 21), bool)
    replaced[0, 3] = True
    sample = dict(
        pred_instances=dict(keypoints=refined, keypoints_init=init, refined_mask=replaced),
        gt_instances=dict(keypoints=gt, keypoints_visible=np.ones((1, 21)),
                          bboxes=np.array([[0., 0., 100., 100.]]), head_size=np.array([40.])))
    metric.process({}, [sample, sample])
    m = metric.evaluate(2)
    assert m['init_EPE'] == pytest.approx(50 / 21) and m['EPE'] == pytest.approx(5 / 21)
    assert m['init_EPE_replaced'] == pytest.approx(50) and m['EPE_replaced'] == pytest.approx(5)
    # PCKh@0.7 (28 px): joint 3 fails initially (50 px), passes refined
    assert m['init_PCKh@0.7'] == pytest.approx(20 / 21) and m['PCKh@0.7'] == 1
    assert m['replaced_ratio'] == pytest.approx(1 / 21) and m['num_instances'] == 2


def test_metric_refuses_unrefined_predictions():
    metric = RefinementMetric()
    with pytest.raises(KeyError, match='keypoints_init'):
        metric.process({}, [dict(pred_instances=dict(keypoints=np.zeros((1, 2, 2))),
                                 gt_instances=dict(keypoints=np.zeros((1, 2, 2))))])


def test_move_outcomes_counts_moved_labelled_candidates():
    from mmport.evaluation.functional import move_outcomes
    gt = np.zeros((1, 5, 2))
    init = np.array([[[3., 4.], [1., 0.], [0., 2.], [5., 0.], [7., 0.]]])   # errors 5 1 2 5 7
    refined = init.copy()
    refined[0, 0] = [0., 1.]   # 5 -> 1: improved
    refined[0, 1] = [2., 0.]   # 1 -> 2: worsened
    refined[0, 2] = [2., 0.]   # 2 -> 2: moved, neither
    refined[0, 4] = [0., 0.]   # unlabelled: not counted
    visible = np.array([[2, 2, 1, 2, 0]])
    out = move_outcomes(init, refined, gt, visible, np.ones((1, 5), bool))
    assert out['moved'] == 3
    assert out['replaced_fraction'] == pytest.approx(3 / 4)
    assert out['worsened_fraction'] == pytest.approx(1 / 3)
    assert out['improved_fraction'] == pytest.approx(1 / 3)
    # only joints 3 and 4 were candidates: nothing moved among the labelled ones
    none = move_outcomes(init, refined, gt, visible, np.array([[0, 0, 0, 1, 1]], bool))
    assert none['moved'] == 0 and none['replaced_fraction'] == 0.0
    assert np.isnan(none['worsened_fraction'])


def test_instance_similarity_is_xtcocotools_oks():
    """Per-person OKS equals xtcocotools' own on real COCO annotations."""
    import json

    from xtcocotools.coco import COCO
    from xtcocotools.cocoeval import COCOeval

    from mmport.evaluation import instance_similarity
    with open('data/coco_val_subset/annotations/person_keypoints_val2017_subset.json') as f:
        coco = json.load(f)
    anns = [a for a in coco['annotations'] if a.get('num_keypoints', 0) > 0][:30]
    gt = np.array([np.reshape(a['keypoints'], (17, 3)) for a in anns], float)
    rng = np.random.default_rng(0)
    pred = gt[..., :2] + rng.normal(0, 8, gt[..., :2].shape)
    pred[0, 3] = np.nan  # a missing prediction scores 0 where labelled
    sigmas = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                       .87, .87, .89, .89]) / 10
    ours = instance_similarity(pred, gt[..., :2], gt[..., 2], [a['area'] for a in anns],
                               sigmas)
    coco_gt = COCO()
    coco_gt.dataset = dict(coco, annotations=anns)
    coco_gt.createIndex()
    theirs = []
    for i, a in enumerate(anns):
        kp = np.concatenate([np.nan_to_num(pred[i], nan=-1e6), np.ones((17, 1))], 1)
        dt = coco_gt.loadRes([dict(image_id=a['image_id'], category_id=1, score=1.0,
                                   keypoints=kp.reshape(-1).tolist())])
        ev = COCOeval(coco_gt, dt, 'keypoints', sigmas, use_area=True)
        ev.params.imgIds = [a['image_id']]
        ev._prepare()
        col = [j for j, g in enumerate(ev._gts[a['image_id'], 1]) if g['id'] == a['id']]
        theirs.append(ev.computeOks(a['image_id'], 1)[0, col[0]])
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert 0 < ours.min() and ours.max() < 1
    assert np.isnan(instance_similarity(pred[:1], gt[:1, :, :2], np.zeros((1, 17)), [100.],
                                        sigmas)[0])
    with pytest.raises(ValueError, match='shapes'):
        instance_similarity(pred[:, :16], gt[..., :2], gt[..., 2], np.ones(30), sigmas)
