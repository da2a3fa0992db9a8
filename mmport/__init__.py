"""mmport: the PORT occlusion refiner as an MMPose plugin.

Importing mmport registers its models, transforms and metrics into MMPose's
own registries (``mmpose.registry.MODELS``, ``TRANSFORMS``, ``METRICS``,
``HOOKS``, ``VISUALIZERS``).

Under torch >= 2.6 it also replaces mmengine's loader of local checkpoint
files, process-wide, by one that unpickles with an allowlist (see
:mod:`mmport.utils.checkpoint_compat`; ``MMPORT_SAFE_CHECKPOINT_LOADER=0``
keeps mmengine's).
"""
__version__ = '0.1.0'

from . import apis, datasets, evaluation, models  # noqa: E402,F401  (registration)
from . import engine, visualization  # noqa: E402,F401  (registers the hook and visualizer)
from .utils.checkpoint_compat import register_safe_checkpoint_loader  # noqa: E402

register_safe_checkpoint_loader()
