"""Fitting a refiner to data: its weights (fine-tuning on a detector's real
errors, pretraining by masked joint modeling), its rule (cross-validated
choice with the identity floor, the gate's margins, the rescoring
calibration) and the metric maths they are judged by. Kept out of the
models that apply the rule."""
from .calibration import fit_similarity_calibration
from .gate_margins import MARGIN_GRID, choose_gate_margins

__all__ = ['MARGIN_GRID', 'choose_gate_margins', 'fit_similarity_calibration']
