"""An extraction worker: a child process of the daemon that runs extractor plugins, one
file at a time, for as long as the pool keeps it.

It limits its own address space first (RLIMIT_AS), so a parser that balloons gets a
MemoryError (reported `too_large`) or dies, and never takes memory from the daemon; it
runs at a lower CPU priority than ingestion; core dumps are off. The pool measures the
wall clock from outside and kills it when a file takes too long. Replies go to a private
copy of stdout; fd 1 itself is pointed at stderr, so a library that prints cannot
corrupt the protocol.

Run as `python -m ingestd.extract.worker --memory-mib N`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import resource
import sys
import time
import warnings
from pathlib import Path

NICENESS = 10
IO_FAILURE = "io"  # not a verdict on the file: the service leaves it pending and retries


def limit_self(memory_mib: int) -> None:
    limit = memory_mib << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        os.nice(NICENESS)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingestd.extract.worker")
    parser.add_argument("--memory-mib", type=int, required=True)
    args = parser.parse_args(argv)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    limit_self(args.memory_mib)
    from ingestd.extract.protocol import Request, Result

    extractors = _load()
    requests = sys.stdin.buffer
    for line in requests:
        if not line.strip():
            continue
        request = Request.decode(line)
        started = time.monotonic()
        try:
            result = _extract(extractors, request)
        except MemoryError:
            result = Result.failed("too_large", f"needed more memory than the {args.memory_mib} MiB limit")
            result.seconds = time.monotonic() - started
            replies.write(result.encode())
            return 0  # a fresh worker for the next file: this heap may be in pieces
        result.seconds = round(time.monotonic() - started, 4)
        replies.write(result.encode())
    return 0


def _load() -> dict:
    from ingestd.plugin.manager import Plugins

    return dict(Plugins().load().extractors)


_instances: dict = {}


def _extract(extractors: dict, request):
    from ingestd.extract.language import guess
    from ingestd.extract.protocol import Result
    from ingestd.plugin.extractor import ExtractionError

    cls = extractors.get(request.extractor)
    if cls is None:
        return Result.failed("unsupported", f"no extractor {request.extractor!r} is installed")
    try:
        instance = _instances.get(cls.name) or _instances.setdefault(cls.name, cls())
        extracted = instance.extract(Path(request.path), request.limits)
    except ExtractionError as exc:
        return Result.failed(exc.code, exc.message)
    except (MemoryError, KeyboardInterrupt):
        raise
    except RecursionError:
        return Result.failed("corrupt", "the file nests deeper than the parser follows")
    except Exception as exc:  # a parser's own error on a file it cannot read
        return Result.failed("corrupt", f"{type(exc).__name__}: {str(exc)[:300]}")
    text = extracted.markdown
    if len(text) > request.limits.max_chars:
        return Result.failed("too_large", f"the text is longer than the {request.limits.max_chars}-character limit")
    data = text.encode("utf-8", "replace")  # a lone surrogate from a bad decode becomes "?"
    sha = hashlib.sha256(data).hexdigest()
    try:
        _write(Path(request.out), data)
    except OSError as exc:  # the daemon's disk, not the file: not recorded, tried again later
        return Result.failed(IO_FAILURE, f"writing the text: {exc.strerror}")
    return Result(sha256=sha, size=len(data), chars=len(text), pages=extracted.pages,
                  language=extracted.language or guess(text), boundaries=extracted.boundaries)


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
