"""The document hand-off over real HTTP against a daemon process: `GET /documents`,
`GET /documents/{id}/content` and the change feed `GET /changes` (issue 17's contract)."""

from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import unquote

import pytest

from tests.support.helpers import wait_for, write_config
from tests.integration.test_api_support import Client, Setup, trigger, wait_job

HOSTILE = 'quo"te; filename=evil.sh\nline ‮txt.exe ü.txt'  # quote, separator, newline, RLO, non-ASCII


class Feed:
    """A daemon with a watched inbox and `fx`, a scheduled source whose deletions the test
    controls (the test plugin reports as deleted every name in its `gone` file)."""

    def __init__(self, root, token: bool = False, **daemon):
        self.setup = Setup(root)
        self.data, self.gone = root / "fx-data", root / "fx-gone"
        self.data.mkdir(exist_ok=True)
        self.http = {"listen": "127.0.0.1:0"}
        if token:
            self.setup.token = secrets.token_hex(24)
            self.setup.token_file.write_text(self.setup.token + "\n")
            self.setup.token_file.chmod(0o600)
            self.http["token_file"] = str(self.setup.token_file)
        self.write(**daemon)

    def write(self, **daemon) -> None:
        write_config(self.setup.config, daemon={"state_dir": "state", "log_format": "json", "shutdown_timeout": 10,
                                                **daemon},
                     http=self.http,
                     sources=[{"name": "inbox", "kind": "local", "path": "inbox", "settle_seconds": 0.2},
                              {"name": "fx", "kind": "fixture", "folder": str(self.data), "gone": str(self.gone),
                               "every": "1h"}])

    daemon = None

    def start(self):
        """Start the daemon (the same one again after a stop)."""
        self.daemon = self.setup.start(self.daemon or self.setup.daemon(plugins=True))
        self.client = Client(self.daemon.base_url, self.setup.token)
        wait_for(lambda: self.client.get("/jobs?source=fx&status=succeeded").json["jobs"], timeout=30,
                 message="fx's first scheduled run (at start)")
        return self

    def run_fx(self) -> dict:
        return wait_job(self.client, trigger(self.client, "fx").json["job_id"])

    def drop(self, name: str, data: bytes) -> None:
        (self.setup.inbox / name).write_bytes(data)

    def changes(self, after: str | None = None, **query) -> dict:
        params = "&".join(f"{k}={v}" for k, v in {"after": after, **query}.items() if v is not None)
        resp = self.client.get("/changes?" + params)
        assert resp.status == 200, resp.data
        return resp.json

    def settled(self, count: int) -> list[dict]:
        """Every change, once there are at least `count`."""
        return wait_for(lambda: (c := self.changes(limit=1000)["changes"]) and len(c) >= count and c,
                        timeout=30, message=f"{count} changes")

    def close(self) -> None:
        self.client.close()
        self.setup.close()


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    """fx stores a.txt and b.txt, then a.txt changes and b.txt is deleted: a.txt has two
    versions, b.txt is tombstoned; the inbox adds c.txt and a hostile name."""
    f = Feed(tmp_path_factory.mktemp("feed")).start()
    try:
        (f.data / "a.txt").write_bytes(b"alpha, first version\n")
        (f.data / "b.txt").write_bytes(b"bravo\n")
        f.run_fx()
        (f.data / "a.txt").write_bytes(b"alpha, second version\n")
        (f.data / "b.txt").unlink()
        f.gone.write_text("b.txt\n")
        f.run_fx()
        f.drop("c.txt", b"charlie\n")
        f.drop(HOSTILE, b"hostile\n")
        f.settled(6)
        yield f
        assert f.daemon.stop() == 0
    finally:
        f.close()


def by_origin(docs) -> dict[str, dict]:
    return {unquote(d["origin_uri"].rsplit("/", 1)[1]): d for d in docs}


