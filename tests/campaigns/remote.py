"""Rigs for the remote campaigns: S3 (moto) and SharePoint (the fake Graph), each behind a
fault proxy, each with a record of the true content of every object it ever held, and
the checks that follow a job: nothing stored that the origin did not hold, no request
storm, no traceback.

A rig runs jobs through one long-lived `App` per service, as the daemon does (the S3
client, its retry quota, the Graph token and throttle gate all carry over between jobs),
with every log line captured in one buffer.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import ssl
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.campaigns.faultproxy import Exchange, FaultProxy
from tests.fakegraph import FakeGraph
from tests.fakegraph.tls import issue_server_cert
from tests.plugins.s3.conftest import AWS_VARS
from tests.plugins.s3.kit import BUCKET, MotoS3, S3Env, plugins
from tests.plugins.s3.kit import SOURCE as S3_SOURCE
from tests.plugins.sharepoint.conftest import SP

READ_TIMEOUT = 1.0  # the S3 sources' read_timeout during campaigns (60 s by default)
SP_TIMEOUT = "1s"  # the SharePoint `timeout` option's floor
STALL = 2.5  # a stall outlasts both read timeouts
SP_SOURCE = "docs"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def isolate_aws(directory: Path) -> dict[str, str | None]:
    """The environment a campaign's S3 client must see: no AWS config of this machine,
    no instance metadata. Returns the values to set (None: unset)."""
    env: dict[str, str | None] = {var: None for var in AWS_VARS}
    env.update(AWS_CONFIG_FILE=str(directory / "aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(directory / "aws-creds"),
               AWS_EC2_METADATA_DISABLED="true")
    return env


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def environment(values: dict[str, str | None]):
    """Set (or unset, for None) environment variables for the duration."""
    saved = {k: os.environ.get(k) for k in values}
    _set_env(values)
    try:
        yield
    finally:
        _set_env(saved)


@contextlib.contextmanager
def quick(backoff_scale: float = 0.02):
    """Shrink the waits that are not under test: botocore's retry backoff and the
    SharePoint connector's transient backoff are scaled by `backoff_scale` (attempt
    counts are untouched). (S3 sources get a short `read_timeout` in their config.)"""
    from botocore.retries.standard import ExponentialBackoff

    import ingestd_sharepoint.http as sp_http

    original_delay = ExponentialBackoff.delay_amount
    saved = sp_http.TRANSIENT_BACKOFF

    def scaled(self, context):
        return original_delay(self, context) * backoff_scale

    ExponentialBackoff.delay_amount = scaled
    sp_http.TRANSIENT_BACKOFF = saved * backoff_scale
    try:
        yield
    finally:
        ExponentialBackoff.delay_amount = original_delay
        sp_http.TRANSIENT_BACKOFF = saved


class Logs:
    """One buffer for every log line of a campaign; `since(mark)` gives what came after."""

    def __init__(self):
        from ingestd._lib import logs

        self.stream = io.StringIO()
        logs.setup(level="info", fmt="json", stream=self.stream)

    def mark(self) -> int:
        return len(self.stream.getvalue())

    def since(self, mark: int) -> str:
        return self.stream.getvalue()[mark:]


class Side:
    """What both services share: the truth, the app, the checks."""

    name = ""
    source = ""
    # typed codes a job may end with when the only trouble is the network and the service
    REMOTE_CODES = {"throttled", "transient", "integrity"}

    def __init__(self, root: Path, proxy: FaultProxy, config: Path, logs: Logs):
        self.root = root
        self.state = root / "state"
        self.proxy = proxy
        self.config = config
        self.logs = logs
        self.truth: dict[str, bytes] = {}  # identity -> the content it holds now
        self.history: defaultdict[str, set[str]] = defaultdict(set)  # identity -> every sha256 it ever held
        self._app = None
        self._blobs_ok: set[str] = set()

    # -- running ----------------------------------------------------------------------

    def app(self):
        if self._app is None:
            from ingestd.app import App, load_config

            self._app = App(load_config(self.config, plugins()), plugins())
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None
        self.proxy.stop()

    def run(self) -> "Job":
        start, mark = len(self.proxy.snapshot()), self.logs.mark()
        manifest = self.app().run_job(self.source, "cli").to_json()
        return Job(self, manifest, self.proxy.snapshot()[start:], self.logs.since(mark))

    # -- identities -------------------------------------------------------------------

    def doc_id(self, identity: str) -> str:
        from ingestd.store.catalogue import doc_id_for

        return doc_id_for(self.source, identity)

    def record(self, identity: str, data: bytes) -> None:
        self.truth[identity] = data
        self.history[identity].add(sha(data))

    # -- checks -----------------------------------------------------------------------

    def attempts_cap(self, exchange: Exchange) -> int:
        """The most times the retry policy may send one request (method and target)."""
        raise NotImplementedError

    def fetched(self, job: "Job") -> int:
        """How many distinct objects a job downloaded (or tried to)."""
        raise NotImplementedError

    def stored(self) -> dict[str, tuple[str, int, str | None, list[str]]]:
        """doc_id -> (current sha256, size, deleted_at, every version's sha256)."""
        db = sqlite3.connect(self.state / "documents.sqlite")
        try:
            rows = db.execute("SELECT d.doc_id, v.sha256, v.size, d.deleted_at FROM documents d JOIN versions v "
                              "ON v.doc_id = d.doc_id AND v.seq = d.current_seq WHERE d.source = ?",
                              (self.source,)).fetchall()
            versions: defaultdict[str, list[str]] = defaultdict(list)
            for doc_id, digest in db.execute("SELECT v.doc_id, v.sha256 FROM versions v JOIN documents d "
                                             "ON d.doc_id = v.doc_id WHERE d.source = ?", (self.source,)):
                versions[doc_id].append(digest)
        finally:
            db.close()
        return {doc_id: (digest, size, deleted, versions[doc_id]) for doc_id, digest, size, deleted in rows}

    def corrupt_blobs(self) -> list[str]:
        """Blobs whose bytes do not hash to their name (each blob is read once: they are
        immutable once placed)."""
        bad = []
        root = self.state / "blobs" / "sha256"
        for blob in root.rglob("*") if root.exists() else ():
            if not blob.is_file() or blob.name in self._blobs_ok:
                continue
            digest = hashlib.sha256()
            with open(blob, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            if digest.hexdigest() == blob.name:
                self._blobs_ok.add(blob.name)
            else:
                bad.append(blob.name)
        return bad

    def check_store(self) -> int:
        """Every version of every document is content its origin really held, and every
        blob is what its name says. Returns the number of documents checked."""
        known = {self.doc_id(i): i for i in self.history}
        docs = self.stored()
        for doc_id, (digest, _size, _deleted, versions) in docs.items():
            identity = known.get(doc_id)
            assert identity is not None, f"{self.name}: a document for no object the origin ever held: {doc_id}"
            wrong = [v for v in versions if v not in self.history[identity]]
            assert not wrong, f"{self.name}: {identity!r} stored with content it never held: {wrong}"
        bad = self.corrupt_blobs()
        assert not bad, f"{self.name}: blobs whose bytes do not match their name: {bad[:3]}"
        return len(docs)

    def check_converged(self) -> int:
        """The store says exactly what the origin holds now: one live document per
        object, with its current content; everything else tombstoned."""
        docs = self.stored()
        live = {doc_id: v for doc_id, v in docs.items() if v[2] is None}
        want = {self.doc_id(i): sha(data) for i, data in self.truth.items()}
        missing = sorted(set(want) - set(live))
        extra = sorted(set(live) - set(want))
        stale = [d for d in want if d in live and live[d][0] != want[d]]
        assert not missing and not extra and not stale, (
            f"{self.name}: store differs from the origin: {len(missing)} missing, {len(extra)} not tombstoned, "
            f"{len(stale)} stale")
        self.check_store()
        return len(live)


class Job:
    """One finished job, with the traffic and log lines it caused."""

    def __init__(self, side: Side, manifest: dict, exchanges: list[Exchange], log: str):
        self.side = side
        self.manifest = manifest
        self.exchanges = exchanges
        self.log = log

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def codes(self) -> Counter:
        return Counter(e["code"] for e in self.manifest["errors"])

    def items(self) -> list[dict]:
        path = self.side.state / "jobs" / self.manifest["items_file"]
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def attempts(self) -> Counter:
        """Requests per (method, target) in this job."""
        return Counter((e.method, e.target) for e in self.exchanges)

    def check(self, allowed: set[str] | None = None) -> int:
        """The job ended in a terminal state with typed remote codes, no traceback, no
        request sent more often than the retry policy allows, and every item it stored
        is the origin's content. Returns the number of stored items checked."""
        side = self.side
        assert self.status in ("succeeded", "partial", "failed"), self.manifest
        allowed = side.REMOTE_CODES if allowed is None else allowed
        unexpected = {c: n for c, n in self.codes.items() if c not in allowed}
        assert not unexpected, f"{side.name}: unexpected error codes {unexpected}: {self.manifest['errors'][:5]}"
        assert "Traceback" not in self.log, f"{side.name}: a traceback in the log:\n{self.log[-3000:]}"
        by_target = {(e.method, e.target): e for e in self.exchanges}
        storms = {k: n for k, n in self.attempts().items() if n > side.attempts_cap(by_target[k])}
        assert not storms, f"{side.name}: requests sent more often than the retry policy allows: {storms}"
        known = {side.doc_id(i): i for i in side.truth}
        checked = 0
        for item in self.items():
            if item["outcome"] != "ingested":
                continue
            identity = known.get(item["doc_id"])
            assert identity is not None, f"{side.name}: ingested something the origin does not hold: {item}"
            assert item["sha256"] == sha(side.truth[identity]), (
                f"{side.name}: {identity!r} stored with {item['sha256']}, the origin holds "
                f"{sha(side.truth[identity])}")
            checked += 1
        return checked


# -- S3 ----------------------------------------------------------------------------------


class S3Side(Side):
    """A bucket in moto, reached through the fault proxy. Identities are origin URIs."""

    name = "s3"
    source = S3_SOURCE

    def __init__(self, root: Path, moto: MotoS3, logs: Logs, *, stall: float = STALL, **options):
        root.mkdir(parents=True, exist_ok=True)
        self.moto = moto
        proxy = FaultProxy(moto.url, flavour="s3", stall_seconds=stall).start()
        self.env = S3Env(root, moto)
        self.env.write(endpoint_url=proxy.url, **{"read_timeout": READ_TIMEOUT, **options})
        super().__init__(root, proxy, self.env.config, logs)

    def origin(self, key: str) -> str:
        from ingestd_s3.keys import origin_uri

        return origin_uri(BUCKET, key)

    def put(self, key: str, data: bytes) -> None:
        self.moto.put(key, data)
        self.record(self.origin(key), data)

    def delete(self, key: str) -> None:
        self.moto.s3.delete_object(Bucket=BUCKET, Key=key)
        self.truth.pop(self.origin(key), None)

    def keys(self) -> list[str]:
        from ingestd_s3.keys import key_of

        return sorted(key_of(o)[1] for o in self.truth)

    def attempts_cap(self, exchange: Exchange) -> int:
        import ingestd_s3.client as s3_client

        return s3_client.ATTEMPTS  # botocore's total attempts, for a listing page or a GET

    def fetched(self, job: Job) -> int:
        """How many distinct objects the job asked for."""
        return len({e.path for e in job.exchanges if e.method == "GET" and e.path.count("/") >= 2})

    def leaks(self) -> list[str]:
        self.env.outputs.append(self.logs.stream.getvalue())
        return self.env.leaks()


# -- SharePoint ----------------------------------------------------------------------------


def no_delay(fake: FakeGraph) -> None:
    """Make the fake answer without Nagle's delay: it writes headers and body apart, and
    each small download otherwise waits out the client's delayed ACK (~40 ms)."""
    from tests.fakegraph.server import _Handler

    class Handler(_Handler):
        disable_nagle_algorithm = True

    fake._server.RequestHandlerClass = Handler


class FrontedGraph(FakeGraph):
    """The fake Graph, telling clients to come back through `front` (the fault proxy):
    its delta links, download URLs and OpenID endpoints all name the proxy."""

    front: str | None = None

    @property
    def base_url(self) -> str:
        return self.front or FakeGraph.base_url.fget(self)


class GraphSide(Side):
    """A document library in the fake Graph, reached over TLS through the fault proxy
    (which terminates TLS with a certificate from the test CA). Identities are item ids."""

    name = "sharepoint"
    source = SP_SOURCE

    def __init__(self, root: Path, ca, logs: Logs, *, stall: float = STALL, **options):
        for sub in ("graph", "front"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.fake = FrontedGraph(ca, root / "graph")
        self.fake.page_size = 10  # several delta pages per sync, each a request to fault
        self.fake.start()
        no_delay(self.fake)
        cert, key = issue_server_cert(ca, root / "front")
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(cert, key)
        upstream_tls = ssl.create_default_context(cafile=str(ca.cert_path))
        proxy = FaultProxy(self.fake.base_url, flavour="graph", server_tls=server_tls, upstream_tls=upstream_tls,
                           stall_seconds=stall).start()
        self.fake.front = proxy.url
        self.sp = SP(root, self.fake, ca)
        self.sp.write(timeout=SP_TIMEOUT, **options)
        self.drive = self.sp.drive
        self.paths: dict[str, str] = {}  # item id -> path, for live items
        super().__init__(root, proxy, self.sp.config, logs)

    def app(self):
        return self.sp.app()

    def close(self) -> None:
        self.sp.close()
        self.proxy.stop()
        self.fake.stop()

    def put(self, path: str, data: bytes) -> str:
        existing = next((i for i, p in self.paths.items() if p == path), None)
        item = self.drive.edit(path, data) if existing else self.drive.add(path, data)
        self.paths[item] = path
        self.record(item, data)
        return item

    def delete(self, item_id: str) -> None:
        self.drive.delete(self.paths.pop(item_id))
        self.truth.pop(item_id, None)

    def attempts_cap(self, exchange: Exchange) -> int:
        import ingestd_sharepoint.download as sp_download
        import ingestd_sharepoint.http as sp_http

        per_call = 1 + sp_http.MAX_THROTTLED + sp_http.MAX_TRANSIENT + 1  # + one retry with a fresh token
        if exchange.path.endswith("/_layouts/15/download.aspx"):
            return per_call * (1 + sp_download.MAX_RESUMES)
        if exchange.path.endswith("/content"):
            return per_call * 2  # a refused download URL is asked for once more
        return per_call

    def fetched(self, job: Job) -> int:
        """How many distinct items the job asked the download host for the bytes of
        (through a listed URL, or one `/content` redirected to)."""
        return len({parse_qs(urlsplit(e.target).query).get("UniqueId", [""])[0] for e in job.exchanges
                    if e.path.endswith("/_layouts/15/download.aspx")})
