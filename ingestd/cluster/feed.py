"""The change feed read from PostgreSQL, and woken by it: what `GET /changes` serves on a
cluster instance, with the embedded feed's contract (`ingestd.store.feed`).

**Gapless across instances.** Cursors are allocated by the committing transaction from
the one `feed` row (`catalogue._append`), whose lock orders commits as it orders
cursors; PostgreSQL makes a transaction visible before it releases its locks, so once a
reader sees cursor C, every change ≤ C is visible too, whichever instance wrote it. A
page and the head it is judged against (`next_after`, the 410 checks) are read by one
statement, so in one snapshot: a page that ends before the head can never skip a change
that committed between two reads.

**Waking long-polls.** Each committing transaction that adds changes also sends `NOTIFY
ingestd_changes` (delivered at its commit). One `Watcher` thread per instance LISTENs
and wakes the held requests; a notification missed (a reconnect) is made up by a read
of the head at most `POLL` seconds later, made only while a long-poll is held. No
thread per waiting request: held requests live in the transport's loop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from ingestd._lib import logs
from ingestd._lib.times import iso
from ingestd.store.feed import (FIELDS, PRUNE_BATCH, JsonPage, Page, change, check_position, format_cursor,
                                parse_cursor)

CHANNEL = "ingestd_changes"  # NOTIFY channel: changes committed (payload: the last cursor)
POLL = 1.0  # how long a missed notification can go unnoticed while long-polls are held
RETRY = 1.0  # a lost listening connection is opened again after this

_PAGE = ("WITH f AS (SELECT last, expired FROM feed WHERE id = 1) "
         "SELECT f.last, f.expired, c.* FROM f LEFT JOIN LATERAL ("
         "SELECT cursor, type, doc_id, source, origin_uri, version, sha256, size, mime, job_id, at "
         "FROM changes WHERE cursor > %s ORDER BY cursor LIMIT %s) c ON true ORDER BY c.cursor")


def read(conn, after: str | None, limit: int) -> JsonPage:
    """Up to `limit` changes after `after`, oldest first, each a JSON object (text) with
    the fields and order of the embedded feed's. Raises CursorExpired, UsageError."""
    position = parse_cursor(after)
    rows = conn.execute(_PAGE, (position, limit)).fetchall()
    last, expired = rows[0][0], rows[0][1]
    check_position(position, last, expired)
    found = [r[2:] for r in rows if r[2] is not None]
    nxt = found[-1][0] if len(found) >= limit else max(last, position)
    return JsonPage([_json(r) for r in found], format_cursor(nxt))


_FILTERED = ("WITH f AS (SELECT last, expired FROM feed WHERE id = 1) "
             "SELECT f.last, f.expired, c.* FROM f LEFT JOIN LATERAL ("
             "SELECT cursor, type, doc_id, source, origin_uri, version, sha256, size, mime, job_id, at "
             "FROM changes WHERE cursor > %s AND (%s::text[] IS NULL OR source = ANY(%s::text[])) "
             "ORDER BY cursor LIMIT %s) c ON true ORDER BY c.cursor")


def read_changes(conn, after: str | None, limit: int, sources=None) -> Page:
    """`read` as FeedChange objects, only those of `sources` when given: what a sink
    delivers. A filtered page that reached the head moves `next_after` to it, as the
    embedded feed does, so a sink passes over other sources' changes once."""
    position = parse_cursor(after)
    wanted = sorted(set(sources)) if sources is not None else None
    rows = conn.execute(_FILTERED, (position, wanted, wanted, limit)).fetchall()
    last, expired = rows[0][0], rows[0][1]
    check_position(position, last, expired)
    found = [r[2:] for r in rows if r[2] is not None]
    nxt = found[-1][0] if len(found) >= limit else max(last, position)
    return Page([change(r[0], (*r[1:-1], iso(r[-1]))) for r in found], format_cursor(nxt))


