"""Sinks on a cluster: each sink delivered by exactly one instance at a time, from the
cluster's change feed, with its durable cursor in PostgreSQL (docs/sinks.md, "In cluster
mode").

The same `SinkRunner` as an embedded daemon's does the delivering (read a batch after the
cursor, hand it to the plugin, move the cursor once it is accepted); what differs is who
may run it and where the cursor lives:

- **One holder per sink.** A sink's row (`sinks`, schema step 2) carries a lease and a
  fence, as a source's does (`leases`): an instance claims a free or expired sink by
  bumping the fence, renews the lease on the database's clock (a `Keeper`, as jobs do), and
  the others take the sink over once the lease expires (the holder died, stalled or lost
  the database).
- **The cursor moves by compare-and-set.** `FencedCursors.save` writes the new cursor only
  if the fence is still this holder's, its lease has not expired and no reset came since
  (`generation`): a stale holder (SIGSTOP, partition) that wakes up with a batch delivered
  cannot move the cursor back, or at all; it stops. A crash between the receiver's answer
  and the save costs that batch again: at-least-once, in cursor order, no gap.
- **Resets from anywhere.** `POST /sinks/{name}/reset` on any instance (or `ingestd sinks
  reset`, which needs only the database) writes the cursor and bumps `generation`; the
  holder sees it before its next batch (`moved`), and a batch in flight then does not
  move the cursor.
- **Waking.** The runner wakes on the feed's NOTIFY (`feed.Watcher`), as long-polls do.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from ingestd._lib import logs
from ingestd.cluster import feed
from ingestd.cluster.keeper import Keeper, cut
from ingestd.cluster.leases import Lease, LeaseLost
from ingestd.config import SinkConfig
from ingestd.errors import NotFoundError
from ingestd.sinks.cursor import CursorMoved, NotHolder
from ingestd.sinks.runner import SinkError, SinkRunner, SinkStatus
from ingestd.store.feed import check_position, format_cursor, parse_cursor

STOP_TIMEOUT = 5.0  # seconds a batch in flight may take to finish when the instance stops
UNCLAIMED = "unclaimed"  # no live holder: between two holders, or no instance can run its kind


# -- the table ---------------------------------------------------------------------------


def register(conn, configs: tuple[SinkConfig, ...]) -> None:
    """A row for every configured sink (a new one starts before the first change)."""
    with conn.transaction(), conn.cursor() as cur:
        for c in configs:
            cur.execute("INSERT INTO sinks (name, kind) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
                        "SET kind = EXCLUDED.kind", (c.name, c.kind))


def claim(conn, name: str, holder: str, ttl: float) -> tuple[Lease, int, int] | None:
    """Take a free (or expired) sink: bump its fence, start the lease. (lease, cursor,
    generation), or None when another instance holds it."""
    row = conn.execute(
        "UPDATE sinks SET fence = fence + 1, holder = %s, lease_expires_at = now() + make_interval(secs => %s), "
        "state = 'idle' WHERE name = %s AND (holder IS NULL OR lease_expires_at <= now()) "
        "RETURNING fence, cursor, generation", (holder, ttl, name)).fetchone()
    if row is None:
        return None
    return Lease(name, row[0], holder, "sink"), row[1], row[2]


def heartbeat(conn, lease: Lease, ttl: float) -> None:
    """Renew the sink's lease from the database's now (the Keeper calls it every ttl/3)."""
    row = conn.execute(
        "UPDATE sinks SET lease_expires_at = now() + make_interval(secs => %s) WHERE name = %s AND fence = %s "
        "AND holder = %s AND lease_expires_at > now() RETURNING 1", (ttl, lease.source, lease.fence, lease.holder)
    ).fetchone()
    if row is None:
        raise LeaseLost(lease, "the sink's heartbeat found it expired or taken over")


def release(conn, lease: Lease) -> None:
    """Stopping: the sink is free at once for another instance (the fence stays)."""
    conn.execute("UPDATE sinks SET holder = NULL, lease_expires_at = NULL, state = NULL "
                 "WHERE name = %s AND fence = %s AND holder = %s", (lease.source, lease.fence, lease.holder))


def reset(conn, name: str, to: str) -> None:
    """Deliver again from `to`, whoever holds the sink: checked against the feed in the
    same transaction. Raises NotFoundError, UsageError, CursorExpired."""
    position = parse_cursor(to)
    with conn.transaction(), conn.cursor() as cur:
        last, expired = cur.execute("SELECT last, expired FROM feed WHERE id = 1").fetchone()
        check_position(position, last, expired)
        cur.execute("UPDATE sinks SET cursor = %s, generation = generation + 1, saved_at = now() WHERE name = %s "
                    "RETURNING 1", (position, name))
        if cur.fetchone() is None:
            raise NotFoundError(f"no sink named {name!r}; GET /sinks lists them")


_STATUS = ("SELECT name, cursor, holder, lease_expires_at > now(), state, last_error, extract(epoch FROM failing_since), "
           "extract(epoch FROM last_delivery_at), delivered_ok, delivered_failed, delivered_changes FROM sinks")


def statuses(conn, configs: tuple[SinkConfig, ...]) -> list[SinkStatus]:
    """What GET /sinks shows on any instance, in config order: read from the rows the
    holders keep (cursor, holder, state, last error)."""
    head = feed.head(conn)
    rows = {r[0]: r for r in conn.execute(_STATUS).fetchall()}
    return [_status(c, rows.get(c.name), head) for c in configs]


def _status(c: SinkConfig, row, head: int) -> SinkStatus:
    if row is None:  # configured here, not yet registered by a running instance
        return SinkStatus(name=c.name, kind=c.kind, enabled=c.enabled, state="disabled" if not c.enabled else UNCLAIMED,
                          cursor=None, lag=None, sources=c.sources, last_error=None, failing_since=None,
                          last_delivery_at=None)
    _n, position, holder, live, state, error, failing, delivered, ok, failed, changes = row
    lag = max(0, head - position)
    if not c.enabled:
        state = "disabled"
    elif not holder or not live:
        state, holder = UNCLAIMED, None
    elif state == "delivering" and lag == 0:
        state = "idle"
    return SinkStatus(
        name=c.name, kind=c.kind, enabled=c.enabled, state=state or UNCLAIMED, cursor=format_cursor(position), lag=lag,
        sources=c.sources, last_error=SinkError(**error) if error else None,
        failing_since=float(failing) if failing is not None else None,
        last_delivery_at=float(delivered) if delivered is not None else None,
        deliveries={"ok": ok, "failed": failed}, delivered_changes=changes, holder=holder)


# -- what a holding runner reads and writes ---------------------------------------------------


class _Link:
    """One runner's connection (its thread's only), opened when first needed and again
    after an error."""

    def __init__(self, connect: Callable[..., object]):
        self.connect = connect
        self.conn = None

    def run(self, work):
        if self.conn is None or self.conn.closed:
            self.conn = self.connect(autocommit=True, purpose="sink")
        try:
            return work(self.conn)
        except Exception:
            self.close()
            raise

    def cut(self) -> None:
        if self.conn is not None:
            cut(self.conn)

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a cut connection may complain
                pass


class FencedCursors:
    """The runner's cursor store in cluster mode: the sink's row, written only under this
    holder's fence and live lease, and only if no reset came since it last looked."""

    def __init__(self, link: _Link, lease: Lease, cursor: int, generation: int):
        self.link, self.lease = link, lease
        self.cursor, self.generation = cursor, generation

    def load(self, name: str) -> str:
        return format_cursor(self.cursor)

    def save(self, name: str, cursor: str, *, durable: bool = True) -> None:
        position = parse_cursor(cursor)
        row = self.link.run(lambda conn: conn.execute(
            "UPDATE sinks SET cursor = %s, saved_at = now() WHERE name = %s AND fence = %s AND holder = %s "
            "AND lease_expires_at > clock_timestamp() AND generation = %s RETURNING 1",
            (position, name, self.lease.fence, self.lease.holder, self.generation)).fetchone())
        if row is None:
            moved = self.moved(name)  # NotHolder when the fence or the lease is gone
            raise CursorMoved(moved if moved is not None else format_cursor(self.cursor))
        self.cursor = position

    def moved(self, name: str) -> str | None:
        row = self.link.run(lambda conn: conn.execute(
            "SELECT cursor, generation, fence, holder, lease_expires_at > clock_timestamp() FROM sinks WHERE name = %s",
            (name,)).fetchone())
        if row is None or row[2] != self.lease.fence or row[3] != self.lease.holder or not row[4]:
            raise NotHolder(f"sink {name!r}: no longer held by {self.lease.holder} (fence {self.lease.fence})")
        if row[1] == self.generation:
            return None
        self.cursor, self.generation = row[0], row[1]
        return format_cursor(row[0])

    def note(self, name: str, s: SinkStatus) -> None:
        error = json.dumps({"code": s.last_error.code, "message": s.last_error.message, "at": s.last_error.at}) \
            if s.last_error else None
        self.link.run(lambda conn: conn.execute(
            "UPDATE sinks SET state = %s, last_error = %s::jsonb, failing_since = to_timestamp(%s), "
            "last_delivery_at = to_timestamp(%s), delivered_ok = delivered_ok + %s, "
            "delivered_failed = delivered_failed + %s, delivered_changes = delivered_changes + %s "
            "WHERE name = %s AND fence = %s AND holder = %s",
            (s.state, error, s.failing_since, s.last_delivery_at, *self._counted(s), name, self.lease.fence,
             self.lease.holder)))

    _seen = (0, 0, 0)

    def _counted(self, s: SinkStatus) -> tuple[int, int, int]:
        """What this runner delivered since its last note (the row sums every holder's)."""
        now = (s.deliveries.get("ok", 0), s.deliveries.get("failed", 0), s.delivered_changes)
        delta = tuple(a - b for a, b in zip(now, self._seen))
        self._seen = now
        return delta


