from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.helpers import write_config


@pytest.fixture
def env(tmp_path: Path):
    """A state dir, a drop folder and a config with one local source named `inbox`."""

    class Env:
        root = tmp_path
        state = tmp_path / "state"
        inbox = tmp_path / "inbox"
        config = tmp_path / "ingestd.toml"

        def write(self, **local_options):
            write_config(
                self.config,
                daemon={"state_dir": "state", "log_format": "json"},
                sources=[{"name": "inbox", "kind": "local", "path": "inbox", **local_options}],
            )
            return self.config

    e = Env()
    e.inbox.mkdir()
    e.write()
    return e


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    logging.getLogger().handlers[:] = []
