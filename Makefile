# thawcast: `make repro` runs the pipeline, `make test` the fast tests. Both set up
# everything from nothing (a .venv with the pinned stack) on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: install repro pipeline test test-all test-services services-deps mutate lint bench clean-venv

install: $(STAMP)

# torch is pinned to 2.13.0 in pyproject.toml: pip then takes the local CPU wheel.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

# `dvc repro` on both cores. DVC runs one stage at a time per call; its documented way to run independent stages in
# parallel is one `dvc repro` each, waiting (--wait-for-lock) while another holds the repository lock (held to read
# and write dvc.lock, released while a stage runs). make is the scheduler: src/thawcast/stage_rules.py turns
# `dvc dag --dot` into one target per stage, upstream stages as prerequisites, and `make -j$(REPRO_JOBS)` starts
# each stage once its inputs are built, the longest chain to the report first. Every recipe is
# `dvc --wait-for-lock repro --single-item <stage>` (a call that checked the stages upstream again would ask for
# write locks on outputs another call reads, and fail). The last plain `dvc repro` finds nothing left to do unless
# dvc.yaml or an input changed during the run, so the result is plain `dvc repro`'s. (`dvc dag` writes to a file
# first: in a pipe, make's sh would report the empty graph instead of DVC's error.)
# `make pipeline` is the same without the install (tests/test_dvc_pipeline.py runs it in a tiny copy).
REPRO_JOBS ?= 2
STAGE_RULES := .dvc/tmp/stages.mk
repro: install
	@$(MAKE) --no-print-directory pipeline

pipeline:
	@mkdir -p $(dir $(STAGE_RULES))
	dvc dag --dot > $(STAGE_RULES).dot
	python -m thawcast.stage_rules < $(STAGE_RULES).dot > $(STAGE_RULES)
	$(MAKE) --no-print-directory -j$(REPRO_JOBS) -f $(STAGE_RULES) stages
	dvc --wait-for-lock repro

# Two pytest-xdist workers (at most four on bigger machines), whole files per worker (a file's fixtures are built
# once), in collection order (xdist would otherwise start with the files of most tests; the slowest is one test).
# A worker that dies ends the run at once: xdist 3.8 can wait for ever after replacing one under --dist loadfile
# (pytest-dev/pytest-xdist#1378). A test that runs past 30 minutes fails with its stack printed (the slowest,
# the tiny pipeline, takes about 8 minutes; it hit a 15-minute limit beside a full `make repro` on the same 2 cores).
test: install
	pytest -m "not slow and not services" -q --durations=15 -n auto --maxprocesses 4 --dist loadfile \
	  --no-loadscope-reorder --max-worker-restart 0 --timeout 1800

test-all: install
	pytest -m "not services" -q

# Team mode against real servers (a throw-away PostgreSQL and MLflow tracking server on localhost).
test-services: install services-deps
	pytest -m services -q -rs

# Debian's PostgreSQL server, when its binaries are missing (needs root, or sudo).
services-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; }

# Mutation testing of the core modules against their unit tests (about 20 minutes on 2 idle cores; resumable).
mutate: install
	$(VENV)/bin/python -m pip install --quiet -e '.[mutate]'
	python tests/mutation.py

lint: install
	ruff check src tests benchmarks

bench: install
	python benchmarks/bench_band_aggregation.py
	python benchmarks/bench_windows.py
	python benchmarks/bench_training.py
	python benchmarks/bench_cell_training.py
	python benchmarks/bench_parallel.py

clean-venv:
	rm -rf $(VENV)
