"""Structured logging: every line, ours or a library's, is one JSON object on stderr.

Library loggers (boto3, watchdog, apscheduler, urllib3) go through the same formatter,
and a redaction step runs on both paths, before rendering (a JSON-escaped secret would no
longer match), so no secret can reach the journal by way of a third-party debug message.
"""

from __future__ import annotations

import logging
import sys

import structlog

from ingestd._lib import redact

_NOISY = ("botocore", "boto3", "s3transfer", "urllib3", "msal", "office365", "watchdog", "apscheduler")


def _redact(_, __, event_dict):
    return redact.scrub_log(event_dict)


def _drop_documents(_, __, event_dict):
    """Per-document records (`document stored`, `… skipped`: the pipeline's, each naming its
    origin), left out where a person reads: the summary after the job tells their story."""
    if "origin_uri" in event_dict and str(event_dict.get("event", "")).startswith("document "):
        raise structlog.DropEvent
    return event_dict


class _Handler(logging.StreamHandler):
    """The one handler on the root logger: library records come through `emit`, ours as
    finished lines through `write_line`, under the same lock so lines never interleave."""

    def write_line(self, line: str) -> None:
        with self.lock:
            self.stream.write(line + self.terminator)
            self.flush()


class _Direct:
    """What structlog's bound loggers hand their rendered line to. Routing our own records
    through stdlib logging cost two `LogRecord`s, a `findCaller` frame walk and a second
    formatter pass per line (~60 µs; a daemon logs a line per document), for nothing the
    line needs: the level filter and the handler are the stdlib ones, used directly."""

    def __init__(self, name: str):
        self.name = name
        self._std = logging.getLogger(name)

    @property
    def disabled(self) -> bool:  # what filter_by_level reads, with isEnabledFor
        return self._std.disabled

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802
        return self._std.isEnabledFor(level)

    def getEffectiveLevel(self) -> int:  # noqa: N802
        return self._std.getEffectiveLevel()

    def _write(self, level: int, line: str) -> None:
        if not self._std.isEnabledFor(level):  # logging.disable(), as stdlib would
            return
        handlers = [h for h in logging.root.handlers if isinstance(h, _Handler)]
        if not handlers:  # not set up (or torn down): stdlib's own fallback
            self._std.log(level, line)
        for h in handlers:
            h.write_line(line)

    def debug(self, line: str) -> None:
        self._write(logging.DEBUG, line)

    def info(self, line: str) -> None:
        self._write(logging.INFO, line)

    def warning(self, line: str) -> None:
        self._write(logging.WARNING, line)

    def error(self, line: str) -> None:
        self._write(logging.ERROR, line)

    def critical(self, line: str) -> None:
        self._write(logging.CRITICAL, line)

    warn = warning
    exception = error
    fatal = critical


def _direct_factory(name: str = "ingestd", *_args) -> _Direct:
    return _Direct(name)


def setup(level: str = "info", fmt: str = "json", stream=None, documents: bool = True) -> None:
    """`documents=False`: no per-document records (a one-shot on a terminal, without -v)."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # frame locals could hold secrets: plain formatted tracebacks only
        structlog.processors.format_exc_info,
        _redact,
    ]
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False, default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _NOISY:
        # botocore at DEBUG prints Authorization headers; never below WARNING
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        # filter first: a suppressed debug line must cost nothing on the per-file path
        processors=[structlog.stdlib.filter_by_level, *([] if documents else [_drop_documents]), *shared,
                    renderer],
        logger_factory=_direct_factory,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get(name: str = "ingestd", **bound):
    return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)
