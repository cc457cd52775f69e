"""The test server itself: a run killed before its teardown must not leave PostgreSQL running
for ever (it lives in its own session; killed CI runs left idle servers behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import wait_for

from .pgserver import PostgresServer, bindir

STARTER = """
import sys
from tests.cluster.pgserver import PostgresServer
server = PostgresServer("pw").start()
print(server.root, server.proc.pid, flush=True)
sys.stdin.read()  # hold until killed
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(bindir() is None, reason="PostgreSQL is not installed")
def test_a_server_whose_run_was_killed_is_reaped_by_the_next_start():
    starter = subprocess.Popen([sys.executable, "-c", STARTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, cwd=Path(__file__).parents[2])
    root, server_pid = starter.stdout.readline().split()
    starter.send_signal(signal.SIGKILL)
    starter.wait(30)
    assert _alive(int(server_pid)), "the server should outlive its killed run (its own session)"
    second = PostgresServer("pw2").start()
    try:
        wait_for(lambda: not _alive(int(server_pid)), timeout=60, message="the orphan server to stop")
        assert not Path(root).exists()
        assert second.proc.poll() is None
    finally:
        second.stop()
