"""Choosing a refinement rule by grouped K-fold cross-validation, with an
honest estimate of what it buys and the identity rule as the floor.

Each fold's refiner (trained on the other folds) refines its held-out fold
under every candidate rule. The rule written is the one with the best mean
gain over the folds. The promise reported is not that best mean (it would
flatter the choice): each fold is scored with the rule chosen on the *other*
folds. If that promise is not above its own spread over the folds, the
written rule moves nothing and keeps the scores.

A rule meant for methods the refiner never saw is chosen more strictly
(``worst`` gains, one per fold and rule: the lowest of the methods scored
in the fold): it must make no method worse on the folds it is chosen on.
Averaged over methods, a rule that helps the weak ones can still lower a
strong one, which a user of a strong method would pay for.
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from mmport.models.refinement_rule import NEVER, RefinementRule

# gate margins per quality kind, from loose to strict (in the network's
# quality units: keypoint similarity in [-1, 1], or log distance)
GATE_MARGINS = {'keypoint_similarity': (0.0, 0.02, 0.05, 0.1, 0.2),
                'log_distance': (0.0, 0.1, 0.25, 0.5, 1.0)}
# stricter margins offered to a rule for methods the refiner never saw: on an
# unseen method only a large expected gain (a gross error, such as a limb
# folded onto the torso) may be safe to act on
UNSEEN_GATE_MARGINS = {'keypoint_similarity': (0.3, 0.5), 'log_distance': (1.5, 2.0)}
SCORE_THRESHOLDS = (0.2, 0.3, 0.5, 0.7)
RESCORE_WEIGHTS = (0.5, )
# a choice of no candidate: the identity rule (moves nothing, gain 0)
IDENTITY = -1


def candidate_rules(use_scores: bool, quality_kind: Optional[str], can_rescore: bool,
                    unseen: bool = False) -> List[RefinementRule]:
    """The rules a fit chooses among: candidates below each threshold (a
    detector with confidences) or every joint, each with no gate (below a
    threshold only) or with each gate margin of the network's quality kind
    (where it estimates its errors; with ``unseen``, the stricter margins for
    methods the refiner never saw as well); each also with rescoring where
    ``can_rescore``."""
    candidates = [dict(candidates='all', score_thr=None)]
    if use_scores:
        candidates += [dict(candidates='below_score', score_thr=t) for t in SCORE_THRESHOLDS]
    margins = GATE_MARGINS.get(quality_kind, ()) + (
        UNSEEN_GATE_MARGINS.get(quality_kind, ()) if unseen else ())
    gates = [dict(margin=m) for m in margins]
    rules = []
    for cand in candidates:
        for gate in ([None] if cand['candidates'] == 'below_score' else []) + gates:
            for weight in (None, ) + (RESCORE_WEIGHTS if can_rescore else ()):
                rules.append(RefinementRule.build(dict(
                    cand, gate=gate, rescore=None if weight is None else dict(weight=weight))))
    return rules


@dataclass
class RuleChoice:
    """The outcome of a cross-validated rule choice.

    Attributes:
        index (int): The chosen candidate (best mean gain over folds), or
            ``IDENTITY`` where no candidate is eligible.
        fold_rules (list[int]): Per fold, the candidate chosen on the other
            folds (or ``IDENTITY``).
        fold_gains (np.ndarray): (F,) per fold, the gain of its
            ``fold_rules`` rule (the honest estimate).
        promise (float): Mean of ``fold_gains``.
        spread (float): Their standard deviation (ddof 1; 0 for one fold).
        keep (bool): A candidate was chosen, ``promise > 0`` and
            ``promise > spread``: the chosen rule is written; otherwise the
            identity rule is.
    """
    index: int
    fold_rules: List[int]
    fold_gains: np.ndarray
    promise: float
    spread: float
    keep: bool


def _best(gains: np.ndarray, worst: Optional[np.ndarray]) -> int:
    """The candidate with the best mean gain over the folds given, among
    those that make no method worse on any of them (``worst``)."""
    mean = gains.mean(0)
    if worst is not None:
        mean = np.where((worst >= 0).all(0), mean, -np.inf)
        if not np.isfinite(mean).any():
            return IDENTITY
    return int(np.argmax(mean))


def choose_rule(gains: np.ndarray, worst: Optional[np.ndarray] = None) -> RuleChoice:
    """Choose among R candidate rules from their gains (F, R) on F held-out
    folds (higher is better; see :func:`mmport.fitting.fit_metric.gain`).
    Ties go to the earlier candidate.

    Args:
        gains (np.ndarray): (F, R) gain of each rule on each fold.
        worst (np.ndarray, optional): (F, R) the lowest gain of any one
            method in each fold; a rule is eligible only where it is >= 0
            on every fold it is chosen on (else the identity is chosen).
    """
    gains = np.asarray(gains, np.float64)
    if gains.ndim != 2 or not gains.size:
        raise ValueError(f'gains must be (folds, rules), got shape {gains.shape}')
    if worst is not None:
        worst = np.asarray(worst, np.float64)
        if worst.shape != gains.shape:
            raise ValueError(f'worst has shape {worst.shape}, gains {gains.shape}')
    folds = len(gains)
    index = _best(gains, worst)
    fold_rules = [index if folds == 1 else
                  _best(np.delete(gains, f, axis=0),
                        None if worst is None else np.delete(worst, f, axis=0))
                  for f in range(folds)]
    fold_gains = np.array([0.0 if r == IDENTITY else gains[f, r]
                           for f, r in enumerate(fold_rules)])
    promise = float(fold_gains.mean())
    spread = float(fold_gains.std(ddof=1)) if folds > 1 else 0.0
    return RuleChoice(index, fold_rules, fold_gains, promise, spread,
                      bool(index != IDENTITY and promise > 0 and promise > spread))


def rule_label(rule: Optional[RefinementRule]) -> str:
    """A short label: ``'<0.5 gate 0.05 rescore 0.5'`` (None: the identity)."""
    if rule is None or rule.moves_nothing:
        return 'moves nothing'
    parts = ['all' if rule.candidates == 'all' else f'<{rule.score_thr:g}']
    if rule.gate is None:
        parts.append('no gate')
    else:
        m = rule.gate.margin
        parts.append('gate ' + ('never' if m == NEVER else f'{m:g}' if not isinstance(m, tuple)
                                else 'per class'))
    if rule.rescore is not None:
        parts.append(f'rescore {rule.rescore.weight:g}')
    return ' '.join(parts)

