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
    handler = logging.StreamHandler(stream or sys.stderr)
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
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get(name: str = "ingestd", **bound):
    return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)
