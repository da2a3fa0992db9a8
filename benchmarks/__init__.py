"""mmport's research harness: grouped cross-validation through mmengine
Runners, the benchmarks and the threshold sweep.

Not part of the installed plugin (``pyproject.toml`` packages ``mmport*``
only): run from the root of a checkout as modules, e.g.
``python -m benchmarks.benchmark_panoptic``.
"""
