# mmport: two commands do everything on a fresh machine.
#   make benchmark   set up .venv (first time ~15 min: mmcv compiles), then run
#                    the Panoptic refinement benchmark on the bundled real data
#                    and the COCO-17 body benchmark (work_dirs/benchmark/)
#   make test        set up .venv, then run the test suite
#   make speed       the speed benchmark (after make benchmark)
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup benchmark demo test speed clean

setup:
	@bash tools/setup_env.sh $(VENV)

benchmark: setup
	$(PY) -m benchmarks.benchmark_panoptic
	$(PY) -m benchmarks.benchmark_coco

speed: setup
	$(PY) -m benchmarks.benchmark_speed

demo: benchmark

# pytest's exit code 5 ("no tests were collected") is reported, not failed;
# any other non-zero code fails the target (make then exits 2)
test: setup
	@echo "$(PY) -m pytest tests -q"
	@$(PY) -m pytest tests -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "WARNING: pytest collected no tests"; exit 0; fi; \
	exit $$rc

clean:
	rm -rf work_dirs