def test_changes_tell_the_whole_story_in_order(feed):
    changes = feed.changes()["changes"]
    story = [(c["type"], unquote(c["origin_uri"].rsplit("/", 1)[1]), c["version"]) for c in changes]
    assert story[:4] == [("stored", "a.txt", 1), ("stored", "b.txt", 1), ("updated", "a.txt", 2),
                         ("deleted", "b.txt", 1)]
    assert sorted(story[4:]) == sorted([("stored", "c.txt", 1), ("stored", HOSTILE, 1)])
    assert [c["cursor"] for c in changes] == [f"{n:016d}" for n in range(1, 7)]
    for c in changes:
        assert set(c) == {"cursor", "type", "doc_id", "source", "origin_uri", "version", "sha256", "size", "mime",
                          "job_id", "at"}
    page = feed.changes(limit=2)
    assert [c["cursor"] for c in page["changes"]] == ["0000000000000001", "0000000000000002"]
    assert page["next_after"] == "0000000000000002"
    rest = feed.changes(after=page["next_after"])
    assert rest["changes"] == changes[2:] and rest["next_after"] == "0000000000000006"
    assert feed.changes(after="0000000000000006") == {"changes": [], "next_after": "0000000000000006"}


def test_listing_is_stable_pages_with_the_feed_cursor_carried(feed):
    first = feed.client.get("/documents?limit=2").json
    assert first["next_after"] == "0000000000000006" and first["links"]["next"]
    docs, path = [], "/documents?limit=2"
    while path:
        body = feed.client.get(path).json
        assert body["next_after"] == first["next_after"], "every page carries the first page's feed cursor"
        docs += body["documents"]
        path = body["links"]["next"]
    assert [d["doc_id"] for d in docs] == sorted(d["doc_id"] for d in docs)
    named = by_origin(docs)
    assert set(named) == {"a.txt", "c.txt", HOSTILE}, "a deleted document is not listed by default"
    a = named["a.txt"]
    assert (a["version"], a["kind"], a["source"]) == (2, "content", "fx") and "versions" not in a
    assert a["links"]["content"] == f"/documents/{a['doc_id']}/content?version=2"
    every = by_origin(feed.client.get("/documents?include_deleted=true").json["documents"])
    assert every["b.txt"]["deleted_at"] and every["b.txt"]["deleted_job"]
    assert set(by_origin(feed.client.get("/documents?source=inbox").json["documents"])) == {"c.txt", HOSTILE}
    assert feed.client.get("/documents?source=nowhere").json["documents"] == []


def test_content_streams_each_version_with_its_headers(feed):
    docs = by_origin(feed.client.get("/documents?include_deleted=true").json["documents"])
    a = docs["a.txt"]
    r = feed.client.get(f"/documents/{a['doc_id']}/content")
    assert r.status == 200 and r.data == b"alpha, second version\n"
    assert r.headers["Content-Type"] == "text/plain" and r.headers["Content-Length"] == str(len(r.data))
    assert r.headers["ETag"] == f'"{a["sha256"]}"'
    assert r.headers["Content-Disposition"] == "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt"
    old = feed.client.get(f"/documents/{a['doc_id']}/content?version=1")
    assert old.status == 200 and old.data == b"alpha, first version\n" and old.headers["ETag"] != r.headers["ETag"]
    assert feed.client.get(f"/documents/{a['doc_id']}/content?version=3").error(404, "not_found")
    b = docs["b.txt"]
    gone = feed.client.get(f"/documents/{b['doc_id']}/content").error(410, "deleted")
    assert "?version=" in gone["message"]
    assert feed.client.get(f"/documents/{b['doc_id']}/content?version=1").data == b"bravo\n"
    assert feed.client.get(f"/documents/{'0' * 32}/content").error(404, "not_found")
    assert feed.client.get("/documents/..%2F..%2Fetc%2Fpasswd/content").error(400, "invalid_id")
    for bad in ("version=0", "version=x", "version=1&version=2", "other=1"):
        feed.client.get(f"/documents/{a['doc_id']}/content?{bad}").error(400, "invalid_query")


