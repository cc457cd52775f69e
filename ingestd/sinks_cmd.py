"""`ingestd sinks` and `ingestd sinks reset`: through the running daemon's API when there
is one, else on the sinks' cursor files directly.

Why not always the files: the running daemon holds each sink's cursor in memory and
writes it after every batch, so a file written beside it would be overwritten (or would
race a batch in flight). Its API instead takes the reset between two batches, and a batch
in flight then does not move the cursor. Without a daemon nothing else writes the files:
the reset is written there, checked against the feed first, and the next start takes it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager

from ingestd._lib.token_file import read_token
from ingestd.config import Config
from ingestd.errors import IngestdError, NotFoundError, UsageError
from ingestd.follow import _daemon_url, daemon_pid
from ingestd.sinks import cursor as cursors
from ingestd.store.feed import format_cursor, parse_cursor

TIMEOUT = 30.0

StoreOpener = Callable[[], AbstractContextManager]


def listing(config: Config, open_store: StoreOpener) -> list[dict]:
    url = _daemon_url(config)
    if url is not None:
        return _call(config, url, "GET", "/sinks")["sinks"]
    with open_store() as store:
        head = store.feed.head()
    out = []
    for sink in config.sinks:
        try:
            position, error = cursors.load(config.daemon.state_dir, sink.name), None
        except ValueError as exc:
            position, error = None, {"code": "cursor", "message": str(exc), "at": None}
        out.append({"name": sink.name, "kind": sink.kind, "enabled": sink.enabled, "state": "no daemon",
                    "cursor": position, "lag": max(0, head - int(position)) if position else None,
                    "sources": list(sink.sources) if sink.sources is not None else None, "last_error": error,
                    "failing_since": None, "last_delivery_at": None})
    return out


def reset(config: Config, open_store: StoreOpener, name: str, to: str) -> dict:
    to = format_cursor(parse_cursor(to))  # UsageError for a malformed one, before anything is asked
    if config.sink(name) is None:
        known = ", ".join(s.name for s in config.sinks) or "none"
        raise UsageError(f"no sink named {name!r} in the config (configured: {known})")
    url = _daemon_url(config)
    if url is not None:
        return _call(config, url, "POST", f"/sinks/{name}/reset", {"to": to})
    pid = daemon_pid(config)
    if pid is not None:
        raise IngestdError(f"the daemon (pid {pid}) runs without its API (http.enabled = false): stop it, "
                           "run the reset, start it again")
    with open_store() as store:
        store.feed.check(to)  # CursorExpired: the feed no longer has (or never had) that cursor
    cursors.save(config.daemon.state_dir, name, to)
    return {"name": name, "cursor": to, "state": "no daemon: taken up at the next start"}


def _call(config: Config, url: str, method: str, path: str, body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if config.http.token_file is not None:
        try:
            headers["Authorization"] = f"Bearer {read_token(config.http.token_file)}"
        except (OSError, ValueError) as exc:
            raise IngestdError(f"cannot read the API token to ask the running daemon: {exc}") from None
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as err:
        answer = _error_body(err)
        if err.code == 404:
            raise NotFoundError(answer.get("message", "no such sink in the running daemon")) from None
        if err.code == 400:
            raise UsageError(answer.get("message", "HTTP 400")) from None
        if err.code == 410:
            raise IngestdError(answer.get("message", "the feed no longer has that cursor")) from None
        raise IngestdError(f"the daemon answered HTTP {err.code}: {answer.get('message', '')}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise IngestdError(f"cannot reach the running daemon's API at {url}: {exc}") from None


def _error_body(err: urllib.error.HTTPError) -> dict:
    try:
        data = json.loads(err.read() or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
