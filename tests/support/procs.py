"""The daemon as a process: start it, hear it through a real sd_notify socket, query it
over HTTP, signal it. Every wait is a condition with a deadline."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.helpers import ROOT

THIRDPARTY = ROOT / "tests" / "plugins" / "thirdparty"


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, directory: Path):
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[dict[str, str]] = []

    def wait(self, key: str, value: str | None = None, timeout: float = 20.0, after: int = 0) -> dict:
        """Wait for a message (the `after`-th onwards) carrying `key` (= `value`)."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.messages[after:]:
                if key in msg and (value is None or msg[key] == value):
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key}={value} from the daemon; got {self.messages}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line))

    def close(self):
        self.sock.close()


def plugin_site(directory: Path, plugins: dict[str, str]) -> Path:
    """Install plugins by entry point, as pip would: a dist-info per plugin on a path."""
    site = directory / "site"
    for name, module in plugins.items():
        info = site / f"{module}-0.1.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[ingestd]\n{name} = {module}\n")
    return site


class Daemon:
    def __init__(self, config: Path, state: Path, workdir: Path, env: dict | None = None,
                 pythonpath: list[Path] = ()):
        self.config, self.state, self.workdir = config, state, workdir
        self.notify = NotifySocket(workdir)
        self.log_path = workdir / f"daemon-{os.getpid()}-{time.monotonic_ns()}.log"
        paths = [str(ROOT), *map(str, pythonpath), os.environ.get("PYTHONPATH", "")]
        self.env = {**os.environ, "NOTIFY_SOCKET": self.notify.path, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
                    **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    def start(self, ready: bool = True) -> "Daemon":
        self.log_path = self.workdir / f"daemon-{len(self.logs)}.log"
        self.logs.append(self.log_path)
        self._mark = len(self.notify.messages)
        self.proc = subprocess.Popen(
            self.argv(), env=self.env, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"), cwd=self.cwd,
        )
        if ready:
            self.wait_ready()
        return self

    cwd = ROOT

    def argv(self) -> list[str]:
        """The command that starts the daemon: this checkout's code (a subclass may start
        another installed release instead)."""
        return [sys.executable, "-m", "ingestd", "run", "--config", str(self.config)]

    def wait_ready(self, timeout: float = 90.0) -> dict:
        # generous: on a machine at load 12, start-up alone took over 30 s (a daemon whose
        # log said "ingestd ready" failed this wait); only a broken start waits this long
        try:
            return self.notify.wait("READY", "1", timeout=timeout, after=self._mark)
        except AssertionError:
            raise AssertionError(f"daemon not ready; log:\n{self.log_text()[-4000:]}") from None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_events(self) -> list[dict]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "<not json>", "line": line})
        return out

    # -- HTTP ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        info = json.loads((self.state / "daemon.json").read_text())
        return f"http://{info['http']}"

    def get(self, path: str):
        return self._call(urllib.request.Request(self.base_url + path))

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        return self._call(urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(), method="POST",
                                                 headers={"Content-Type": "application/json"}))

    @staticmethod
    def _call(req: urllib.request.Request):
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    # -- state -----------------------------------------------------------------------

    def manifests(self, after: str = "") -> list[dict]:
        """Job manifests oldest first; with `after`, only jobs newer than that id (ids sort
        by creation time), so a state directory's history is not read again and again."""
        out = []
        for path in sorted((self.state / "jobs").glob("*.json")):
            if not path.name.startswith(".") and path.name > after:
                out.append(json.loads(path.read_text()))
        return out

    def idle(self, after: str = "") -> bool:
        return all(m["status"] not in ("queued", "running") for m in self.manifests(after))

    def documents(self) -> dict[str, list[tuple]]:
        """origin_uri → versions (sha256, size, mime) from the store."""
        path = self.state / "documents.sqlite"
        if not path.exists():
            return {}
        db = sqlite3.connect(path)
        try:
            rows = db.execute("SELECT origin_uri, sha256, size, mime FROM versions ORDER BY doc_id, seq").fetchall()
        finally:
            db.close()
        out: dict[str, list[tuple]] = {}
        for origin, sha, size, mime in rows:
            out.setdefault(origin, []).append((sha, size, mime))
        return out

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.kill()
        self.notify.close()
