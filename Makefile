PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= etc/ingestd.toml

.PHONY: install run test bench clean

install: $(STAMP)

# Reinstall when the packaging changes, so a stale venv never hides a missing dependency.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[s3,sharepoint,test]'
	touch $(STAMP)

run: install
	mkdir -p var/inbox
	$(BIN)/ingestd run --config $(CONFIG)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Not part of `make test` (a smoke variant is): compares ingestd with cp+sync, openssl,
# rclone and aws s3 sync on generated corpora and writes bench/RESULTS.md.
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var build *.egg-info
