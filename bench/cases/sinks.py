"""`sink-latency` (issue 17): commit → webhook delivered. A daemon with a `webhook` sink
pointed at a receiver in this process (stdlib HTTP server on 127.0.0.1); files are dropped
one at a time, and the latency runs from the change's `at` (stamped as its commit begins,
so the commit's own fsync is inside the figure) to the POST's arrival at the receiver.
Target: p99 ≤ 250 ms.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .. import ingest, measure
from ..context import Bench
from ..daemon import Daemon, wait_until
from .common import Case
from .feed import _epoch, latency_result

P99_TARGET_MS = 250.0


class Receiver:
    """Notes when each change arrives; answers 204 at once."""

    def __init__(self):
        self.arrivals: dict[str, float] = {}  # cursor → arrival (Unix time)
        self.at: dict[str, str] = {}  # cursor → the change's `at`
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                arrived = time.time()
                with receiver.lock:
                    for change in json.loads(body)["changes"]:
                        receiver.arrivals.setdefault(change["cursor"], arrived)
                        receiver.at[change["cursor"]] = change["at"]
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_sink_latency(bench: Bench, case: Case) -> dict:
    commits = 10 if bench.smoke else 200
    root = bench.scratch("sink-latency")
    inbox = root / "inbox"
    inbox.mkdir()
    receiver = Receiver()
    config = ingest.write_config(root / "ingestd.toml", root / "state",
                                 [{"name": "inbox", "kind": "local", "path": inbox, "settle_seconds": 0.05}],
                                 http=True)
    with open(config, "a") as out:
        out.write(f'[[sinks]]\nname = "bench"\nkind = "webhook"\nurl = "{receiver.url}"\n')
    try:
        with Daemon(config, root / "state", root) as daemon:
            cpu = measure.cpu_seconds(daemon.pid)
            for n in range(commits):
                (inbox / f"f{n:05d}.txt").write_bytes(f"document {n}\n".encode())
                wait_until(lambda n=n: receiver.count() > n, 30, "the change to reach the receiver", daemon=daemon)
                wait_until(lambda: not any(inbox.iterdir()), 30, "the file to be moved out", daemon=daemon)
            cpu = measure.cpu_seconds(daemon.pid) - cpu
    finally:
        receiver.close()
    latencies = [(receiver.arrivals[c] - _epoch(receiver.at[c])) * 1000 for c in receiver.arrivals]
    return latency_result(case, latencies, cpu, "commit to webhook delivered", P99_TARGET_MS,
                          f"{commits} commits, one file each, each POSTed by a webhook sink to a receiver on 127.0.0.1",
                          "POST's arrival")


SINK_LATENCY = Case("sink-latency", "commit → webhook delivered (a webhook sink, local receiver)", "-",
                    "p99 <= 250 ms", run_sink_latency)
