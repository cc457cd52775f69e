"""A user's installation made by an older release, unpacked here and made runnable.

`Installation(tag, dest, moto)` unpacks `fixtures/<tag>.tar.gz` into `dest`, rebuilds the
remotes it synced with (moto's buckets, the fake Graph's drive) and then makes exactly
these changes, all of them because the copy lives at another path and talks to services
on other ports than the ones it was made with; nothing else in the state is touched:

1. `ingestd.toml`: the S3 `endpoint_url` and the SharePoint `graph_url` and
   `authority_url` name this run's moto and fake Graph (the generation run's ports are
   recorded in `recorded/about.json`). All paths in the file are relative already.
2. `graph-ca.pem`: this run's test CA (the fake's certificate is made per run).
3. `state/sources/<sharepoint source>/sharepoint.sqlite`, table `meta`: the generation
   run's Graph origin (`https://127.0.0.1:<port>`) becomes this run's in the three rows
   that hold it: the saved delta link, the resolved-ids cache key and the scope the link
   was made for. The release follows a delta link only on `graph_url`'s origin and
   re-lists when the scope changes; a real tenant's `graph_url` never changes, the
   fake's port does.
4. `state/sources/<keep source>/kept.sqlite`, column `ino`: each remembered file's inode
   becomes the inode of the same file unpacked here. An archive cannot carry inode
   numbers; a user who upgrades keeps the same files, with the same inodes.

Left as they are, on purpose: local documents' origins name the folder the fixture was
made in (`file:///tmp/ingestd-…/drop/…`), which does not exist here: stored data is data,
and nothing a test checks depends on the drop folders' absolute path (kept-file memory
is keyed by the path relative to the drop folder). Answers that hold a path computed at
read time from `state_dir` (the CLI's `blob_path`) are compared relative to it (`here`).

`Upgraded(installation)` is the copy after this checkout's daemon first started on it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import tomllib
from pathlib import Path

from tests.fakegraph import FakeGraph, make_ca
from tests.support.helpers import ROOT, run_cli
from tests.support.procs import Daemon

from . import archive
from .kit import all_jobs, mark, trigger, wait_jobs, wait_schedule_fired
from .release import clean_env
from .remotes import restore_graph, restore_s3

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REMOTE_SOURCES = {"bucket": 1, "late": 1, "legal": 1}  # each runs a second after the daemon starts


class Installation:
    def __init__(self, tag: str, dest: Path, moto):
        self.tag = tag
        self.root = archive.unpack(FIXTURES / f"{tag}.tar.gz", dest / "installation")
        self.work = dest
        self.config = self.root / "ingestd.toml"
        self.state = self.root / "state"
        recorded = self.root / "recorded"
        self.about = json.loads((recorded / "about.json").read_text())
        self.answers = json.loads((recorded / "answers.json").read_text())
        self.moto = moto
        moto.reset()
        restore_s3(moto, json.loads((recorded / "s3.json").read_text()))
        graph = json.loads((recorded / "graph.json").read_text())
        self.fake = FakeGraph(make_ca(dest), dest, tenant=graph["tenant"]).start()
        restore_graph(self.fake, graph)
        self.sources = {s["name"]: s for s in tomllib.loads(self.config.read_text())["sources"]}
        self.saved_delta_links: dict[str, str] = {}  # source → its delta link, as this run's fake serves it
        self._relocate()
        moto.log.clear()
        self.env = clean_env(dest)
        self.daemons: list[Daemon] = []

    # -- making the copy runnable here (the module docstring lists every change) -------

    def _relocate(self) -> None:
        was = self.about["origins"]
        text = self.config.read_text()
        for old, new in ((was["s3"], self.moto.url), (was["graph"], self.fake.base_url)):
            if old not in text:
                raise AssertionError(f"{self.config} does not name {old}; relocation would be a guess")
            text = text.replace(old, new)
        self.config.write_text(text)
        (self.root / "graph-ca.pem").write_bytes(self.fake.ca.cert_path.read_bytes())
        for name, source in self.sources.items():
            if source["kind"] == "sharepoint":
                self._relocate_graph(name, was["graph"])
            elif source["kind"] == "local" and source.get("after") == "keep":
                self._relocate_kept(name, self.root / source["path"])

    def _relocate_graph(self, name: str, old: str) -> None:
        db = sqlite3.connect(self.state / "sources" / name / "sharepoint.sqlite")
        try:
            with db:
                db.execute("UPDATE meta SET value = replace(value, ?, ?)", (old, self.fake.base_url))
            self.saved_delta_links[name] = db.execute("SELECT value FROM meta WHERE key='delta_link'").fetchone()[0]
        finally:
            db.close()

    def _relocate_kept(self, name: str, folder: Path) -> None:
        db = sqlite3.connect(self.state / "sources" / name / "kept.sqlite")
        try:
            with db:
                for (path,) in db.execute("SELECT path FROM kept").fetchall():
                    ino = os.lstat(folder / os.fsdecode(path)).st_ino
                    db.execute("UPDATE kept SET ino=? WHERE path=?", (ino, path))
        finally:
            db.close()

    # -- the current code on the copy ----------------------------------------------------

    def daemon(self) -> Daemon:
        """`ingestd run` of this checkout on the copy (not started)."""
        workdir = self.work / f"daemon-{len(self.daemons)}"
        workdir.mkdir()
        d = Daemon(self.config, self.state, workdir)
        d.env = {**self.env, "NOTIFY_SOCKET": d.notify.path, "PYTHONPATH": str(ROOT)}
        self.daemons.append(d)
        return d

    def cli(self, *args: str):
        return run_cli(*args, "--config", self.config)

    def cli_json(self, *args: str):
        result = self.cli(*args, "--json")
        assert result.returncode == 0 and "Traceback" not in result.stderr, (args, result.stderr)
        return json.loads(result.stdout)

    def close(self) -> None:
        for d in self.daemons:
            d.close()
        self.fake.stop()

    # -- comparing with what the release answered ---------------------------------------

    def here(self, expected):
        """`expected` as it reads from this copy: paths under the generation run's
        `state_dir` (computed when read, like `blob_path`) moved to this copy's."""
        old = self.about["root"].rstrip("/") + "/state/"
        new = str(self.state) + "/"
        if isinstance(expected, dict):
            return {k: self.here(v) for k, v in expected.items()}
        if isinstance(expected, list):
            return [self.here(v) for v in expected]
        if isinstance(expected, str) and expected.startswith(old):
            return new + expected[len(old):]
        return expected


