"""mmport's research harness: grouped cross-validation through mmengine
Runners, the benchmarks and the threshold sweep.

Not part of the installed plugin (``pyproject.toml`` packages ``mmport*``
only): run from a checkout, e.g. ``python benchmarks/benchmark_panoptic.py``.
"""