def test_a_hostile_file_name_cannot_break_the_disposition_header(feed):
    doc = by_origin(feed.client.get("/documents").json["documents"])[HOSTILE]
    r = feed.client.get(f"/documents/{doc['doc_id']}/content")
    assert r.status == 200 and r.data == b"hostile\n"
    value = r.headers["Content-Disposition"]
    assert "\n" not in value and "\r" not in value and value.count('"') == 2
    ascii_name = value.split('filename="', 1)[1].split('"', 1)[0]
    assert ascii_name.isascii() and ";" not in ascii_name and "/" not in ascii_name
    encoded = value.rsplit("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == HOSTILE.replace("\n", "").replace("\u202e", "")
    assert r.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_conditionals_ranges_and_head(feed):
    a = by_origin(feed.client.get("/documents").json["documents"])["a.txt"]
    url, etag = f"/documents/{a['doc_id']}/content", f'"{a["sha256"]}"'
    r = feed.client.get(url, headers={"If-None-Match": etag})
    assert r.status == 304 and r.data == b"" and r.headers["ETag"] == etag
    assert feed.client.get(url, headers={"If-None-Match": '"other"'}).status == 200
    r = feed.client.get(url, headers={"Range": "bytes=7-12"})
    assert r.status == 206 and r.data == b"second" and r.headers["Content-Range"] == "bytes 7-12/22"
    r = feed.client.get(url, headers={"Range": "bytes=-8"})
    assert r.status == 206 and r.data == b"version\n"
    r = feed.client.get(url, headers={"Range": "bytes=100-"})
    assert r.error(416, "range_not_satisfiable") and r.headers["Content-Range"] == "bytes */22"
    r = feed.client.call("HEAD", url)
    assert r.status == 200 and r.data == b"" and r.headers["Content-Length"] == "22"
    assert feed.client.get(url).data == b"alpha, second version\n"  # the connection is still in step


def test_a_long_poll_is_answered_when_a_change_commits(feed):
    head = feed.changes()["next_after"]
    got: dict = {}

    def poll():
        started = time.monotonic()
        got["body"] = Client(feed.daemon.base_url, timeout=60).get(f"/changes?after={head}&wait=30").json
        got["took"] = time.monotonic() - started

    t = threading.Thread(target=poll)
    t.start()
    wait_for(lambda: held(feed.client) == 1, timeout=10, message="the long-poll to be held")
    feed.drop("late.txt", b"late\n")
    t.join(60)
    assert not t.is_alive()
    [change] = got["body"]["changes"]
    assert change["type"] == "stored" and change["origin_uri"].endswith("/late.txt")
    assert got["body"]["next_after"] == change["cursor"] > head
    assert got["took"] < 30, "answered by the wait running out, not by the commit"


def held(client: Client) -> int:
    """Long-polls the daemon holds right now (its gauge)."""
    text = client.get("/metrics").data.decode()
    return int(float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("ingestd_http_requests_held "))))


def test_a_long_poll_with_nothing_new_answers_empty_when_its_wait_is_over(feed):
    head = feed.changes()["next_after"]
    started = time.monotonic()
    body = feed.client.get(f"/changes?after={head}&wait=0.5").json
    assert body == {"changes": [], "next_after": head} and time.monotonic() - started >= 0.5
    held = [e for e in feed.daemon.log_events() if e.get("path") == "/changes" and e.get("held_ms")]
    assert held and held[-1]["level"] == "info", "a long-poll's wait is logged as held, not as a slow request"


def test_bad_change_queries(feed):
    for query in ("after=12", "after=..%2F..", "limit=0", "limit=1001", "wait=31", "wait=-1", "wait=x", "since=1"):
        feed.client.get(f"/changes?{query}").error(400, "invalid_query")
    ahead = feed.client.get("/changes?after=9999999999999999").error(410, "cursor_expired")
    assert ahead["resync"] == "/documents" and "ahead of this store" in ahead["message"]
    for query in ("limit=501", "after=x", "include_deleted=maybe", "next_after=1"):
        feed.client.get(f"/documents?{query}").error(400, "invalid_query")


def test_openapi_documents_the_hand_off(feed):
    doc = feed.client.get("/openapi.json").json
    assert {"/documents", "/documents/{doc_id}/content", "/changes"} <= set(doc["paths"])
    content = doc["paths"]["/documents/{doc_id}/content"]["get"]["responses"]
    assert set(content) >= {"200", "206", "304", "404", "410", "416"}
    assert "410" in doc["paths"]["/changes"]["get"]["responses"]
    schemas = doc["components"]["schemas"]
    change_type = schemas["FeedChange"]["properties"]["type"]  # every type known, none closed off
    assert change_type["examples"] == ["stored", "updated", "deleted", "restored", "acl_changed"]
    assert "enum" not in change_type and "skip" in change_type["description"]
    for name in ("Version", "DocumentSummary", "DocumentResponse"):
        assert schemas[name]["properties"]["kind"]["examples"] == ["content", "metadata", "permissions"], name


