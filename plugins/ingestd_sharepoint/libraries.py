"""Which libraries a job syncs: the configured sites and libraries, resolved to drive ids
through the source's index (`layout`), and the libraries the source held before that it
no longer names (retired: their documents are tombstoned, their state kept).

Lookups are cached in the index by site URL, library name and Graph endpoint, so a run
over named libraries resolves nothing. `library = "*"` lists each site's libraries every
run (one request per site), so a library made since the last run is picked up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from . import graph, layout
from .options import site_host, site_path


@dataclass(frozen=True)
class Library:
    target: graph.Target
    path: Path  # its state file
    retired: bool = False  # held before, no longer configured: its documents go


class Index:
    """The source's index of libraries and lookups (`layout.INDEX`)."""

    def __init__(self, root: Path):
        self.root = root
        self.db = layout.open_index(root)

    def close(self) -> None:
        self.db.close()

    def libraries(self, opts, http) -> list[Library]:
        """The configured libraries, then the retired ones still holding documents."""
        targets = Resolver(self, opts, http).targets()
        active = {t.drive_id for t in targets}
        out = [self._library(t) for t in targets]
        for drive_id, file, target in self.db.execute("SELECT drive_id, file, target FROM libraries WHERE retired=0"):
            if drive_id not in active and (self.folder / file).exists():
                out.append(Library(graph.Target(**json.loads(target)), self.folder / file, retired=True))
        return out

    @property
    def folder(self) -> Path:
        return self.root / layout.LIBRARIES

    def _library(self, target: graph.Target) -> Library:
        file = layout.library_file(target.drive_id)
        self.folder.mkdir(exist_ok=True)
        self.db.execute("INSERT INTO libraries (drive_id, file, target) VALUES (?,?,?) ON CONFLICT(drive_id) "
                        "DO UPDATE SET target=excluded.target, retired=0",
                        (target.drive_id, file, json.dumps(asdict(target))))
        return Library(target, self.folder / file)

    def retire(self, drive_id: str) -> None:
        """Its documents are tombstoned: later runs leave it alone unless it is named again."""
        self.db.execute("UPDATE libraries SET retired=1 WHERE drive_id=?", (drive_id,))

    def forget_lookups(self, drive_id: str) -> None:
        """The library is gone (404): look it up again next run."""
        for key, value in self.db.execute("SELECT key, value FROM lookups").fetchall():
            if json.loads(value).get("drive_id") == drive_id:
                self.db.execute("DELETE FROM lookups WHERE key=?", (key,))

    def cached(self, key: str) -> dict | None:
        row = self.db.execute("SELECT value FROM lookups WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def cache(self, key: str, value: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO lookups (key, value) VALUES (?,?)", (key, json.dumps(value)))


class Resolver:
    def __init__(self, index: Index, opts, http):
        self.index = index
        self.opts = opts
        self.http = http
        self._client = None
        self._sites: dict[str, graph.Site] = {}
        self._listed: dict[str, list[graph.Target]] = {}

    def targets(self) -> list[graph.Target]:
        out: list[graph.Target] = []
        for site_url in self.opts.site_urls:
            names = self.opts.libraries
            found = self._listing(site_url) if names is None else [self._named(site_url, n) for n in names]
            out += [t for t in found if t.drive_id not in {o.drive_id for o in out}]
        return out

    def _named(self, site_url: str, name: str) -> graph.Target:
        key = layout.lookup_key(self.opts.graph_url, site_url, name)
        cached = self.index.cached(key)
        if cached:
            return graph.Target(**cached)
        target = graph.pick(self._listing(site_url), name, site_url)
        self.index.cache(key, asdict(target))
        return target

    def _listing(self, site_url: str) -> list[graph.Target]:
        if site_url not in self._listed:
            self._listed[site_url] = graph.libraries(self.client, self._site(site_url), site_url)
        return self._listed[site_url]

    def _site(self, site_url: str) -> graph.Site:
        if site_url in self._sites:
            return self._sites[site_url]
        key = layout.lookup_key(self.opts.graph_url, site_url)
        cached = self.index.cached(key)
        found = graph.Site(**cached) if cached else graph.site(self.client, site_url, site_host(site_url),
                                                                site_path(site_url))
        if not cached:
            self.index.cache(key, asdict(found))
        self._sites[site_url] = found
        return found

    @property
    def client(self):
        if self._client is None:
            self._client = graph.Client(self.http, self.opts.graph_url)
        return self._client