class Upgraded:
    """An installation after this checkout's daemon started on it: its start-up runs (the
    remote sources' first scheduled syncs, the drop folders' catch-up) have finished and a
    job of the keep folder was asked for. The daemon keeps running; what the remotes were
    asked meanwhile is in `graph_calls` and `s3_requests`."""

    def __init__(self, inst: Installation):
        self.inst = inst
        self.daemon = inst.daemon()
        self.since = mark()
        graph_before = len(inst.fake.records)
        started = time.time()
        self.daemon.start()
        try:
            wait_jobs(self.daemon, self.since, REMOTE_SOURCES)
            wait_schedule_fired(self.daemon, started)
            self.keep_job = trigger(self.daemon, "keep")
            wait_jobs(self.daemon, self.since, {**REMOTE_SOURCES, "keep": 1})
        except AssertionError as exc:
            raise AssertionError(f"{exc}\ndaemon log:\n{self.daemon.log_text()[-4000:]}") from None
        self.graph_calls = [r for r in inst.fake.records[graph_before:] if r.kind == "graph"]
        self.s3_requests = list(inst.moto.log.requests)

    def new_jobs(self, source: str | None = None) -> list[dict]:
        """Jobs this checkout ran on the installation, oldest first."""
        jobs = [j for j in all_jobs(self.daemon) if j["job_id"] > self.since]
        return sorted((j for j in jobs if source is None or j["source"] == source), key=lambda j: j["job_id"])


def missing(expected, actual, where: str = "") -> list[str]:
    """What `actual` lacks of `expected`: every key and value the release answered must
    be there, the same (a newer release may add fields; lists must match item by item)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where or '.'}: {actual!r} is not an object"]
        out = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: missing")
            else:
                out += missing(value, actual[key], f"{where}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: {len(expected)} entries expected, got {actual!r}"]
        return [line for i, (e, a) in enumerate(zip(expected, actual)) for line in missing(e, a, f"{where}[{i}]")]
    return [] if expected == actual else [f"{where}: {expected!r} became {actual!r}"]
