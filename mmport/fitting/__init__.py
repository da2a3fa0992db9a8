"""Fitting a refinement rule on validation data: the gate's margins, the
rescoring calibration. Statistics for choosing, kept out of the models that
apply the rule."""
from .calibration import fit_similarity_calibration
from .gate_margins import MARGIN_GRID, choose_gate_margins

__all__ = ['MARGIN_GRID', 'choose_gate_margins', 'fit_similarity_calibration']
