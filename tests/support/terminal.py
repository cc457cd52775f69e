"""A command on a pseudo-terminal, as a person at a terminal runs it: stdin, stdout and
stderr are the terminal; its output is read as it comes, and waited on by condition."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time

from tests.support.helpers import ROOT

ERASE = "\r\x1b[K"


class Terminal:
    def __init__(self, *args, env: dict | None = None, columns: int = 200):
        pid, fd = pty.fork()
        if pid == 0:  # the child: the terminal is already its stdin, stdout and stderr
            try:
                os.chdir(ROOT)
                fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
                full = {**os.environ, "TERM": "xterm", **(env or {})}
                full.pop("COLUMNS", None)
                os.execvpe(sys.executable, [sys.executable, "-m", "ingestd", *map(str, args)], full)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = ""
        self.returncode: int | None = None

    def read_until(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """Read until `pattern` (a regex) matches the output so far."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output, re.DOTALL)
            if found:
                return found
            if not self._read(deadline - time.monotonic()):
                raise AssertionError(f"no {pattern!r} on the terminal; got:\n{self.output[-3000:]!r}")

    def wait(self, timeout: float = 60.0) -> int:
        """Read everything up to the command's end; its exit status."""
        deadline = time.monotonic() + timeout
        while self._read(deadline - time.monotonic()):
            pass
        if time.monotonic() > deadline:
            self.kill()
            raise AssertionError(f"still running after {timeout}s; got:\n{self.output[-3000:]!r}")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def _read(self, remaining: float) -> bool:
        """One chunk into `output`; False at the end of output or of the time."""
        if remaining <= 0:
            return False
        ready, _, _ = select.select([self.fd], [], [], remaining)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.output += chunk.decode("utf-8", "replace")
        return bool(chunk)

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.returncode = -9

    def after_last_line(self) -> str:
        """What was printed after the live line was last erased: the summary."""
        return self.output.rpartition(ERASE)[2]
