"""Waking idle instances when work appears: `LISTEN ingestd_jobs` on a connection of
its own. A queued job (any instance's) notifies on commit; an idle instance sleeping in
`wait` returns at once and claims, instead of polling the jobs table. Notifications are
a hint, not a queue: a missed one (a reconnect) costs at most one `wait` timeout, after
which the instance claims anyway."""

from __future__ import annotations

from collections.abc import Callable

from ingestd.cluster.jobs import CHANNEL


class Waker:
    def __init__(self, connect: Callable[..., object]):
        self.connect = connect
        self.conn = None

    def _listening(self):
        if self.conn is None or self.conn.closed:
            self.conn = self.connect(autocommit=True, purpose="listen")
            self.conn.execute(f"LISTEN {CHANNEL}")
        return self.conn

    def wait(self, timeout: float) -> list[str]:
        """The sources named by notifications that arrive within `timeout` seconds (the
        first one ends the wait, with any already queued behind it); [] on timeout."""
        conn = self._listening()
        try:
            got = [n.payload for n in conn.notifies(timeout=timeout, stop_after=1)]
        except Exception:
            self.close()  # a broken connection: the next wait listens anew
            raise
        return got

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
