"""The test-time rule as one object: building, validation, legacy
conversion, what it prints, and that the refiner applies it."""
import math

import pytest
import torch
from mmengine.registry import init_default_scope
from mmpose.registry import MODELS

from mmport.models.refinement_rule import (NEVER, GateRule, RefinementRule, RescoreRule,
                                           RuleError)

COCO_META = dict(from_file='configs/_base_/datasets/coco.py')
MPII_META = dict(from_file='configs/_base_/datasets/mpii.py')


def test_rule_from_config_and_back():
    rule = RefinementRule.build(dict(candidates='all', score_thr=None,
                                     gate=dict(margin=[0.1, 'never', 0.0], outside_box=0.0),
                                     rescore=dict(weight=0.5)))
    assert rule.gate == GateRule(margin=(0.1, NEVER, 0.0), outside_box=0.0)
    assert rule.rescore == RescoreRule(weight=0.5)
    assert RefinementRule.build(rule.to_config()) == rule
    margins = rule.gate.margins(3)
    assert margins[0] == pytest.approx(0.1) and math.isinf(margins[1]) and margins[2] == 0
    with pytest.raises(RuleError, match='3 gate margins for a refiner of 17'):
        rule.gate.margins(17)
    # inf in a margin list (as the margin choice returns it) means never
    assert GateRule(margin=[float('inf'), 0.2]).margin == (NEVER, 0.2)
    assert RefinementRule.build(None) == RefinementRule()


@pytest.mark.parametrize('cfg, message', [
    (dict(candidates='some'), 'candidates must be one of'),
    (dict(candidates='below_score', score_thr=None), 'needs score_thr'),
    (dict(candidates='all'), "takes no score_thr"),
    (dict(candidates='all', score_thr=None, blend='linear'), 'needs candidates'),
    (dict(candidates='all', score_thr=None, min_confident=2), 'min_confident must be 0'),
    (dict(score_thr=float('nan')), 'score_thr must be a number'),
    (dict(blend='mix'), 'blend must be one of'),
    (dict(gate=dict(kind='oracle')), 'gate kind must be one of'),
    (dict(gate=dict(margin=-0.1)), 'gate margin must be a number'),
    (dict(gate=dict(margin='sometimes')), 'gate margin must be a number'),
    (dict(gate=dict(outside_box=-1)), 'outside_box'),
    (dict(rescore=dict(weight=0)), 'write rescore=None'),
    (dict(rescore=dict(weight=1.5)), 'rescore weight'),
    (dict(rescore=dict(weight=0.5, calibration=[[0.5, 0.2], [0.1, 0.3]])), 'xs increasing'),
    (dict(gate=dict(margin=0.0, kind='expected_gain', extra=1)), 'unknown gate key'),
    (dict(threshold=0.3), 'unknown rule key'),
    (dict(flip_test='yes'), 'flip_test must be'),
])
def test_invalid_rules_fail_with_one_clear_line(cfg, message):
    with pytest.raises(RuleError, match=message) as err:
        RefinementRule.build(cfg)
    assert '\n' not in str(err.value)


def test_legacy_test_cfg_keys_convert():
    # the shipped body refiner's old keys: 1.01 made every joint a candidate
    body = RefinementRule.from_legacy_test_cfg(
        dict(score_thr=1.01, min_confident=0, gate=True, gate_margin=0.1, rescore=0.5),
        use_scores=True, quality_kind='keypoint_similarity')
    assert body == RefinementRule(candidates='all', score_thr=None, gate=GateRule(margin=0.1),
                                  rescore=RescoreRule(weight=0.5))
    # the MPII one: a threshold of 1 for zero scores, a margin of 1 (a gain
    # no keypoint similarity reaches) for never
    mpii = RefinementRule.from_legacy_test_cfg(
        dict(score_thr=1.0, min_confident=0, gate=True, gate_margin=1.0, outside_box_margin=0.0,
             flip_test=False), use_scores=False, quality_kind='keypoint_similarity')
    assert mpii == RefinementRule(candidates='all', score_thr=None,
                                  gate=GateRule(margin=NEVER, outside_box=0.0))
    # the hand one, and the old defaults (min_confident 3, no gate)
    assert RefinementRule.from_legacy_test_cfg(dict(score_thr=0.3, min_confident=0)) == \
        RefinementRule(score_thr=0.3)
    assert RefinementRule.from_legacy_test_cfg({}).min_confident == 3
    per_class = RefinementRule.from_legacy_test_cfg(
        dict(gate=True, gate_margin=[0.0, float('inf')], rescore=0.0))
    assert per_class.gate.margin == (0.0, NEVER) and per_class.rescore is None


def _refiner(test_cfg, use_scores=True):
    init_default_scope('mmpose')
    return MODELS.build(dict(
        type='PORTRefiner', metainfo=COCO_META, quality_kind='keypoint_similarity',
        network=dict(type='PoseRelationTransformer', embed_dim=16, depth=1, num_heads=1,
                     mask_mode='hint', predict_errors=True, use_scores=use_scores),
        test_cfg=test_cfg))


