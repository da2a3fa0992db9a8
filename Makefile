# mmport: two commands do everything on a fresh machine.
#   make benchmark   set up .venv (first time ~12 min: mmcv compiles), then run
#                    the benchmarks on the bundled real data (work_dirs/benchmark/):
#                    Panoptic hands, real BlazePose body predictions, MPII
#                    predictions without scores, the shipped refiners on them,
#                    tools/fit_refiner.py on one set per family (one seed),
#                    leave-one-method-out on the MPII models and three LSP
#                    methods (one seed)
#   make benchmark-full  the same plus fit_refiner on every set (two seeds, the
#                    data-efficiency curve), leave-one-method-out on every
#                    method (two seeds) and the synthetic-error COCO-17 check
#   make benchmark-h36m  the Human3.6M benchmark (reads ../shared/data/h36m_sh:
#                    its licence keeps it out of the repository)
#   make test        set up .venv, then run the test suite
#   make speed       the speed benchmark of the shipped refiners (checkpoints/)
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup benchmark benchmark-full benchmark-h36m demo test speed clean

setup:
	@bash tools/setup_env.sh $(VENV)

benchmark: setup
	$(PY) -m benchmarks.benchmark_panoptic
	$(PY) -m benchmarks.benchmark_body_real
	$(PY) -m benchmarks.benchmark_mpii
	$(PY) -m benchmarks.benchmark_shipped
	$(PY) -m benchmarks.benchmark_fit --quick
	$(PY) -m benchmarks.benchmark_methods --quick

benchmark-full: benchmark
	$(PY) -m benchmarks.benchmark_fit
	$(PY) -m benchmarks.benchmark_methods
	$(PY) -m benchmarks.benchmark_coco

benchmark-h36m: setup
	$(PY) -m benchmarks.benchmark_h36m

speed: setup
	$(PY) -m benchmarks.benchmark_speed

demo: benchmark

# any non-zero pytest exit code fails the target (make then exits 2); exit code
# 5 ("no tests were collected") gets a one-line message first
test: setup
	@echo "$(PY) -m pytest tests -q"
	@$(PY) -m pytest tests -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; fi; \
	exit $$rc

clean:
	rm -rf work_dirs
