"""`ingestd run` as a process, started the way systemd starts it: the harness holds the
NOTIFY_SOCKET and waits for READY=1, so timing starts when the daemon says it is up,
not after a guessed delay."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from . import ingest


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET. Like systemd, it keeps
    reading after READY=1: the daemon sends STATUS= after every job, and a full socket
    buffer would block its workers in send()."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self._closed = threading.Event()
        self._drain: threading.Thread | None = None

    def keep_draining(self) -> None:
        self._drain = threading.Thread(target=self._read_forever, name="notify-drain", daemon=True)
        self._drain.start()

    def _read_forever(self) -> None:
        self.sock.settimeout(0.2)
        while not self._closed.is_set():
            try:
                self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return

    def wait_ready(self, proc: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or proc.poll() is not None:
                raise RuntimeError("the daemon never sent READY=1")
            self.sock.settimeout(min(remaining, 0.5))
            try:
                data = self.sock.recv(65536).decode(errors="replace")
            except socket.timeout:
                continue
            if "READY=1" in data.splitlines():
                return

    def close(self) -> None:
        self._closed.set()
        if self._drain is not None:
            self._drain.join(timeout=5)
        self.sock.close()


class Daemon:
    def __init__(self, config: Path, state_dir: Path, workdir: Path):
        self.config, self.state_dir, self.workdir = config, state_dir, workdir
        self.log_path = workdir / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.notify: NotifySocket | None = None
        self.ready_s: float | None = None  # from the process's start to its READY=1

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> "Daemon":
        sock_path = self.workdir / "notify.sock"
        sock_path.unlink(missing_ok=True)
        self.notify = NotifySocket(sock_path)
        env = {**ingest.env(), "NOTIFY_SOCKET": self.notify.path}
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ingest.command("run", "--config", str(self.config)),
                env=env, cwd=ingest.ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )
        try:
            self.notify.wait_ready(self.proc, timeout)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"ingestd run did not become ready; log tail:\n{self.log_tail()}") from None
        self.ready_s = time.monotonic() - started
        self.notify.keep_draining()
        return self

    @property
    def http_address(self) -> str:
        """host:port of the daemon's API (written to daemon.json before READY)."""
        return ingest.runtime_info(self.state_dir)["http"]

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        return self.proc.returncode

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def wait_until(condition, timeout: float, what: str, interval: float = 0.01, daemon: Daemon | None = None):
    """Poll `condition` until it returns something truthy; fail loudly at the deadline
    (or at once if the daemon died)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if daemon is not None and not daemon.alive():
            raise RuntimeError(f"the daemon exited while waiting for {what}; log tail:\n{daemon.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
