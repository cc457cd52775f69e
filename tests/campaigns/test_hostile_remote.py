"""Hostile names from remote sources: S3 keys uploaded to moto, SharePoint item names
served by the fake Graph, synced for real (hypothesis drives the names).

For every example: nothing is written outside the state directory (an audit hook on
every write of this process, a snapshot of the test's root, the temp directory's new
entries), every file inside it sits where it belongs, no traceback is logged; every name
that can be ingested is, under an origin URI that is plain printable ASCII and decodes
back to the exact key or path; every other one is refused as `invalid_name`.

    pytest tests/campaigns/test_hostile_remote.py                     # short: 100 examples each
    INGESTD_FUZZ_EXAMPLES=10000 pytest tests/campaigns/test_hostile_remote.py -s -p no:cacheprovider

Each test prints a one-line JSON summary (shown with -s). Runs are derandomized unless
INGESTD_FUZZ_SEED is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from ingestd._lib.paths import display
from ingestd.errors import NotFoundError
from tests.campaigns.hostile import Snapshot, WriteWatch, misplaced, s3_keys, sp_names, strays, temp_listing
from tests.campaigns.remote import Logs, environment, isolate_aws, no_delay
from tests.fakegraph import FakeGraph, make_ca
from tests.fakegraph.drive import Node, new_item_id
from tests.plugins.s3.kit import BUCKET, SOURCE, MotoS3, S3Env, plugins
from tests.plugins.sharepoint.conftest import SP

EXAMPLES = int(os.environ.get("INGESTD_FUZZ_EXAMPLES", "100"))
SEED = os.environ.get("INGESTD_FUZZ_SEED")
RECYCLE = 100  # examples per rig: a fresh store, bucket and fake keep every example's cost flat
URI_TEXT = re.compile(r"[\x21-\x7e]+")  # what an origin URI may hold: printable ASCII, no space


def fuzz(test):
    test = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=SEED is None,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))(test)
    return hypothesis_seed(int(SEED))(test) if SEED is not None else test


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Rig:
    """A service, a state directory and a long-lived App, rebuilt every RECYCLE examples;
    with the tallies of the examples run on it."""

    def __init__(self, factory, base: Path):
        self.factory, self.base = factory, base
        self.generation = 0
        self.examples = 0
        self.seconds = 0.0
        self.stats: Counter = Counter()
        self.current = None

    @contextlib.contextmanager
    def example(self):
        if self.current is None or self.examples % RECYCLE == 0:
            self.close()
            self.generation += 1
            self.current = self.factory(self.base / f"gen{self.generation}")
        started = time.monotonic()
        try:
            yield self.current
        finally:
            self.examples += 1
            self.seconds += time.monotonic() - started

    def close(self):
        if self.current is not None:
            self.current.close()
            self.current = None

    def summary(self, name: str) -> str:
        return json.dumps({"campaign": f"hostile-names-{name}", "examples": self.examples,
                           "seconds": round(self.seconds, 1), **dict(sorted(self.stats.items()))}, ensure_ascii=True)


def guarded_job(env_root: Path, state: Path, names: list[str], run):
    """Run a job with every write watched, check where it wrote; return its manifest."""
    before, snap = temp_listing(), Snapshot(env_root, state)
    with WriteWatch() as watch:
        manifest = run()
    outside = watch.outside(state)
    assert not outside, f"written outside the state directory: {outside[:5]}"
    assert watch.writes, "the write watch saw nothing: it is not in the path"
    assert not snap.changes(), f"changed beside the state directory: {snap.changes()[:5]}"
    assert not misplaced(state), f"files where none belong in the state directory: {misplaced(state)[:5]}"
    assert not strays(before, names), f"new temp entries named after the input: {strays(before, names)}"
    return manifest


def decoded_s3(uri: str) -> str:
    """The key an origin URI names, decoded independently of the connector."""
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == ("s3", BUCKET, "", ""), uri
    assert all(seg not in (".", "..") for seg in parts.path.split("/")), f"a raw dot segment: {uri}"
    return unquote(parts.path[1:], errors="strict")


# -- S3 --------------------------------------------------------------------------------------


class S3World:
    def __init__(self, root: Path):
        from ingestd.app import App, load_config

        root.mkdir(parents=True)
        self.moto = MotoS3()
        self.moto.s3.create_bucket(Bucket=BUCKET)
        self.env = S3Env(root, self.moto)
        self.env.write(endpoint_url=self.moto.url)
        self.app = App(load_config(self.env.config, plugins()), plugins())
        self.bucket: dict[str, bytes] = {}  # every key uploaded so far, with its content
        self.n = 0

    def close(self):
        self.app.close()
        self.moto.stop()


def s3_outcome(key: str, data: bytes) -> str:
    """What the README promises for a key: zero-byte folder markers are skipped, keys
    that name no file (the last name, a trailing `/` aside, empty, `.` or `..`) are
    `invalid_name`, every other key (a marker holding bytes too) is ingested."""
    if not data and (key.endswith("/") or key.endswith("_$folder$")):
        return "marker"
    return "invalid_name" if key.rstrip("/").rsplit("/", 1)[-1] in ("", ".", "..") else "ingested"


@pytest.fixture
def s3_rig(tmp_path):
    """Once per test (hypothesis runs all its examples inside one call)."""
    with environment(isolate_aws(tmp_path)):
        rig = Rig(S3World, tmp_path)
        yield rig
        rig.close()
        print("\n" + rig.summary("s3"))


S3_EXAMPLE = [("../../etc/passwd", False), ("/abs/x", False), ("a/..", False), ("..", False), ("e/", True),
              ("d/", False), ("x_$folder$", False), ("%2e%2e/%2F", False), ("ctl\x00\x01\x7f", False),
              ("\u202eexe.txt", False), ("sp ace+?#&=.txt", False)]


@fuzz
@example(S3_EXAMPLE)
@given(st.lists(st.tuples(s3_keys(), st.booleans()), min_size=1, max_size=4, unique_by=lambda e: e[0]))
def test_s3_keys_from_a_hostile_bucket(s3_rig, entries):
    with s3_rig.example() as world:
        s3_example(world, s3_rig.stats, entries)


def s3_example(world: S3World, stats: Counter, entries) -> None:
    logs = Logs()
    world.n += 1
    bodies = {}  # this example's uploads; earlier ones stay in the bucket, unchanged
    for key, empty in entries:
        data = b"" if empty and s3_outcome(key, b"") == "marker" else f"{world.n}:".encode() + key.encode("utf-8")
        world.moto.put(key, data)
        bodies[key] = world.bucket[key] = data

    manifest = guarded_job(world.env.root, world.env.state, list(bodies),
                           lambda: world.app.run_job(SOURCE, "cli").to_json())
    log = logs.stream.getvalue()
    assert "Traceback" not in log, log[-3000:]
    assert manifest["status"] == "succeeded", manifest["errors"]

    expected = {key: s3_outcome(key, data) for key, data in bodies.items()}
    refused = {}
    for error in manifest["errors"]:
        assert URI_TEXT.fullmatch(error["item"]), f"origin URI not plain ASCII: {error['item']!r}"
        refused[decoded_s3(error["item"])] = error["code"]
    # a key that names no file is refused by the job that finds it new or changed, then remembered
    assert refused == {k: "invalid_name" for k, v in bodies.items() if s3_outcome(k, v) == "invalid_name"}
    items = world.env.items(manifest)
    ingested = {}
    for item in items:
        if item["outcome"] == "ingested":
            assert URI_TEXT.fullmatch(item["origin_uri"]), f"origin URI not plain ASCII: {item['origin_uri']!r}"
            ingested[decoded_s3(item["origin_uri"])] = item
    assert set(ingested) == {k for k, v in expected.items() if v == "ingested"}
    from ingestd.store.catalogue import Store

    store = Store(world.env.state)
    try:
        for key, item in ingested.items():
            doc = store.get(item["doc_id"])
            assert doc.origin_uri == item["origin_uri"] and doc.metadata["key"] == key
            assert doc.sha256 == item["sha256"] == sha(bodies[key])
    finally:
        store.close()
    stats.update({"keys": len(bodies), "ingested": len(ingested),
                  "invalid_name": sum(1 for v in expected.values() if v == "invalid_name"),
                  "markers_skipped": sum(1 for v in expected.values() if v == "marker"),
                  "control_char_keys": sum(1 for k in bodies if any(ord(c) < 32 or ord(c) == 127 for c in k)),
                  "dot_segment_keys": sum(1 for k in bodies if {".", ".."} & set(k.split("/")))})
    stats["longest_key_bytes"] = max(stats["longest_key_bytes"], *(len(k.encode()) for k in bodies))


# -- SharePoint --------------------------------------------------------------------------------


class SPWorld:
    def __init__(self, root: Path):
        root.mkdir(parents=True)
        self.ca = make_ca(root)
        self.fake = FakeGraph(self.ca, root).start()
        no_delay(self.fake)
        self.fake.page_size = 200
        self.sp = SP(root, self.fake, self.ca)
        self.drive = self.sp.drive
        self.n = 0

    def add(self, parent: str, name: str, kind: str, content: bytes = b"") -> str:
        """An item with any name at all: straight into the fake, as a hostile Graph serves it."""
        with self.drive.lock:
            node = Node(id=new_item_id(), name=name, parent=parent, kind=kind, content=content)
            self.drive.nodes[node.id] = node
            self.drive._changed(node)
            return node.id

    def close(self):
        self.sp.close()
        self.fake.stop()


def usable(name: str) -> bool:
    """A name that can be one component of a path: SharePoint never sends another kind."""
    return bool(name) and name not in (".", "..") and "/" not in name


@pytest.fixture
def sp_rig(tmp_path):
    rig = Rig(SPWorld, tmp_path)
    yield rig
    rig.close()
    print("\n" + rig.summary("sharepoint"))


SP_EXAMPLE = [([], "..", True), (["a/b"], "x.txt", False), ([".."], "passwd", True), ([], "", False),
              (["ok"], "ctl\x00\x01\n.txt", False), ([], "%2F..%2F", True), (["\u202e"], "e\u0301.txt", False)]


@fuzz
@example(SP_EXAMPLE)
@given(st.lists(st.tuples(st.lists(sp_names(), max_size=3), sp_names(), st.booleans()), min_size=1, max_size=4))
def test_sharepoint_names_from_a_hostile_graph(sp_rig, entries):
    with sp_rig.example() as world:
        sp_example(world, sp_rig.stats, entries)


def sp_example(world: SPWorld, stats: Counter, entries) -> None:
    from ingestd.store.catalogue import Store, doc_id_for

    logs = Logs()
    world.n += 1
    folder = None
    items = {}  # item id -> (path components, content)
    for i, (folders, name, at_root) in enumerate(entries):
        components, parent = [], world.drive.root_id
        if not at_root:
            folder = folder or world.add(world.drive.root_id, f"ex{world.n}", "folder")
            components, parent = [f"ex{world.n}"], folder
        for sub in folders:
            parent = world.add(parent, sub, "folder")
            components.append(sub)
        content = f"{world.n}.{i}:".encode() + name.encode("utf-8")
        items[world.add(parent, name, "file", content)] = (components + [name], content)

    names = [c for comps, _ in items.values() for c in comps]
    manifest = guarded_job(world.sp.root, world.sp.state, names, lambda: world.sp.run().to_json())
    log = logs.stream.getvalue()
    assert "Traceback" not in log, log[-3000:]
    assert manifest["status"] == "succeeded", manifest["errors"]

    refused = {e["message"].split(":", 1)[0].removeprefix("item "): e["code"] for e in manifest["errors"]}
    want_refused = {i for i, (comps, _) in items.items() if not all(usable(c) for c in comps)}
    assert refused == {i: "invalid_name" for i in want_refused}
    site_path = unquote(urlsplit(world.sp.site.web_url).path)
    store = Store(world.sp.state)
    try:
        for item_id, (components, content) in items.items():
            if item_id in want_refused:
                with pytest.raises(NotFoundError):
                    store.get(doc_id_for("docs", item_id))
                continue
            doc = store.get(doc_id_for("docs", item_id))
            path = "/".join(components)
            assert URI_TEXT.fullmatch(doc.origin_uri), f"origin URI not plain ASCII: {doc.origin_uri!r}"
            assert doc.origin_uri == world.drive.web_url(world.drive.nodes[item_id])
            assert unquote(urlsplit(doc.origin_uri).path, errors="strict") == f"{site_path}/Shared Documents/{path}"
            assert doc.metadata["item_id"] == item_id and doc.metadata["path"] == display(path)
            assert doc.sha256 == sha(content)
    finally:
        store.close()
    stats.update({"items": len(items), "ingested": len(items) - len(want_refused),
                  "invalid_name": len(want_refused), "folders": len(names) - len(items)})
    stats["control_char_names"] += sum(1 for c in names if any(ord(ch) < 32 or ord(ch) == 127 for ch in c))


# -- the watch itself, and the SharePoint name fix -----------------------------------------------


def test_the_write_watch_sees_writes_outside_the_state_directory(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    with WriteWatch() as watch:
        (state / "inside").write_bytes(b"x")
        os.rename(state / "inside", tmp_path / "escaped")
        os.mkdir(state / ".." / "made")
    assert [e for e, _ in watch.outside(state)] == ["os.rename", "os.mkdir"]
    assert not WriteWatch._armed


@pytest.fixture
def sp_world(tmp_path):
    world = SPWorld(tmp_path / "sp")
    yield world
    world.close()


def test_sharepoint_a_slash_in_a_name_cannot_smuggle_a_file_into_the_synced_folder(sp_world):
    """Regression: an item at the library root named `Contracts/evil.pdf` got the path
    `Contracts/evil.pdf`, so a source scoped to folder `Contracts` ingested it."""
    world = sp_world
    world.sp.write(folder="Contracts")
    contracts = world.add(world.drive.root_id, "Contracts", "folder")
    good = world.add(contracts, "real.pdf", "file", b"%PDF real")
    smuggled = world.add(world.drive.root_id, "Contracts/evil.pdf", "file", b"%PDF evil")
    manifest = world.sp.run()
    assert manifest.status == "succeeded" and manifest.counters.ingested == 1
    assert [(e.code, e.message.split(":")[0]) for e in manifest.errors] == [("invalid_name", f"item {smuggled}")]
    from ingestd.store.catalogue import Store, doc_id_for

    store = Store(world.sp.state)
    try:
        assert store.get(doc_id_for("docs", good)).metadata["path"] == "Contracts/real.pdf"
        with pytest.raises(NotFoundError):
            store.get(doc_id_for("docs", smuggled))
    finally:
        store.close()


def test_sharepoint_unusable_names_are_refused_not_silently_dropped(sp_world):
    """Regression: a file with an empty name was never ingested and never reported; one
    named `..` was ingested under the path `A/..`."""
    world = sp_world
    folder = world.add(world.drive.root_id, "A", "folder")
    empty = world.add(folder, "", "file", b"no name")
    dots = world.add(folder, "..", "file", b"dot dot")
    world.add(folder, "fine.txt", "file", b"fine")
    world.add(folder, "kept.txt", "file", b"kept")
    manifest = world.sp.run()
    assert manifest.status == "succeeded"
    assert (manifest.counters.ingested, manifest.counters.skipped) == (2, 2)
    assert sorted((e.code, e.message.split(":")[0]) for e in manifest.errors) == sorted(
        [("invalid_name", f"item {empty}"), ("invalid_name", f"item {dots}")])
    # a delivered file renamed to an unusable name leaves the store like a file moved away
    world.drive.rename("A/fine.txt", "..")
    again = world.sp.run()
    assert again.status == "succeeded" and again.counters.deleted == 1 and again.counters.skipped == 1
