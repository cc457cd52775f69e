"""Measuring a command or a running process: wall time, CPU seconds, peak RSS.

A finished command is measured through wait4(): the kernel's own accounting of that one
child (and whatever it waited for), so nothing else on the machine leaks into it. A
long-running process (the daemon, the S3 server) is measured by /proc deltas around a
window, which is all that exists for a process that has not exited.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    wall_s: float
    cpu_s: float
    rss_mib: float | None
    sys_s: float | None = None  # the kernel's share of cpu_s: file creation, fsync, copies

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class CommandFailed(RuntimeError):
    pass


@dataclass
class Finished:
    usage: Usage
    exit_code: int
    stdout: str
    stderr: str


def run(argv: list[str], *, env: dict | None = None, cwd: Path | None = None, timeout: float = 900.0,
        check: bool = True) -> Finished:
    """Run `argv` to completion and account for exactly that command.

    CPU and peak RSS come from /usr/bin/time, not from our own wait4(): Linux carries a
    process's RSS high-water mark across exec, so a child forked from this (large)
    harness would report the harness's peak as its own. /usr/bin/time is small, and it
    reports the command it forked. Wall time is ours, from the monotonic clock.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="bench-time-") as stats:
        full = [TIME, "-f", "%U %S %M", "-o", stats.name, "--", *argv] if os.access(TIME, os.X_OK) else argv
        start = time.monotonic()
        proc = subprocess.Popen(full, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        usage = (full is not argv and _time_usage(Path(stats.name), wall)) or _rusage(ru, wall)
        out.seek(0)
        err.seek(0)
        done = Finished(usage, proc.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"))
    if check and done.exit_code != 0:
        raise CommandFailed(f"{' '.join(map(str, argv[:4]))}... exited {done.exit_code}: {done.stderr[-2000:]}")
    return done


TIME = "/usr/bin/time"


def _time_usage(path: Path, wall: float) -> Usage | None:
    """The figures /usr/bin/time wrote (after a "Command exited with non-zero status"
    line, if any); None when it was killed before writing them."""
    for line in reversed(path.read_text().splitlines()):
        fields = line.split()
        if len(fields) == 3 and all(f.replace(".", "", 1).isdigit() for f in fields):
            return Usage(wall, float(fields[0]) + float(fields[1]), int(fields[2]) / 1024, float(fields[1]))
    return None


def _rusage(ru, wall: float) -> Usage:
    """Without /usr/bin/time: CPU is exact, peak RSS is only an upper bound (see run)."""
    return Usage(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, ru.ru_stime)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass


# -- a process that keeps running ---------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of `pid` so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def memory_mib(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident set of `pid`."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return {"current_rss_mib": out.get("VmRSS", 0.0), "peak_rss_mib": out.get("VmHWM", 0.0)}


def wakeups(pid: int) -> int:
    """Context switches of every thread: how often an idle process is woken up."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as fh:
                for line in fh:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            continue  # a thread that ended while we looked
    return total


class Window:
    """CPU a running process spends between `__enter__` and `__exit__`."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.cpu_s = 0.0
        self.wall_s = 0.0

    def __enter__(self) -> "Window":
        self._cpu = cpu_seconds(self.pid) if self.pid else 0.0
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.monotonic() - self._start
        if self.pid:
            self.cpu_s = cpu_seconds(self.pid) - self._cpu


def sync() -> None:
    """Flush everything earlier runs and set-up wrote, so a timed sync or syncfs only pays
    for what the timed run itself wrote."""
    os.sync()


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent busy since boot (from /proc/stat):
    read around a case, it shows how much else was running while we measured."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS
