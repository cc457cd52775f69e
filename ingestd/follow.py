"""Following the change feed from a command (`ingestd changes --follow`), daemon or not.

Changes are always read from the catalogue itself (the same pages `GET /changes` serves,
without the HTTP round trip). What differs is how to learn that more have committed:
when a daemon runs on this state directory, a long-poll on its API returns the moment
one commits; without one (or when its API cannot be used: stopped, a token this user may
not read), the database is polled with a growing pause, from POLL_MIN up to POLL_MAX.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

from ingestd._lib.daemon_file import live_daemon
from ingestd._lib.token_file import read_token
from ingestd.config import Config
from ingestd.store.feed import FeedChange, parse_cursor
from ingestd.store.catalogue import Store

PAGE = 500
LONG_POLL = 30  # seconds, the API's most
POLL_MIN, POLL_MAX = 0.05, 2.0


def changes(store: Store, config: Config, after: str | None, *, follow: bool,
            stop: threading.Event | None = None) -> Iterator[FeedChange]:
    """Every change after `after`, oldest first; with `follow`, then each new one as it
    commits, until `stop` is set."""
    stop = stop or threading.Event()
    parse_cursor(after)  # a malformed cursor fails before anything waits
    pause = POLL_MIN
    while not stop.is_set():
        page = store.feed.read(after, PAGE)
        yield from page.changes
        after = page.next_after
        if page.changes:
            pause = POLL_MIN
            continue
        if not follow:
            return
        if _wait_on_daemon(config, after):
            continue
        stop.wait(pause)
        pause = min(pause * 2, POLL_MAX)


def _wait_on_daemon(config: Config, after: str) -> bool:
    """Long-poll the running daemon's API until a change after `after` commits (or it
    times out); False when there is no daemon to ask, so the caller polls instead."""
    url = _daemon_url(config)
    if url is None:
        return False
    headers = {}
    if config.http.token_file is not None:
        try:
            headers["Authorization"] = f"Bearer {read_token(config.http.token_file)}"
        except (OSError, ValueError):
            return False
    request = urllib.request.Request(f"{url}/changes?after={after}&limit=1&wait={LONG_POLL}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=LONG_POLL + 10) as reply:
            reply.read()
            return reply.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _daemon_url(config: Config) -> str | None:
    """The API of the daemon running on this state directory, from its `daemon.json`."""
    info = live_daemon(config.daemon.state_dir)
    address = info.get("http") if info else None
    return f"http://{address}" if address else None


def daemon_pid(config: Config) -> int | None:
    """The pid of the daemon running on this state directory (with or without its API)."""
    info = live_daemon(config.daemon.state_dir)
    return info["pid"] if info else None
