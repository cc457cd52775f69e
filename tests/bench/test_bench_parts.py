"""The harness's own parts that a wrong figure could hide in: the delay proxy must really
delay, the big-store generator must write what ingestd itself reads, and the drop corpora
must be what issue 20 describes."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench import bigstore, corpus, ingest
from bench.delay import DelayProxy


class _Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_the_delay_proxy_holds_every_request_and_passes_the_answer():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = DelayProxy(server.server_address[1], 0.2).start()
    try:
        times = []
        for _ in range(3):  # a new connection each time: the first request of each is delayed too
            start = time.monotonic()
            with urllib.request.urlopen(proxy.endpoint + "/x", timeout=10) as resp:
                assert resp.read() == b"ok"
            times.append(time.monotonic() - start)
        assert min(times) >= 0.2, times
    finally:
        proxy.stop()
        server.shutdown()


def test_the_big_store_is_what_ingestd_reads(tmp_path: Path):
    """Read back through ingestd's own CLI: every job listed, statuses as generated, each
    sampled document found with its versions."""
    template = bigstore.make_template(tmp_path / "template")
    (tmp_path / "inbox").mkdir()
    made = bigstore.generate(template, tmp_path / "state", tmp_path / "inbox", documents=300, jobs=60)
    config = ingest.write_config(tmp_path / "ingestd.toml", made.state,
                                 [{"name": bigstore.SOURCE, "kind": "local", "path": tmp_path / "inbox"}])

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ingestd", *args, "--config", str(config)],
                              capture_output=True, text=True, timeout=60, env=ingest.env())

    def cli(*args: str):
        done = run(*args, "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    check = run("migrate", "--check")  # at this ingestd's own version: a start migrates nothing
    assert check.returncode == 0, check.stdout + check.stderr

    jobs = cli("jobs", "--limit", "100")
    assert len(jobs) == 60 and {j["status"] for j in jobs} == {"succeeded", "partial"}
    assert jobs[0]["job_id"] == made.newest_job
    newest = cli("status", made.newest_job)
    assert newest["counters"]["ingested"] == 5 and newest["status"] == "succeeded"
    docs = [cli("document", doc_id) for doc_id in made.doc_ids[:20]]
    assert all(d["source"] == bigstore.SOURCE and d["mime"] == "text/plain" for d in docs)
    assert any(d["versions"] for d in docs)  # every tenth document has an older version


def test_a_drop_corpus_is_issue_20s_shape(tmp_path: Path):
    built = corpus.build(corpus.drop_spec(300), tmp_path / "c")
    assert len(built.files) == 300 and len({f.rsplit("/", 1)[0] for f in built.files}) == 15
    sizes = [built.path(f).stat().st_size for f in built.files]
    assert min(sizes) >= 1024 and max(sizes) <= 33 * 1024
    assert sum(f.endswith(".bin") for f in built.files) == 100  # a third random bytes
    contents = {built.path(f).read_bytes() for f in built.files}
    assert len(contents) == 300  # nothing deduplicated away
    flat = tmp_path / "flat"
    corpus.link_tree(built, flat, flat=True)
    assert len(list(flat.iterdir())) == 300
