"""Choosing a refinement rule by grouped K-fold cross-validation, with an
honest estimate of what it buys and the identity rule as the floor.

Each fold's refiner (trained on the other folds) refines its held-out fold
under every candidate rule. The rule written is the one with the best mean
gain over the folds. The promise reported is not that best mean (it would
flatter the choice): each fold is scored with the rule chosen on the *other*
folds. If that promise is not above its own spread over the folds, the
written rule moves nothing and keeps the scores.
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from mmport.models.refinement_rule import NEVER, RefinementRule

# gate margins per quality kind, from loose to strict (in the network's
# quality units: keypoint similarity in [-1, 1], or log distance)
GATE_MARGINS = {'keypoint_similarity': (0.0, 0.02, 0.05, 0.1, 0.2),
                'log_distance': (0.0, 0.1, 0.25, 0.5, 1.0)}
SCORE_THRESHOLDS = (0.2, 0.3, 0.5, 0.7)
RESCORE_WEIGHTS = (0.5, )


def candidate_rules(use_scores: bool, quality_kind: Optional[str],
                    can_rescore: bool) -> List[RefinementRule]:
    """The rules a fit chooses among: candidates below each threshold (a
    detector with confidences) or every joint, each with no gate (below a
    threshold only) or with each gate margin of the network's quality kind
    (where it estimates its errors); each also with rescoring where
    ``can_rescore``."""
    candidates = [dict(candidates='all', score_thr=None)]
    if use_scores:
        candidates += [dict(candidates='below_score', score_thr=t) for t in SCORE_THRESHOLDS]
    gates = [dict(margin=m) for m in GATE_MARGINS.get(quality_kind, ())]
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
        index (int): The chosen candidate (best mean gain over folds).
        fold_rules (list[int]): Per fold, the candidate chosen on the other
            folds.
        fold_gains (np.ndarray): (F,) per fold, the gain of its
            ``fold_rules`` rule (the honest estimate).
        promise (float): Mean of ``fold_gains``.
        spread (float): Their standard deviation (ddof 1; 0 for one fold).
        keep (bool): ``promise > 0`` and ``promise > spread``: the chosen
            rule is written; otherwise the identity rule is.
    """
    index: int
    fold_rules: List[int]
    fold_gains: np.ndarray
    promise: float
    spread: float
    keep: bool


def choose_rule(gains: np.ndarray) -> RuleChoice:
    """Choose among R candidate rules from their gains (F, R) on F held-out
    folds (higher is better; see :func:`mmport.fitting.fit_metric.gain`).
    Ties go to the earlier candidate."""
    gains = np.asarray(gains, np.float64)
    if gains.ndim != 2 or not gains.size:
        raise ValueError(f'gains must be (folds, rules), got shape {gains.shape}')
    folds = len(gains)
    index = int(np.argmax(gains.mean(0)))
    fold_rules = [index if folds == 1 else
                  int(np.argmax(np.delete(gains, f, axis=0).mean(0))) for f in range(folds)]
    fold_gains = np.array([gains[f, r] for f, r in enumerate(fold_rules)])
    promise = float(fold_gains.mean())
    spread = float(fold_gains.std(ddof=1)) if folds > 1 else 0.0
    return RuleChoice(index, fold_rules, fold_gains, promise, spread,
                      bool(promise > 0 and promise > spread))


def rule_label(rule: RefinementRule) -> str:
    """A short label: ``'<0.5 gate 0.05 rescore 0.5'``."""
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