def _json(row: tuple) -> str:
    values = dict(zip(FIELDS, row))
    values["cursor"] = format_cursor(row[0])
    values["at"] = iso(row[-1])
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


PRUNE_LOCK = 0x696E6766  # "ingf": held by the one instance pruning the feed, for one batch

_OLDEST = ("SELECT cursor, at < now() - make_interval(secs => %s) FROM changes WHERE cursor > %s "
           "ORDER BY cursor LIMIT %s")


def prune(conn, retention: float, batches: int | None = None) -> int | None:
    """`daemon.change_retention` on the cluster's feed, as the embedded store applies it
    (`store.feed.Feed.prune_batch`): remove the oldest changes made more than `retention`
    seconds ago (by the database's clock), a batch per transaction, stopping at the first
    change still young so the feed stays one contiguous run; `feed.expired` records the
    last cursor removed, and a reader behind it gets 410 `cursor_expired`. No change is
    kept for a sink that has not delivered it (as embedded: such a sink stops `expired`).
    One instance at a time: each batch's transaction holds an advisory lock, and an
    instance that cannot take it leaves the work to the one that has it (None). At most
    `batches` batches when given (the caller comes back for the rest)."""
    removed, done = 0, 0
    while batches is None or done < batches:
        done += 1
        with conn.transaction(), conn.cursor() as cur:
            if not cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (PRUNE_LOCK,)).fetchone()[0]:
                return removed or None
            expired = cur.execute("SELECT expired FROM feed WHERE id = 1").fetchone()[0]
            upto = None
            for cursor, old in cur.execute(_OLDEST, (retention, expired, PRUNE_BATCH)).fetchall():
                if not old:
                    break
                upto = cursor
            if upto is None:
                return removed
            batch = cur.execute("DELETE FROM changes WHERE cursor > %s AND cursor <= %s", (expired, upto)).rowcount
            cur.execute("UPDATE feed SET expired = %s WHERE id = 1", (upto,))
        removed += batch
        if batch < PRUNE_BATCH:
            return removed
    return removed


def head(conn) -> int:
    return conn.execute("SELECT last FROM feed WHERE id = 1").fetchone()[0]


class Watcher:
    """One thread per instance that knows the feed's head and calls `listeners` when it
    moves (a commit on any instance)."""

    def __init__(self, connect: Callable[..., object]):
        self.connect = connect
        self.listeners: list[Callable[[], None]] = []
        self.head = 0
        self._wanted = threading.Event()  # a long-poll is held: read the head if no notification comes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.log = logs.get("ingestd.cluster.feed")

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="feed-watch", daemon=True)
                self._thread.start()

    def poll(self) -> None:
        """Someone waits: let the next quiet `POLL` end with a read of the head (never
        blocks: called from the API's loop)."""
        self._wanted.set()

    def stop(self, timeout: float = 3 * POLL) -> None:
        """Stop listening and wait (a little) for the thread to close its connection."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        down = False  # logged once per outage, not once per retry
        while not self._stop.is_set():
            try:
                with self.connect(autocommit=True, purpose="feed") as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._moved(head(conn))  # what committed while nobody listened
                    down = False
                    self._listen(conn)
            except Exception as exc:  # noqa: BLE001 - the database away: long-polls end at their time
                if not down:
                    self.log.warning("feed watcher: database unavailable; long-polls end at their time until "
                                     "it is back", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
                down = True
                self._stop.wait(RETRY)

    def _listen(self, conn) -> None:
        while not self._stop.is_set():
            payloads = [n.payload for n in conn.notifies(timeout=POLL, stop_after=1)]
            if payloads:
                numbers = [int(p) for p in payloads if p.isdigit()]
                self._moved(max(numbers) if numbers else head(conn))
            elif self._wanted.is_set():
                self._wanted.clear()
                self._moved(head(conn))

    def _moved(self, last: int) -> None:
        if last <= self.head:
            return
        self.head = last
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - one listener's fault must not stop the watch
                self.log.exception("feed listener failed")