class ClusterFeed:
    """The cluster's change feed as a sink runner reads and waits on it."""

    def __init__(self, link: _Link, watcher: feed.Watcher):
        self.link, self.watcher = link, watcher

    def read(self, after, limit, sources=None):
        return self.link.run(lambda conn: feed.read_changes(conn, after, limit, sources))

    def on_commit(self, listener: Callable[[int], None]) -> Callable[[], None]:
        def woken() -> None:
            listener(self.watcher.head)
        self.watcher.listeners.append(woken)

        def cancel() -> None:
            if woken in self.watcher.listeners:
                self.watcher.listeners.remove(woken)
        return cancel

    def poll_others(self) -> None:
        self.watcher.poll()


# -- one instance's part ------------------------------------------------------------------


class _Held:
    def __init__(self, runner: SinkRunner, keeper: Keeper, link: _Link, lease: Lease):
        self.runner, self.keeper, self.link, self.lease = runner, keeper, link, lease


class ClusterSinks:
    """The sinks this instance delivers: each tick (the node's loop) it claims the free
    ones its plugins can run, and lets go of those it lost."""

    def __init__(self, database, instance_id: str, ttl: float, configs: tuple[SinkConfig, ...], kinds: dict,
                 registry, state_dir):
        self.database, self.id, self.ttl = database, instance_id, ttl
        self.configs = tuple(c for c in configs if c.enabled)
        self.all = configs
        self.kinds, self.registry, self.state_dir = kinds, registry, state_dir
        self.held: dict[str, _Held] = {}
        self.watcher = feed.Watcher(database.connect)
        self._lock = threading.Lock()
        self.log = logs.get("ingestd.sinks", instance=instance_id)

    def start(self, conn) -> None:
        register(conn, self.all)
        if self.configs:
            self.watcher.start()

    def tick(self, conn) -> None:
        self._let_go_of_lost(conn)
        for config in self.configs:
            if config.name in self.held or config.kind not in self.kinds:
                continue  # a kind this instance cannot run is left to one that can
            claimed = claim(conn, config.name, self.id, self.ttl)
            if claimed is not None:
                self._run(config, *claimed)

    def _run(self, config: SinkConfig, lease: Lease, cursor: int, generation: int) -> None:
        link = _Link(self.database.connect)
        runner = SinkRunner(config, self.kinds[config.kind], ClusterFeed(link, self.watcher), self.state_dir,
                            self.registry, cursors=FencedCursors(link, lease, cursor, generation))
        stop = threading.Event()
        keeper = Keeper(lambda: self.database.connect(autocommit=True, purpose="sink lease"), lease, self.ttl, stop,
                        beat=heartbeat)
        keeper.on_lost.append(runner.signal_stop)
        keeper.on_lost.append(link.cut)
        with self._lock:
            self.held[config.name] = _Held(runner, keeper, link, lease)
        keeper.start()
        runner.start()
        if runner.state == "unavailable":  # its plugin refused to start: shown everywhere, held (no claim loop)
            try:
                link.run(lambda _conn: runner.cursors.note(config.name, runner.status(0)))
            except Exception:  # noqa: BLE001 - only what GET /sinks shows
                pass
        self.log.info("sink claimed", sink=config.name, fence=lease.fence, cursor=format_cursor(cursor))

    def _let_go_of_lost(self, conn) -> None:
        """A runner whose lease went (or that found another holder) is stopped and
        forgotten; the next tick may claim the sink again once it is free."""
        with self._lock:
            gone = {n: h for n, h in self.held.items()
                    if h.keeper.gone or (not h.runner.running and h.runner.state != "unavailable")}
            for name in gone:
                del self.held[name]
        for name, h in gone.items():  # off the loop: a deliver call may take its time to return
            threading.Thread(target=self._end, args=(h,), name=f"sink-end-{name}", daemon=True).start()
            self.log.warning("sink let go", sink=name, fence=h.lease.fence, reason=h.keeper.reason or "taken over")

    def _end(self, h: _Held) -> None:
        h.runner.stop(STOP_TIMEOUT)
        h.keeper.close()
        h.link.close()

    def stop(self) -> None:
        with self._lock:
            held, self.held = list(self.held.values()), {}
        for h in held:
            h.runner.signal_stop()
        for h in held:
            self._end(h)
        self.watcher.stop()
        if not held:
            return
        try:
            with self.database.connect(autocommit=True, purpose="sinks stop") as conn:
                for h in held:
                    release(conn, h.lease)
        except Exception as exc:  # noqa: BLE001 - the leases then expire after the ttl
            self.log.warning("could not release the sinks", error=str(exc).splitlines()[0] if str(exc) else repr(exc))

    def health(self) -> dict:
        with self._lock:
            return {"ok": True, "held": sorted(self.held)}


