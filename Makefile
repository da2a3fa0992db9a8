# mmport: two commands do everything on a fresh machine.
#   make benchmark   set up .venv (first time ~15 min: mmcv compiles), then run
#                    the Panoptic refinement benchmark on the bundled real data
#   make test        set up .venv, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup benchmark demo test clean

setup:
	@bash tools/setup_env.sh $(VENV)

benchmark: setup
	$(PY) tools/benchmark_panoptic.py

demo: benchmark

test: setup
	$(PY) -m pytest tests -q

clean:
	rm -rf work_dirs
