from .explain_plot import plot_explanation
from .refined_pose_visualizer import RefinedPoseLocalVisualizer
from .refinement_plot import plot_refinements

__all__ = ['plot_explanation', 'plot_refinements', 'RefinedPoseLocalVisualizer']
