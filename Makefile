PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
CONFIG ?= etc/ingestd.toml

.PHONY: install run test bench clean cluster

# The development venv: ingestd with every connector and the test tools.
install: $(TEST_STAMP)

# Reinstall when the packaging changes, so a stale venv never hides a missing dependency.
# `make run` installs what ingestd needs to run, no more; `make test` adds the test tools.
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[s3,sharepoint,text]'
	touch $(RUN_STAMP)

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[s3,sharepoint,text,cluster,test]'
	touch $(TEST_STAMP)

run: $(RUN_STAMP)
	mkdir -p var/inbox
	$(BIN)/ingestd run --config $(CONFIG)

# cluster mode on one machine: private PostgreSQL + moto S3 + 3 instances (docs/cluster.md)
cluster: install
	$(BIN)/python -m tests.cluster.local

test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Not part of `make test` (a smoke variant is): compares ingestd with cp+sync, openssl,
# rclone and aws s3 sync on generated corpora and writes bench/RESULTS.md. ingestd runs
# from its own venv, installed the way a user installs it (no test tools, not editable),
# rebuilt whenever the code changes.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml $(shell find ingestd plugins -name '*.py' -o -path 'ingestd/api/ui/*')
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet '.[s3,sharepoint,text,cluster]'
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall .
	rm -rf build
	touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP)
	INGESTD_BENCH_INGESTD=$(abspath $(BENCH_VENV))/bin/ingestd $(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) var build *.egg-info
