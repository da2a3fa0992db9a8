"""What a PORT refiner does at test time, as one explicit, validated object.

A :class:`RefinementRule` says which joints are *candidates* for refinement
(those below a confidence threshold, or all of them for a method without
per-joint confidences), which candidates actually move (the do-no-harm
*gate*: only where the network expects its reconstruction to beat the
input, by a margin per joint class; joints outside the box that frames
their instance may get a smaller margin), how a moved joint is placed
(*blend*), and whether the instance scores are *rescored* with the
refiner's expected OKS. Every mode has a name; an invalid combination
fails when the rule is built, with one line saying why.

Written as a config dict (in a checkpoint's ``meta.cfg`` and in configs)::

    rule=dict(candidates='all',
              gate=dict(kind='expected_gain', margin=0.1, outside_box=0.0),
              rescore=dict(weight=0.5))

Older refiners stored the same rule as loose ``test_cfg`` keys with magic
numbers (``score_thr=1.01`` for "every joint", ``gate_margin=1.0`` for
"never", ...); :meth:`RefinementRule.from_legacy_test_cfg` converts them.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

CANDIDATES = ('below_score', 'all')
GATE_KINDS = ('expected_gain', )
BLENDS = ('replace', 'linear')
# a joint class whose gate margin is NEVER keeps its input position
NEVER = 'never'
Margin = Union[float, str]

# the keys older refiners kept in test_cfg for what the rule now holds
LEGACY_KEYS = ('score_thr', 'blend', 'min_confident', 'flip_test', 'gate', 'gate_margin',
               'outside_box_margin', 'rescore', 'rescore_calibration')


class RuleError(ValueError):
    """An invalid refinement rule (one line saying what is wrong)."""


def _number(value, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low <= value <= high) or math.isnan(value):
        raise RuleError(f'refinement rule: {what} must be a number in [{low}, {high}], '
                        f'got {value!r}')
    return float(value)


def _margin(value, what: str) -> Margin:
    if value == NEVER or (isinstance(value, float) and math.isinf(value) and value > 0):
        return NEVER
    return _number(value, what, 0.0, 1e9)


@dataclass(frozen=True)
class GateRule:
    """The do-no-harm gate: a candidate moves only where the network's
    expected quality of its reconstruction beats that of its input by more
    than the margin (:func:`mmport.models.do_no_harm.expected_gain_gate`).

    Attributes:
        kind (str): ``'expected_gain'`` (the only kind; named so that a
            config says what it asks for).
        margin (float | tuple): The gain required, in the network's
            quality units (keypoint similarity or log distance): one number
            for every joint, or one per joint class, where ``'never'``
            keeps that class where it is.
        outside_box (float, optional): The margin of a joint that lies
            outside the box framing its instance, whatever its class's (at
            most this); None: such joints are gated like the others.
    """
    kind: str = 'expected_gain'
    margin: Union[Margin, Tuple[Margin, ...]] = 0.0
    outside_box: Optional[float] = None

    def __post_init__(self):
        if self.kind not in GATE_KINDS:
            raise RuleError(f'refinement rule: gate kind must be one of {GATE_KINDS}, '
                            f'got {self.kind!r}')
        if isinstance(self.margin, (list, tuple)):
            margin = tuple(_margin(m, f'gate margin of joint class {j}')
                           for j, m in enumerate(self.margin))
        else:
            margin = _margin(self.margin, 'gate margin')
        object.__setattr__(self, 'margin', margin)
        if self.outside_box is not None:
            object.__setattr__(self, 'outside_box',
                               _number(self.outside_box, 'gate outside_box margin', 0.0))

    def margins(self, num_keypoints: int) -> Tensor:
        """The margin of each joint class (K,), ``inf`` for ``'never'``."""
        values = self.margin if isinstance(self.margin, tuple) else (self.margin, ) * num_keypoints
        if len(values) != num_keypoints:
            raise RuleError(f'refinement rule: {len(values)} gate margins for a refiner of '
                            f'{num_keypoints} keypoints')
        return torch.tensor([math.inf if m == NEVER else m for m in values])


@dataclass(frozen=True)
class RescoreRule:
    """New instance scores from the refiner's expected OKS of each output
    pose: ``score ** (1 - weight) * expected_oks ** weight``.

    Attributes:
        weight (float): In (0, 1].
        needs_box (bool): Rescore only instances framed by the box the
            detector ran on: the expected OKS is learned in such frames,
            and a results file without boxes keeps its scores.
        calibration (tuple, optional): ``(xs, ys)``, a piecewise-linear map
            of the expected OKS applied before the blend (from
            :func:`mmport.fitting.fit_similarity_calibration`).
    """
    weight: float = 0.5
    needs_box: bool = True
    calibration: Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]] = None

    def __post_init__(self):
        _number(self.weight, 'rescore weight', 0.0, 1.0)
        if self.weight == 0:
            raise RuleError('refinement rule: a rescore weight of 0 rescores nothing; '
                            'write rescore=None')
        if self.calibration is not None:
            xs, ys = (tuple(float(v) for v in part) for part in self.calibration)
            if len(xs) != len(ys) or len(xs) < 2 or any(b <= a for a, b in zip(xs, xs[1:])):
                raise RuleError('refinement rule: rescore calibration must be [xs, ys], two '
                                'equally long sequences (>= 2 knots), xs increasing')
            object.__setattr__(self, 'calibration', (xs, ys))


@dataclass(frozen=True)
class RefinementRule:
    """The test-time rule of a refiner.

    Attributes:
        candidates (str): ``'below_score'``: joints whose confidence is
            below ``score_thr``; ``'all'``: every joint (methods without
            per-joint confidences, or a refiner that leaves the choice to
            its gate).
        score_thr (float, optional): The threshold of ``'below_score'``
            (None with ``'all'``).
        gate (GateRule, optional): None: every candidate moves.
        blend (str): ``'replace'``: a moved joint takes its reconstruction;
            ``'linear'``: ``w * input + (1 - w) * reconstruction`` with
            ``w = score / score_thr`` (``'below_score'`` only).
        min_confident (int): An instance with fewer non-candidate joints
            passes through unchanged.
        flip_test (bool): Also reconstruct the mirrored instance and
            average the two (twice the network cost).
        rescore (RescoreRule, optional): None: instance scores are kept.
    """
    candidates: str = 'below_score'
    score_thr: Optional[float] = 0.3
    gate: Optional[GateRule] = None
    blend: str = 'replace'
    min_confident: int = 0
    flip_test: bool = False
    rescore: Optional[RescoreRule] = None

    def __post_init__(self):
        if self.candidates not in CANDIDATES:
            raise RuleError(f'refinement rule: candidates must be one of {CANDIDATES}, '
                            f'got {self.candidates!r}')
        if self.candidates == 'below_score':
            if self.score_thr is None:
                raise RuleError("refinement rule: candidates='below_score' needs score_thr")
            object.__setattr__(self, 'score_thr', _number(self.score_thr, 'score_thr', 0.0))
        elif self.score_thr is not None:
            raise RuleError("refinement rule: candidates='all' takes no score_thr "
                            f'(got {self.score_thr!r})')
        if self.blend not in BLENDS:
            raise RuleError(f'refinement rule: blend must be one of {BLENDS}, '
                            f'got {self.blend!r}')
        if self.blend == 'linear' and self.candidates != 'below_score':
            raise RuleError("refinement rule: blend='linear' weighs by score / score_thr, "
                            "so it needs candidates='below_score'")
        if isinstance(self.min_confident, bool) or not isinstance(self.min_confident, int) \
                or self.min_confident < 0:
            raise RuleError('refinement rule: min_confident must be an int >= 0, '
                            f'got {self.min_confident!r}')
        if self.min_confident and self.candidates == 'all':
            raise RuleError("refinement rule: with candidates='all' no joint is confident, "
                            'so min_confident must be 0')
        if not isinstance(self.flip_test, bool):
            raise RuleError(f'refinement rule: flip_test must be True or False, '
                            f'got {self.flip_test!r}')
        for name, kind in (('gate', GateRule), ('rescore', RescoreRule)):
            value = getattr(self, name)
            if isinstance(value, dict):
                value = _build(kind, value, name)
            if value is not None and not isinstance(value, kind):
                raise RuleError(f'refinement rule: {name} must be a dict or None, got {value!r}')
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------ building
    @classmethod
    def build(cls, cfg: Union['RefinementRule', dict, None]) -> 'RefinementRule':
        """A rule from its config dict (``gate`` and ``rescore`` as dicts),
        or the rule itself; None gives the default rule."""
        if isinstance(cfg, cls):
            return cfg
        return _build(cls, dict(cfg or {}), 'rule')

    def to_config(self) -> dict:
        """The config dict :meth:`build` reads back (JSON / mmengine Config
        friendly: tuples become lists)."""
        def plain(value):
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            return value
        return {f.name: (None if getattr(self, f.name) is None else
                         {k: plain(v) for k, v in dataclasses.asdict(getattr(self, f.name)).items()}
                         if f.name in ('gate', 'rescore') else plain(getattr(self, f.name)))
                for f in dataclasses.fields(self)}

    def replace(self, **changes) -> 'RefinementRule':
        """A copy with ``changes`` (``gate`` / ``rescore`` may be dicts)."""
        return RefinementRule.build({**self.to_config(), **changes})

    def with_threshold(self, score_thr: Optional[float]) -> 'RefinementRule':
        """The rule with another threshold (None: this one); a threshold
        only exists for ``'below_score'`` candidates."""
        if score_thr is None or self.candidates == 'all':
            return self
        return self.replace(score_thr=score_thr)

    @classmethod
    def from_legacy_test_cfg(cls, test_cfg: dict, use_scores: bool = True,
                             quality_kind: str = 'log_distance') -> 'RefinementRule':
        """The rule that an older refiner's loose ``test_cfg`` keys meant.

        ``score_thr`` above 1 made every joint a candidate, and so did a
        threshold of 1 for a score-free network (``use_scores=False``: it was
        fed zero scores); a gate margin of ``inf``, or of 1 or more for
        keypoint-similarity estimates (whose gains lie in [-1, 1]), never
        moved its joint class; ``rescore=0`` kept the scores.
        """
        cfg = {'score_thr': 0.3, 'blend': 'replace', 'min_confident': 3, 'flip_test': False,
               'gate': False, 'gate_margin': 0.0, 'outside_box_margin': None, 'rescore': 0.0,
               'rescore_calibration': None, **test_cfg}
        thr = float(cfg['score_thr'])
        every = thr > 1 or (not use_scores and thr >= 1)
        never_at = 1.0 if quality_kind == 'keypoint_similarity' else math.inf

        def margin(m):
            return NEVER if float(m) >= never_at else float(m)
        gate = None
        if cfg['gate']:
            m = cfg['gate_margin']
            gate = GateRule(margin=tuple(margin(v) for v in m) if isinstance(m, (list, tuple))
                            else margin(m), outside_box=cfg['outside_box_margin'])
        rescore = None
        if cfg['rescore']:
            rescore = RescoreRule(weight=float(cfg['rescore']),
                                  calibration=cfg['rescore_calibration'])
        return cls(candidates='all' if every else 'below_score',
                   score_thr=None if every else thr, gate=gate, blend=cfg['blend'],
                   min_confident=0 if every else int(cfg['min_confident']),
                   flip_test=bool(cfg['flip_test']), rescore=rescore)

    @classmethod
    def keep_input(cls) -> 'RefinementRule':
        """The identity rule: every joint keeps its input position and the
        instance scores are kept (what a refiner whose gains were not shown
        to exceed their noise ships with)."""
        return cls(candidates='all', score_thr=None, gate=GateRule(margin=NEVER))

    @property
    def moves_nothing(self) -> bool:
        """True when no joint can move and no score changes."""
        gate = self.gate
        if gate is None or self.rescore is not None or gate.outside_box is not None:
            return False
        margins = gate.margin if isinstance(gate.margin, tuple) else (gate.margin, )
        return all(m == NEVER for m in margins)

    # ------------------------------------------------------------- applying
    def candidate_mask(self, scores: Tensor) -> Tensor:
        """bool (B, K): the candidate joints of instances with confidences
        ``scores`` (B, K)."""
        if self.candidates == 'all':
            return torch.ones_like(scores, dtype=torch.bool)
        return scores < self.score_thr

    # ------------------------------------------------------------- reading
    def describe(self, joint_names: Optional[Sequence[str]] = None) -> str:
        """The rule as a few lines of plain words."""
        if self.moves_nothing:
            return ('moves nothing: every joint keeps its input position and the instance '
                    'scores are kept')
        lines = []
        if self.candidates == 'all':
            lines.append('candidates: every joint (the gate decides which move)')
        else:
            lines.append(f'candidates: joints with a confidence below {self.score_thr:g}')
            if self.min_confident:
                lines.append(f'  instances with fewer than {self.min_confident} confident '
                             'joints are left as they are')
        if self.gate is None:
            lines.append('gate: none, every candidate moves to its reconstruction')
        else:
            if isinstance(self.gate.margin, tuple):
                names = list(joint_names or range(len(self.gate.margin)))
                never = [str(n) for n, m in zip(names, self.gate.margin) if m == NEVER]
                moving = sorted({m for m in self.gate.margin if m != NEVER})
                if not moving:
                    lines.append('gate: no joint inside its box moves')
                else:
                    margin = (f'{moving[0]:g}' if len(moving) == 1 else
                              "its class's margin (" + ', '.join(
                                  f'{n} {m:g}' for n, m in zip(names, self.gate.margin)
                                  if m != NEVER) + ')')
                    lines.append('gate: a candidate moves only where the network expects its '
                                 f'reconstruction to beat its input by more than {margin}')
                    if never:
                        lines.append(f'  never moved: {", ".join(never)}')
            elif self.gate.margin == NEVER:
                lines.append('gate: no joint inside its box moves')
            else:
                lines.append('gate: a candidate moves only where the network expects its '
                             'reconstruction to beat its input by more than '
                             f'{self.gate.margin:g}')
            if self.gate.outside_box is not None:
                lines.append('  joints outside their box move where the expected gain is above '
                             f'{self.gate.outside_box:g}')
        if self.blend == 'linear':
            lines.append('blend: a moved joint is weighted toward its input by score / threshold')
        if self.flip_test:
            lines.append('flip test: each pose and its mirror image are averaged')
        if self.rescore is None:
            lines.append('instance scores: kept')
        else:
            lines.append(f'instance scores: rescored, weight {self.rescore.weight:g} of the '
                         'expected OKS' + (' (calibrated)' if self.rescore.calibration else '')
                         + (', only for instances framed by the detector\'s box'
                            if self.rescore.needs_box else ''))
        return '\n'.join(lines)


def _build(kind, cfg: dict, what: str):
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(cfg) - names)
    if unknown:
        raise RuleError(f'refinement rule: unknown {what} key(s) {unknown}; '
                        f'expected some of {sorted(names)}')
    return kind(**cfg)
