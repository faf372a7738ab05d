# Two commands on a fresh machine: `make discover` and `make test`.  Both create .venv and
# install the pinned set (constraints.txt) first; nothing else needs to be started by hand.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Quiet TensorFlow's C++ start-up chatter; errors still show.
export TF_CPP_MIN_LOG_LEVEL ?= 2
# No usage telemetry from Prefect or MLflow.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
# Prefect's temporary server creates its database on start; on 2 busy cores that took over
# its default 20 s (the scale-out tests failed with "Timed out while attempting to connect").
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90

.PHONY: setup test test-fast discover bench lint lock clean

setup: $(STAMP)

# uv (itself pinned) installs the pinned set into the venv: under a minute on 2 cores, where
# pip took over two.  The set is the same: constraints.txt decides it.  --compile-bytecode
# writes the .pyc files up front as pip does: uv leaves them out by default, and where
# PYTHONDONTWRITEBYTECODE is set nothing writes them later, so every interpreter the tests
# start compiled TensorFlow again (importing it took 25 s instead of 10).
UV_VERSION := 0.13.10

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python \
		-c constraints.txt -e '.[dev]'
	touch $(STAMP)

# One pytest-xdist worker per core, each given whole test files, the end-to-end files first
# (tests/conftest.py orders them; --no-loadscope-reorder keeps that order, where xdist would
# put the files with the most tests first and leave a long end-to-end file for the end).
# Much of the suite's time is single-threaded (interpreters starting, TensorFlow tracing,
# Prefect and MLflow servers), so two workers overlap well on two cores.  A plain `pytest`
# runs the same suite in one process.
XDIST := --numprocesses logical --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs $(XDIST)

# The fast set alone (no end-to-end tests): for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(XDIST)

discover: $(STAMP)
	$(BIN)/lionforge discover --gin_file gin/quickstart.gin

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check ops pipeline flows tests benchmarks

# Re-resolve the pinned set (run on the CI machine's Python, 3.11).
lock:
	rm -rf /tmp/lionforge-lock && $(PYTHON) -m venv /tmp/lionforge-lock
	/tmp/lionforge-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/lionforge-lock/bin/pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache mlflow.db mlruns
