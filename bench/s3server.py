"""moto's S3 server as a separate process on 127.0.0.1: the endpoint every S3 case runs
against. A separate process so its CPU (it burns about a core under load) can be measured
and reported next to the client's, and so its request log can be counted.

Requests are counted from the server's own access log (werkzeug writes one line per
request when it sends the response headers). To count exactly the requests of one tool
run, a marker request is sent after the tool exits and the log is read up to it.
"""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import corpus as corpus_mod
from . import ingest, measure

ACCESS_KEY = "benchaccesskey"
SECRET_KEY = "benchsecretkey"
REGION = "us-east-1"
_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/[0-9.]+')  # colour codes on errors
_BUCKET_SUBRESOURCE = re.compile(r"[?&](location|versioning|acl|policy|tagging|cors|lifecycle|encryption)\b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "moto.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._marks = 0
        self._client = None
        self._offset = 0
        self._seen: list[tuple[str, str]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> "S3Server":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [ingest.PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()
            return True
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    # -- counting requests --------------------------------------------------------------

    def mark(self, timeout: float = 10.0) -> int:
        """Send a marker request, wait until the log shows it, and return the number of
        log requests before it: a position that brackets everything sent until now."""
        self._marks += 1
        tag = f"/bench-mark-{self._marks}"
        try:
            urllib.request.urlopen(urllib.request.Request(self.endpoint + tag, method="HEAD"), timeout=5).close()
        except (urllib.error.URLError, OSError):
            pass  # a 404 is expected: the marker only has to reach the log
        deadline = time.monotonic() + timeout
        while True:
            requests = self.requests()
            for n in range(len(requests) - 1, -1, -1):
                if requests[n][1] == tag:
                    return n
            if time.monotonic() > deadline:
                raise TimeoutError(f"marker {tag} never reached the moto log")
            time.sleep(0.01)

    def requests(self) -> list[tuple[str, str]]:
        """Every request logged so far, in order (the log is read incrementally)."""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # only whole lines; the rest is read next time
        self._offset += end
        text = data[:end].decode(errors="replace")
        self._seen.extend((m.group(1), m.group(2)) for m in _LINE.finditer(text))
        return self._seen

    def between(self, start: int, end: int) -> dict:
        """Requests from log position `start` to `end`, by kind, not counting markers."""
        counts = {"total": 0, "list": 0, "per_object": 0, "other": 0}
        for method, target in self.requests()[start:end]:
            path = target.split("?", 1)[0]
            if path.startswith("/bench-mark-"):
                continue
            counts["total"] += 1
            _, _, key = path.lstrip("/").partition("/")
            if key:
                counts["per_object"] += 1
            elif method == "GET" and not _BUCKET_SUBRESOURCE.search(target):
                counts["list"] += 1
            else:
                counts["other"] += 1
        return counts

    # -- content ------------------------------------------------------------------------

    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
                config=Config(s3={"addressing_style": "path"}, max_pool_connections=16,
                              request_checksum_calculation="when_required",
                              response_checksum_validation="when_required",
                              retries={"mode": "standard", "max_attempts": 5}),
            )
        return self._client

    def fill(self, bucket: str, corpus: corpus_mod.Corpus) -> None:
        """Create `bucket` holding every corpus file under its relative path."""
        s3 = self.client()
        s3.create_bucket(Bucket=bucket)

        def put(rel: str) -> None:
            with open(corpus.path(rel), "rb") as body:  # streamed: the harness stays small
                s3.put_object(Bucket=bucket, Key=rel, Body=body)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, corpus.files))

    def change(self, bucket: str, corpus: corpus_mod.Corpus, keys: list[str], salt: int) -> dict[str, dict]:
        """Rewrite `keys`, alternately same-size and grown; returns key → {sha256, same_size}.
        The corpus files stay as they were: each change starts from the original bytes."""
        s3 = self.client()
        expected = {}
        for n, key in enumerate(keys):
            same = n % 2 == 0
            data = corpus_mod.changed(corpus.path(key).read_bytes(), same, salt)
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            expected[key] = {"sha256": hashlib.sha256(data).hexdigest(), "same_size": same}
        return expected

    def cpu(self) -> measure.Window:
        return measure.Window(self.pid)
