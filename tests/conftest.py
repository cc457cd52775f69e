from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.support.helpers import write_config


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


@pytest.fixture(autouse=True)
def _reset_masking():
    """Secrets one test remembered must not mask another test's words."""
    from ingestd._lib import redact

    redact.reset()
    yield
    redact.reset()


@pytest.fixture
def daemon_env(tmp_path: Path):
    """A config for a daemon process: one drop folder, HTTP on an ephemeral port."""
    from tests.support.procs import Daemon

    class DaemonEnv:
        root = tmp_path
        state = tmp_path / "state"
        inbox = tmp_path / "inbox"
        config = tmp_path / "ingestd.toml"
        daemons: list = []

        def write(self, extra_sources=(), daemon=None, **local):
            options = {"settle_seconds": 0.3, **local}
            write_config(
                self.config,
                daemon={"state_dir": "state", "log_format": "json", "shutdown_timeout": 10, **(daemon or {})},
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


# -- secrets: no test secret may appear in anything ingestd wrote --------------------------
#
# Tests that need a secret value build it with `make_secret()`, so every secret carries the
# marker. At the end of the session every file under the session's temp directory (logs,
# manifests, item files, recorded HTTP responses, state) is scanned for the marker, except
# the files that are supposed to hold secrets (registries, key files).

SECRET_MARKER = "TSECRETx9"
SECRET_HOLDERS = ("credentials", "registry", ".pem", ".key", ".secret", "secret-", "creds")


def make_secret(name: str = "value") -> str:
    """A secret value for tests; the session-end scan fails the run if it leaks anywhere."""
    return f"{name}-{SECRET_MARKER}-{os.urandom(4).hex()}"


def pytest_sessionfinish(session, exitstatus):
    base = session.config._tmp_path_factory.getbasetemp() if hasattr(session.config, "_tmp_path_factory") else None
    if base is None or not Path(base).exists():
        return
    hits = []
    for top, _, files, dir_fd in os.fwalk(base):  # by descriptor: some test trees are past PATH_MAX
        for name in files:
            if any(h in name.lower() for h in SECRET_HOLDERS):
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
                with os.fdopen(fd, "rb") as fh:
                    if SECRET_MARKER.encode() in fh.read():
                        hits.append(os.path.join(top, name))
            except OSError:
                continue
    if hits:
        session.config.get_terminal_writer().line(
            f"SECRET LEAK: a test secret appears in {len(hits)} file(s): " + ", ".join(hits[:10]), red=True)
        session.exitstatus = 1
