"""One sink, followed on its own thread: read the committed feed after the sink's cursor,
hand a batch to the plugin, save the cursor once it is accepted, wait for the next commit.

Why it cannot slow ingestion or lose a change:
- It only reads what is committed (a snapshot reader, never the writer's connection) and
  holds nothing in memory but one batch: a sink that is down for a week costs a cursor
  file, not a queue that grows with the backlog.
- The cursor moves only after `deliver` returned, and is written durably before the next
  batch is read: a crash replays at most the batch in flight (at-least-once, in order).
- A failed batch is retried, the same batch from the same cursor, with capped
  exponential backoff; nothing is skipped, ever. A cursor that retention already
  removed stops the sink (state `expired`) until an operator resets it.
- Waiting uses the feed's commit notification (`Feed.on_commit`): the sink wakes when a
  change commits, and looks for another process's commits every OTHERS_POLL.

Either backend: the runner needs a feed (`read`, `on_commit`, `poll_others`) and a cursor
store (`load`, `save`, `moved`, `note`): the embedded daemon's are the SQLite feed and one
file per sink (`cursor.FileCursors`); a cluster instance's are PostgreSQL's feed and the
sink's row, written only under the sink's lease and fence (`ingestd.cluster.sinks`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ingestd._lib import logs, redact
from ingestd._lib.times import iso_from_timestamp
from ingestd.config import SinkConfig
from ingestd.errors import ConfigError
from ingestd.plugin.sink import DeliveryError, Sink
from ingestd.sinks.backoff import Backoff
from ingestd.sinks.cursor import CursorMoved, FileCursors, NotHolder
from ingestd.store.feed import OTHERS_POLL, CursorExpired, Feed, parse_cursor

STALLED_AFTER = 120.0  # seconds in one `deliver` call before the sink is shown as stalled
MESSAGE_MAX = 300  # characters of an error message kept


@dataclass(frozen=True)
class SinkError:
    """The last failure, typed and secret-free: what `GET /sinks` shows."""

    code: str  # http_status, timeout, connection, rejected, plugin_error, cursor_expired, config, …
    message: str
    at: str  # ISO time


@dataclass(frozen=True)
class SinkStatus:
    name: str
    kind: str
    enabled: bool
    state: str  # idle, delivering, stalled, retrying, expired, unavailable, disabled, stopped
    cursor: str | None
    lag: int | None  # changes committed after the cursor (None when the cursor is unknown)
    sources: tuple[str, ...] | None
    last_error: SinkError | None
    failing_since: float | None  # Unix time of the first failure in the current run of them
    last_delivery_at: float | None  # Unix time of the last accepted batch
    deliveries: dict[str, int] = field(default_factory=dict)  # result → batches: ok, failed
    delivered_changes: int = 0
    holder: str | None = None  # cluster mode: the instance delivering it now


class SinkRunner:
    def __init__(self, config: SinkConfig, cls: type[Sink] | None, feed: Feed, state_dir, registry=None,
                 unavailable: str | None = None, cursors=None):
        self.config, self.feed, self.state_dir = config, feed, state_dir
        self.cursors = cursors if cursors is not None else FileCursors(state_dir)
        self._cls, self._registry = cls, registry
        self._log = logs.get("ingestd.sinks").bind(sink=config.name)
        self._lock = threading.Lock()
        self._kick = threading.Event()  # a commit, a reset or a stop: look at the feed again
        self._control = threading.Event()  # a reset or a stop: end a backoff wait early
        self._stopping = threading.Event()
        self._retired = False  # replaced while hung in deliver: must never write the cursor again
        self._generation = 0  # bumped by a reset: a batch read before it must not move the cursor
        self._thread: threading.Thread | None = None
        self._unsubscribe = lambda: None
        self.sink: Sink | None = None
        self.cursor: str | None = None
        self.state = "disabled" if not config.enabled else "stopped"
        self.last_error: SinkError | None = None
        self.failing_since: float | None = None
        self.last_delivery_at: float | None = None
        self.deliveries = {"ok": 0, "failed": 0}
        self.delivered_changes = 0
        self._delivering_since: float | None = None
        self._backoff = Backoff(cap=config.retry_max)
        if unavailable:
            self._unavailable("config", unavailable)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if not self.config.enabled or self.state == "unavailable":
            return
        try:
            self.cursor = self.cursors.load(self.config.name)
            self.sink = self._cls(self.config.name, self.config.options, self._registry)
        except ConfigError as exc:
            self._unavailable("config", "; ".join(exc.lines))
            return
        except ValueError as exc:
            self._unavailable("cursor", str(exc))
            return
        except Exception as exc:  # a plugin's constructor must not stop the daemon
            self._unavailable("plugin_error", f"{type(exc).__name__}: {exc}")
            return
        self.state = "idle"
        self._unsubscribe = self.feed.on_commit(lambda _last: self._kick.set())
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.config.name}", daemon=True)
        self._thread.start()
        self._log.info("sink started", kind=self.config.kind, cursor=self.cursor)

    @property
    def running(self) -> bool:
        """Its thread is delivering or waiting (False once stopped, or never started)."""
        return self._thread is not None and self._thread.is_alive()

    def signal_stop(self) -> None:
        """Ask the thread to end after its batch in flight; `stop` then waits for it."""
        self._stopping.set()
        self._control.set()
        self._kick.set()

    def stop(self, timeout: float) -> bool:
        """Stop after the batch in flight (if any); False when `deliver` did not return in
        `timeout` (the thread is then abandoned and may never write the cursor again)."""
        self.signal_stop()
        self._unsubscribe()
        done = True
        if self._thread is not None:
            self._thread.join(timeout)
            done = not self._thread.is_alive()
        with self._lock:
            self._retired = not done
            self.state = "stopped" if done else "stalled"
        if done and self.sink is not None:
            self._close()
        elif not done:
            self._log.error("sink did not stop: its deliver call hangs; abandoned", kind=self.config.kind)
        return done

    def _close(self) -> None:
        try:
            self.sink.close()
        except Exception:
            self._log.exception("sink close failed")

    def _unavailable(self, code: str, message: str) -> None:
        self.state = "unavailable"
        self.last_error = SinkError(code, _clean(message), iso_from_timestamp(time.time()))
        self._log.error("sink not started", kind=self.config.kind, code=code, reason=self.last_error.message)

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._control.clear()
            self._kick.clear()
            if self._adopt() is False:
                continue
            with self._lock:
                generation, after = self._generation, self.cursor
            try:
                page = self.feed.read(after, self.config.batch_max, self.config.sources)
            except CursorExpired as exc:
                self._expired(exc)
                continue
            except Exception as exc:  # the catalogue unreadable for a moment: retry like a failure
                self._failed("feed", f"reading the change feed failed: {type(exc).__name__}: {exc}")
                continue
            if page.changes:
                self._deliver(page, generation)
            else:
                if page.next_after != after:  # moved past other sources' changes
                    self._advance(generation, page.next_after, 0)
                self._idle()

    def _adopt(self, quiet: bool = False) -> bool | None:
        """Take up a cursor reset elsewhere (another cluster instance's API): True when
        one was taken up, None when there was none, False when the store could not be
        asked (retried like a failed batch, unless `quiet`) or the sink is no longer this
        runner's."""
        try:
            moved = self.cursors.moved(self.config.name)
        except NotHolder:
            self._retire()
            return False
        except Exception as exc:  # the database away for a moment
            if not quiet:
                self._failed("cursor", f"reading the sink's cursor failed: {type(exc).__name__}: {exc}")
            return False
        if moved is None:
            return None
        self._take(moved)
        return True

    def _take(self, cursor: str) -> None:
        with self._lock:
            self._generation += 1
            self.cursor = cursor
        self._backoff.reset()
        self._log.info("sink cursor reset elsewhere; delivering from it", cursor=cursor)

    def _retire(self) -> None:
        """The sink went to another holder: stop, and never write its cursor again."""
        with self._lock:
            self._retired = True
        self._stopping.set()
        self._log.warning("sink taken over by another instance; stopping here")

    def _idle(self) -> None:
        self.state = "idle"
        if not self._kick.wait(OTHERS_POLL):
            self.feed.poll_others()  # another process may have committed; wakes us if so

    def _deliver(self, page, generation: int) -> None:
        batch = [change.as_dict() for change in page.changes]
        self.state = "delivering"
        self._delivering_since = time.monotonic()
        try:
            self.sink.deliver(batch)
        except (Exception, SystemExit) as exc:  # whatever the plugin raises, the batch comes again
            self._delivering_since = None
            code, message = _classify(exc)
            self._failed(code, message)
            return
        self._delivering_since = None
        if self._advance(generation, page.next_after, len(batch)):
            self.deliveries["ok"] += 1
            self.delivered_changes += len(batch)
            self.last_delivery_at = time.time()
            self.failing_since = None
            self._backoff.reset()
            self._note()

    def _advance(self, generation: int, to: str, count: int) -> bool:
        """Move and save the cursor, unless a reset came meanwhile (it wins) or this runner
        was abandoned (its replacement owns the file now)."""
        with self._lock:
            if self._retired or generation != self._generation:
                return False
            try:
                self.cursors.save(self.config.name, to, durable=count > 0)
            except CursorMoved as moved:
                self._generation += 1
                self.cursor = moved.cursor
                return False
            except NotHolder:
                self._retired = True
                self._stopping.set()
                return False
            except Exception as exc:  # the database away: the batch comes again (at-least-once)
                error = exc
            else:
                self.cursor = to
                return True
        self._failed("cursor", f"saving the sink's cursor failed: {type(error).__name__}: {error}")
        return False

    def _failed(self, code: str, message: str) -> None:
        now = time.time()
        self.deliveries["failed"] += 1
        self.last_error = SinkError(code, _clean(message), iso_from_timestamp(now))
        if self.failing_since is None:
            self.failing_since = now
        delay = self._backoff.next()
        self.state = "retrying"
        self._note()
        self._log.warning("sink delivery failed; retrying", kind=self.config.kind, code=code,
                          reason=self.last_error.message, retry_in_s=round(delay, 3), attempt=self._backoff.failures)
        self._control.wait(delay)

    def _expired(self, exc: CursorExpired) -> None:
        self.last_error = SinkError("cursor_expired", _clean(str(exc)), iso_from_timestamp(time.time()))
        if self.failing_since is None:
            self.failing_since = time.time()
        self.state = "expired"
        self._note()
        self._log.error("sink cursor expired; reset it to go on", cursor=self.cursor, oldest=exc.oldest)
        # until a reset (here, or on another instance: its cursor store says so) or a stop
        while not self._control.wait(OTHERS_POLL):
            if self._adopt(quiet=True) is not None:
                return

    def _note(self) -> None:
        try:
            self.cursors.note(self.config.name, self.status(0))
        except Exception as exc:  # only what other instances show: never a reason to stop
            self._log.warning("could not record the sink's state", error=f"{type(exc).__name__}: {exc}")

    # -- control --------------------------------------------------------------------------

    def reset(self, to: str) -> None:
        """Deliver again from `to` (a checked cursor): saved now, taken up at once, also in
        the middle of a backoff; a batch in flight finishes but does not move the cursor."""
        parse_cursor(to)
        with self._lock:
            self._generation += 1
            self.cursors.save(self.config.name, to)
            self.cursor = to
        self._backoff.reset()
        self._control.set()
        self._kick.set()
        self._log.info("sink cursor reset", cursor=to)

    def status(self, head: int) -> SinkStatus:
        state = self.state
        since = self._delivering_since
        if state == "delivering" and since is not None and time.monotonic() - since > STALLED_AFTER:
            state = "stalled"
        position = self.cursor
        lag = max(0, head - int(position)) if position is not None else None
        return SinkStatus(
            name=self.config.name, kind=self.config.kind, enabled=self.config.enabled, state=state, cursor=position,
            lag=lag, sources=self.config.sources, last_error=self.last_error, failing_since=self.failing_since,
            last_delivery_at=self.last_delivery_at, deliveries=dict(self.deliveries),
            delivered_changes=self.delivered_changes)


def _classify(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, DeliveryError):
        return exc.code, str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", f"timed out: {exc}" if str(exc) else "timed out"
    if isinstance(exc, ConnectionError):
        return "connection", f"{type(exc).__name__}: {exc.strerror or exc}"
    if isinstance(exc, OSError):
        return "connection", f"{type(exc).__name__}: {exc.strerror or exc}"
    return "plugin_error", f"{type(exc).__name__}: {exc}"


def _clean(message: str) -> str:
    """One line, masked (a plugin may put anything in an exception), and short."""
    text = redact.scrub_text(" ".join(str(message).split()))
    return text if len(text) <= MESSAGE_MAX else text[:MESSAGE_MAX - 1] + "…"
