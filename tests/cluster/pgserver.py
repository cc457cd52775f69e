"""A private PostgreSQL server for tests: Debian's binaries, `initdb` in a temp directory,
one free loopback port, stopped at the end. Nothing system-wide is started or changed
(the packaged service stays as it is).

PostgreSQL refuses to run as root, and CI runs as root: then every server command runs
as the `postgres` user (`runuser -u postgres`), and the directory is that user's. The
directory sits directly under the system temp dir, not under pytest's (whose parents are
root's alone, so `postgres` could not reach it).

Host connections need the superuser's password (scram-sha-256), so the tests exercise
the path a deployment uses: a password from the credential registry, never in a URL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

START_DEADLINE = 60.0  # seconds: initdb and a first start on a busy 2-core machine
USER = "postgres"


def bindir() -> Path | None:
    """The newest Debian PostgreSQL's binaries (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _process_identity(pid: int) -> str | None:
    """pid plus its start time (field 22 of /proc/PID/stat), so a reused pid is not mistaken
    for the test run that started a server."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"


def reap_orphans(bin: Path, cmd) -> None:
    """Stop servers whose test run died without its teardown (SIGKILL, a killed CI job): they
    run in their own session, so nothing else ever would, and each keeps ~30 MiB and a port."""
    for owner in Path(tempfile.gettempdir()).glob("ingestd-pg-*/owner"):
        recorded = owner.read_text().strip()
        if not recorded or _process_identity(int(recorded.split()[0])) == recorded:
            continue  # its run is alive
        data = owner.parent / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run(cmd(str(bin / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w", "-t", "30"),
                           capture_output=True, timeout=60)
        shutil.rmtree(owner.parent, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """`start()` returns once the server accepts connections; `stop()` ends it and removes
    its files. `host`, `port`, `user`, `password` say how to reach it."""

    host = "127.0.0.1"
    user = "postgres"

    def __init__(self, password: str):
        self.bin = bindir()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does)")
        self.password = password
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="ingestd-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", USER, "--", *args] if self.as_root else list(args)

    def _own(self, path: Path) -> None:
        if self.as_root:
            entry = pwd.getpwnam(USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> "PostgresServer":
        """A start that fails half-way (psycopg missing, a port race, ^C) stops what it began:
        the server runs in its own session, so nothing else would ever end it."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "PostgresServer":
        reap_orphans(self.bin, self._cmd)
        (self.root / "owner").write_text(_process_identity(os.getpid()) or "")
        self._own(self.root)
        self.sockets.mkdir()
        self._own(self.sockets)
        self._initdb()
        for _ in range(3):  # a port taken between our probe and the server's bind: try another
            self.port = free_port()
            if self._run():
                return self
        raise RuntimeError(f"PostgreSQL did not start; its log:\n{self._log_tail()}")

    def _initdb(self) -> None:
        pwfile = self.root / "pw.secret"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        self._own(pwfile)
        try:
            subprocess.run(self._cmd(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user,
                                     "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                                     "-E", "UTF8", "--no-locale", "--no-sync"),
                           check=True, capture_output=True, text=True, timeout=START_DEADLINE)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr[-2000:]}") from None
        finally:
            pwfile.unlink()

    def _run(self) -> bool:
        """Start on `self.port`; True once it accepts connections, False if it exited."""
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            self._cmd(str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                      "-c", f"listen_addresses={self.host}", "-c", f"unix_socket_directories={self.sockets}",
                      # a test server: durability is not under test here, speed is welcome
                      "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                      "-c", "max_connections=200"),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self._accepts():
                return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"PostgreSQL did not accept connections within {START_DEADLINE}s:\n{self._log_tail()}")

    def _accepts(self) -> bool:
        import psycopg

        try:
            psycopg.connect(**self.params("postgres"), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def params(self, dbname: str) -> dict:
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                "dbname": dbname}

    def url(self, dbname: str) -> str:
        """The database's URL without its password (as ingestd.toml names it)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(**self.params("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(**self.params("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """A fast shutdown (clients disconnected), then the files go."""
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w",
                                     "-t", "30"), capture_output=True, timeout=60)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own session: the server and its children
                self.proc.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
