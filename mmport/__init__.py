"""mmport: the PORT occlusion refiner as an MMPose plugin.

Importing mmport registers its models, transforms and metrics into MMPose's
own registries (``mmpose.registry.MODELS``, ``TRANSFORMS``, ``METRICS``,
``HOOKS``, ``VISUALIZERS``).
"""
__version__ = '0.1.0'

from . import apis, datasets, evaluation, models  # noqa: E402,F401  (registration)
from . import engine, visualization  # noqa: E402,F401  (registers the hook and visualizer)
from .utils.checkpoint_compat import register_safe_checkpoint_loader  # noqa: E402

register_safe_checkpoint_loader()
