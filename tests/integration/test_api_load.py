"""100 concurrent pollers on /ingest/{id} and /jobs while a 2,000-file burst is ingested:
every poll answers 200, and the burst still drains.

The drain time with and without pollers is printed (run with -s to see it). Only a
generous bound is asserted: on a 2-core machine the pollers and the daemon share the
CPU, so some slowdown is physics, not a bug; a hang or a collapse is.
"""

from __future__ import annotations

import os
import random
import threading
import time

from tests.support.helpers import wait_for
from tests.integration.test_api_support import Client, Setup, api_setup  # noqa: F401 (fixture)

FILES = int(os.environ.get("INGESTD_LOAD_FILES", "2000"))
POLLERS = int(os.environ.get("INGESTD_LOAD_POLLERS", "100"))


def drain(setup: Setup, client: Client, tag: str) -> float:
    """Drop FILES files and return the seconds until all are ingested and no job is open."""
    started = time.monotonic()
    for i in range(FILES):
        (setup.inbox / f"{tag}-{i:05d}.txt").write_bytes(b"%s %d\n" % (tag.encode(), i))

    def done():
        if any(True for _ in os.scandir(setup.inbox)):
            return False
        return not any(client.get(f"/jobs?status={s}&limit=1").json["jobs"] for s in ("queued", "running"))

    wait_for(done, timeout=120, interval=0.05, message=f"the {tag} burst to drain")
    return time.monotonic() - started


class Pollers:
    """Threads that poll as fast as they can, each on its own keep-alive connection."""

    def __init__(self, base_url: str, count: int):
        self.base_url, self.stop = base_url, threading.Event()
        self.errors: list[str] = []
        self.requests = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._poll, args=(n,), daemon=True) for n in range(count)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a poller hung"

    def _poll(self, n: int) -> None:
        client, rng, done = Client(self.base_url, timeout=30), random.Random(n), 0
        ids: list[str] = []
        while not self.stop.is_set():
            try:
                if not ids or rng.random() < 0.3:
                    r = client.get(f"/jobs?limit={rng.choice((1, 10, 50))}")
                    ids = [j["job_id"] for j in r.json["jobs"]] if r.status == 200 else ids
                else:
                    r = client.get(f"/ingest/{rng.choice(ids)}")
                if r.status != 200:
                    self.errors.append(f"{r.status} {r.data[:200]!r}")
            except Exception as exc:  # any transport failure is a failure of the test
                self.errors.append(f"{type(exc).__name__}: {exc}")
            done += 1
        client.close()
        with self._lock:
            self.requests += done


def test_pollers_do_not_break_or_stall_a_burst(api_setup):
    # every poller connects from 127.0.0.1: one address, so its share of connections is raised
    setup = api_setup.write(settle=0.2, http={"max_connections_per_client": POLLERS + 8})
    d = setup.start(setup.daemon())
    client = setup.client(d)
    quiet = drain(setup, client, "quiet")
    with Pollers(d.base_url, POLLERS) as pollers:
        wait_for(lambda: pollers.requests or len(d.log_text()) > 0, message="pollers to start")
        busy = drain(setup, client, "busy")
        polled_for = busy
    rate = pollers.requests / polled_for
    print(f"\nburst of {FILES} files: {quiet:.2f}s without pollers, {busy:.2f}s with {POLLERS} pollers "
          f"({pollers.requests} requests, {rate:.0f} req/s)")
    assert pollers.errors == [], pollers.errors[:10]
    assert pollers.requests > POLLERS  # they really polled
    assert busy < max(20 * quiet, 60.0)
    jobs = client.get("/jobs?limit=500&status=succeeded").json["jobs"]
    assert sum(j["counters"]["ingested"] for j in jobs) == 2 * FILES
    assert d.stop() == 0