def test_retention_expires_old_cursors_and_listing_then_following_resyncs(tmp_path):
    """A consumer that was away longer than `change_retention` gets 410 and resyncs by
    listing, then following from the listing's cursor; cursors go on across restarts."""
    f = Feed(tmp_path).start()
    try:
        f.drop("one.txt", b"1")
        f.drop("two.txt", b"2")
        seen = f.settled(2)
        assert f.daemon.stop() == 0
        f.write(change_retention="1ms")  # housekeeping at start removes every change made before it
        f.start()
        gone = f.client.get(f"/changes?after={seen[0]['cursor']}").error(410, "cursor_expired")
        assert gone["oldest"] == "0000000000000002" and gone["resync"] == "/documents"
        f.client.get("/changes").error(410, "cursor_expired")  # from the first change: gone too
        listing = f.client.get("/documents").json
        assert len(listing["documents"]) == 2 and listing["next_after"] == "0000000000000002"
        f.drop("three.txt", b"3")
        body = wait_for(lambda: f.changes(after=listing["next_after"], wait=10)["changes"], timeout=30)
        assert [c["cursor"] for c in body] == ["0000000000000003"], "the counter went on across the restart"
    finally:
        f.close()


def test_held_long_polls_end_when_the_daemon_stops(tmp_path):
    f = Feed(tmp_path).start()
    try:
        results = []

        def poll():
            results.append(Client(f.daemon.base_url, timeout=60).get("/changes?wait=30").json)

        threads = [threading.Thread(target=poll) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: held(f.client) == 3, timeout=10, message="three held long-polls")
        started = time.monotonic()
        assert f.daemon.stop() == 0
        for t in threads:
            t.join(60)
        assert len(results) == 3 and all(r == {"changes": [], "next_after": "0000000000000000"} for r in results)
        assert time.monotonic() - started < 30, "the stop waited for the long-polls' wait to run out"
    finally:
        f.close()


def test_gapless_while_several_sources_commit_at_once(tmp_path):
    """Four drop folders, four workers, files arriving in all of them while a consumer
    follows the feed with long-polls: no cursor at or below one it has seen ever shows up
    later, and in the end it has seen every change exactly once."""
    folders = ["inbox", "north", "south", "east"]
    for name in folders:
        (tmp_path / name).mkdir(exist_ok=True)
    config = write_config(tmp_path / "ingestd.toml",
                          daemon={"state_dir": "state", "log_format": "json", "workers": 4, "shutdown_timeout": 10},
                          http={"listen": "127.0.0.1:0"},
                          sources=[{"name": n, "kind": "local", "path": n, "settle_seconds": 0.05, "batch_max": 7}
                                   for n in folders])
    setup = Setup(tmp_path)
    setup.config = config
    d = setup.start(setup.daemon())
    client = Client(d.base_url, timeout=60)
    seen: list[int] = []
    late: list[tuple[int, int]] = []
    writing = threading.Event()
    writing.set()

    def follow():
        after, follower = None, Client(d.base_url, timeout=60)
        while True:
            body = follower.get("/changes?limit=50&wait=2" + (f"&after={after}" if after else "")).json
            for c in body["changes"]:
                n = int(c["cursor"])
                if seen and n <= seen[-1]:
                    late.append((seen[-1], n))
                seen.append(n)
            after = body["next_after"]
            if not body["changes"] and not writing.is_set():
                return

    def write(folder: str):
        for i in range(60):
            (tmp_path / folder / f"f{i:03d}.txt").write_bytes(f"{folder} {i}\n".encode())
            if i % 10 == 9:
                time.sleep(0.05)  # the experiment: bursts that overlap in all four folders

    follower = threading.Thread(target=follow)
    follower.start()
    writers = [threading.Thread(target=write, args=(f,)) for f in folders]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    try:
        wait_for(lambda: len(client.get("/documents?limit=500").json["documents"]) == 240, timeout=120,
                 message="all 240 files stored")
        writing.clear()
        follower.join(60)
        assert late == [], f"cursors seen after a later one: {late[:5]}"
        assert seen == list(range(1, 241))
        jobs = [j for s in folders for j in client.get(f"/jobs?source={s}&limit=500").json["jobs"]]
        assert len(jobs) > 8, "the sources committed in a few big jobs: no overlap was tried"
        assert d.stop() == 0
    finally:
        writing.clear()
        client.close()
        setup.close()
