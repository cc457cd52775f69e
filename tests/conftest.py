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


@pytest.fixture
def daemon_env(tmp_path: Path):
    """A config for a daemon process: one drop folder, HTTP on an ephemeral port."""
    from tests.procs import Daemon

    class DaemonEnv:
        root = tmp_path
        state = tmp_path / "state"
        inbox = tmp_path / "inbox"
        config = tmp_path / "ingestd.toml"
        daemons: list = []

        def write(self, extra_sources=(), **local):
            options = {"settle_seconds": 0.3, **local}
            write_config(
                self.config,
                daemon={"state_dir": "state", "log_format": "json", "shutdown_timeout": 10},
                http={"listen": "127.0.0.1:0"},
                sources=[{"name": "inbox", "kind": "local", "path": "inbox", **options}, *extra_sources],
            )

        def daemon(self, **kwargs) -> Daemon:
            d = Daemon(self.config, self.state, tmp_path, **kwargs)
            self.daemons.append(d)
            return d

    e = DaemonEnv()
    e.inbox.mkdir()
    e.write()
    yield e
    for d in e.daemons:
        d.close()
