from .per_image_visualization_hook import PerImagePoseVisualizationHook

__all__ = ['PerImagePoseVisualizationHook']