# -- `ingestd sinks` on a cluster config: the database is enough ---------------------------


def view(s: SinkStatus) -> dict:
    """A status as `ingestd sinks --json` prints it (the fields of GET /sinks)."""
    error = s.last_error
    return {"name": s.name, "kind": s.kind, "enabled": s.enabled, "state": s.state, "cursor": s.cursor, "lag": s.lag,
            "sources": list(s.sources) if s.sources is not None else None, "holder": s.holder,
            "last_error": {"code": error.code, "message": error.message, "at": error.at} if error else None}


def listing_command(cfg) -> list[dict]:
    from ingestd.cluster.commands import connected

    with connected(cfg, "sinks") as (_db, conn):
        return [view(s) for s in statuses(conn, cfg.sinks)]


def reset_command(cfg, name: str, to: str) -> dict:
    """A reset written straight to the sink's row: safe beside running instances (the
    holder takes it up before its next batch; a batch in flight cannot move the cursor)."""
    from ingestd.cluster.commands import connected

    to = format_cursor(parse_cursor(to))
    config = cfg.sink(name)
    if config is None:
        from ingestd.errors import UsageError

        known = ", ".join(s.name for s in cfg.sinks) or "none"
        raise UsageError(f"no sink named {name!r} in the config (configured: {known})")
    with connected(cfg, "sinks reset") as (_db, conn):
        register(conn, (config,))  # a sink no instance has started yet can be reset too
        reset(conn, name, to)
        return view(statuses(conn, (config,))[0])