def test_refiner_reads_the_rule_or_converts_legacy_keys():
    new = _refiner(dict(rule=dict(candidates='all', score_thr=None, gate=dict(margin=0.1)),
                        chunk_size=64))
    old = _refiner(dict(score_thr=1.01, min_confident=0, gate=True, gate_margin=0.1,
                        chunk_size=64))
    assert new.rule == old.rule and new.chunk_size == 64
    assert new.test_cfg == dict(rule=new.rule.to_config(), chunk_size=64)
    with pytest.raises(TypeError):  # read-only: change the rule by assigning one
        new.test_cfg['rule'] = {}
    with pytest.raises(ValueError, match='not both'):
        _refiner(dict(rule=dict(score_thr=0.3), score_thr=0.3))
    with pytest.raises(ValueError, match='unknown key'):
        _refiner(dict(rules=dict()))
    with pytest.raises(RuleError, match='17 keypoints'):
        _refiner(dict(rule=dict(gate=dict(margin=[0.1, 0.2]))))


def test_candidates_all_refines_every_joint_whatever_the_scores():
    torch.manual_seed(0)
    refiner = _refiner(dict(rule=dict(candidates='all', score_thr=None)), use_scores=False)
    torch.nn.init.normal_(refiner.network.head.weight, std=0.1)
    refiner.eval()
    kpts = torch.rand(4, 17, 2) * 100
    boxes = torch.tensor([[0., 0., 100., 100.]]).repeat(4, 1)
    for scores in (torch.zeros(4, 17), torch.ones(4, 17), torch.rand(4, 17)):
        _, replaced = refiner.refine(kpts, scores, boxes)
        assert replaced.all()
    below = _refiner(dict(rule=dict(score_thr=0.5)), use_scores=False).eval()
    _, replaced = below.refine(kpts, torch.ones(4, 17), boxes)
    assert not replaced.any()


def test_describe_says_what_the_rule_does():
    rule = RefinementRule.build(dict(candidates='all', score_thr=None,
                                     gate=dict(margin=[0.1, 'never', 0.1], outside_box=0.0),
                                     rescore=dict(weight=0.5)))
    text = rule.describe(['nose', 'eye', 'ear'])
    assert 'candidates: every joint' in text
    assert 'more than 0.1' in text and 'never moved: eye' in text
    assert 'joints outside their box move where the expected gain is above 0' in text
    assert 'rescored, weight 0.5' in text
    plain = RefinementRule(score_thr=0.4).describe()
    assert 'confidence below 0.4' in plain and 'every candidate moves' in plain
    assert 'instance scores: kept' in plain


def test_a_checkpoint_with_legacy_keys_loads_with_the_same_rule(tmp_path):
    """A refiner file written before the rule existed (its meta.cfg holds
    the loose test_cfg keys) loads with the rule they meant."""
    from mmengine.config import Config

    from mmport.apis import load_refiner
    init_default_scope('mmpose')
    cfg = dict(type='PORTRefiner', metainfo=MPII_META, quality_kind='keypoint_similarity',
               network=dict(type='PoseRelationTransformer', embed_dim=16, depth=1,
                            num_heads=1, mask_mode='hint', predict_errors=True,
                            use_scores=False),
               test_cfg=dict(score_thr=1.0, blend='replace', min_confident=0, gate=True,
                             gate_margin=1.0, outside_box_margin=0.0, flip_test=False))
    model = MODELS.build(cfg)
    path = str(tmp_path / 'legacy.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(cfg=Config(dict(model=cfg)).pretty_text)), path)
    loaded = load_refiner(path)
    assert loaded.rule == RefinementRule(candidates='all', score_thr=None,
                                         gate=GateRule(margin=NEVER, outside_box=0.0))
    assert 'no joint inside its box moves' in loaded.rule.describe()


def test_keep_input_moves_nothing():
    """The identity rule (what the shipped body refiner ships with): no
    joint moves and no instance score changes, and it says so in one line;
    a rule that rescores, or lets one joint class move, moves something."""
    rule = RefinementRule.keep_input()
    assert rule.moves_nothing and rule.rescore is None
    assert rule.describe().startswith('moves nothing') and '\n' not in rule.describe()
    assert RefinementRule.build(rule.to_config()) == rule
    torch.manual_seed(0)
    refiner = _refiner(dict(rule=rule.to_config())).eval()
    torch.nn.init.normal_(refiner.network.head.weight, std=0.1)
    assert refiner.rule == rule
    kpts = torch.rand(4, 17, 2) * 100
    boxes = torch.tensor([[0., 0., 100., 100.]]).repeat(4, 1)
    inst = torch.tensor([0.9, 0.5, 0.3, 0.1])
    for scores in (torch.zeros(4, 17), torch.ones(4, 17), torch.rand(4, 17)):
        out, replaced, rescored = refiner.refine_and_rescore(kpts, scores, boxes, inst)
        assert torch.equal(out, kpts) and torch.equal(rescored, inst)
        assert replaced.shape == (4, 17) and not replaced.any()
        out, replaced = refiner.refine(kpts, scores, boxes)
        assert torch.equal(out, kpts) and not replaced.any()
    # the same network without the gate moves every joint
    refiner.rule = rule.replace(gate=None)
    out, replaced = refiner.refine(kpts, torch.rand(4, 17), boxes)
    assert replaced.all() and not torch.equal(out, kpts)
    # a rule that rescores, or lets one joint class (or joints outside their
    # box) move, does not move nothing
    assert not rule.replace(rescore=dict(weight=0.5)).moves_nothing
    one_moves = rule.replace(gate=dict(margin=[NEVER] * 16 + [0.1]))
    assert not one_moves.moves_nothing
    assert not one_moves.describe().startswith('moves nothing')
    assert rule.replace(gate=dict(margin=[NEVER] * 17)).moves_nothing
    assert not rule.replace(gate=dict(margin=NEVER, outside_box=0.0)).moves_nothing
    assert not rule.replace(gate=None).moves_nothing
    assert not RefinementRule(score_thr=0.3).moves_nothing
