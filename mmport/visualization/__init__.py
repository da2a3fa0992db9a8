from .refinement_plot import plot_refinements

__all__ = ['plot_refinements']
