"""A bounded pool of extraction workers (`ingestd.extract.worker`), each a child process.

`run` blocks the calling thread until its file is done, at most `size` files at once.
The wall-clock limit is kept here, outside the child: a worker that does not answer in
time is killed (its whole process group) and the file is `timeout`; a worker that dies
costs its file a typed error (`corrupt`, or `too_large` when it ran out of memory) and
is replaced for the next. Workers are reused, so a parser's start-up is paid once, and
retired after `recycle` files so slow leaks in a library never add up.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from ingestd._lib import logs
from ingestd.extract.protocol import Request, Result

RECYCLE = 200  # files per worker before it is replaced
START_GRACE = 30.0  # seconds a new worker may take to import its libraries, on top of the file's limit
MAX_REPLY = 64 << 20


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen
    served: int = 0
    started: bool = False  # has answered once (its imports are done)
    closed: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


class Pool:
    def __init__(self, size: int, memory_mib: int, recycle: int = RECYCLE):
        self.size = size
        self.memory_mib = memory_mib
        self.recycle = recycle
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.started = 0  # workers started over the pool's life (a test and a metric read it)
        self._log = logs.get("ingestd.extract")

    def run(self, request: Request) -> Result:
        """Extract one file; blocks until it is done, failed, or out of time."""
        with self._slots:
            worker = self._take()
            started = time.monotonic()
            try:
                result = self._ask(worker, request)
            except BaseException:
                self._kill(worker)
                raise
            if not result.ok and not result.seconds:  # timed out or died: the wall clock it cost
                result.seconds = round(time.monotonic() - started, 4)
            self._give(worker, result)
            return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            self._stop(worker)

    def terminate(self) -> None:
        """Close, and kill the workers still busy: their callers get a failed result,
        which they must not take as a verdict on the file (they are stopping)."""
        self.close()
        with self._lock:
            busy = list(self._live)
        for worker in busy:
            try:
                os.killpg(worker.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- workers ----------------------------------------------------------------------------

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the extraction pool is closed")
            if self._idle:
                return self._idle.pop()
            self.started += 1
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingestd.extract.worker", "--memory-mib", str(self.memory_mib)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True, close_fds=True,
        )
        worker = _Worker(proc)
        with self._lock:
            self._live.add(worker)
        return worker

    def _give(self, worker: _Worker, result: Result) -> None:
        worker.served += 1
        worker.started = True
        retire = worker.proc.poll() is not None or worker.served >= self.recycle or result.code == "too_large"
        with self._lock:
            if not retire and not self._closed:
                self._idle.append(worker)
                return
        self._stop(worker)

    def _ask(self, worker: _Worker, request: Request) -> Result:
        deadline = time.monotonic() + request.limits.seconds + (0 if worker.started else START_GRACE)
        try:
            worker.proc.stdin.write(request.encode())
            worker.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._died(worker, request)
        line = self._read_line(worker, deadline)
        if line is None:
            self._kill(worker)
            return Result.failed("timeout", f"took longer than {request.limits.seconds:g} s")
        if not line:
            return self._died(worker, request)
        return Result.decode(line)

    def _read_line(self, worker: _Worker, deadline: float) -> bytes | None:
        """The worker's next reply line; b"" when it closed its end; None at the deadline."""
        fd = worker.proc.stdout.fileno()
        parts: list[bytes] = []
        size = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b""
            size += len(chunk)
            if size > MAX_REPLY:
                return b""
            parts.append(chunk)
            if chunk.endswith(b"\n"):
                return b"".join(parts)

    def _died(self, worker: _Worker, request: Request) -> Result:
        """The worker went away mid-file: a parser crashed (or hit the memory limit
        inside a C library, where Python could not raise MemoryError)."""
        try:
            worker.proc.wait(timeout=2)  # its own exit status, when it exited
        except subprocess.TimeoutExpired:
            pass
        code = self._kill(worker)
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
        self._log.warning("extraction worker died", pid=worker.pid, extractor=request.extractor, how=how)
        return Result.failed("corrupt", f"the parser crashed ({how}; memory limit {self.memory_mib} MiB)")

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self._live.discard(worker)

    def _kill(self, worker: _Worker) -> int | None:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            return worker.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None
        finally:
            _close(worker)
            self._forget(worker)

    def _stop(self, worker: _Worker) -> None:
        """Retire a worker: end of its input makes it exit; it is killed if it lingers."""
        try:
            worker.proc.stdin.close()
        except OSError:
            pass
        try:
            worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill(worker)
        _close(worker)
        self._forget(worker)


def _close(worker: _Worker) -> None:
    worker.closed = True
    for pipe in (worker.proc.stdin, worker.proc.stdout):
        try:
            pipe.close()
        except (OSError, ValueError):
            pass
