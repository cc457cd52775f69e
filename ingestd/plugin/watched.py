"""The watched-connector contract: everything the drop-folder watcher (`ingestd.runtime.watch`)
reads from a connector and calls on it, and nothing more.

The watcher turns filesystem events (or polling) into settled files and hands them to a
job as `ctx.hint`; the connector decides what a candidate is, looks at files safely, and
remembers what it has taken when the originals stay where they are. Every method the
watcher calls runs on its one settle thread and must be cheap: no file is read there.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import ClassVar

from ingestd.plugin.connector import Connector, Failed
from ingestd.plugin.options import WatchOptions


class WatchedConnector(Connector):
    """Base class for a connector the daemon watches instead of scheduling.

    MUST: `Options` subclasses `WatchOptions` (the watcher reads `poll`, `settle_seconds`,
    `ignore`, `rescan_seconds` and `batch_max` from it); `root`; `scan()`; `snap()`;
    `leaves_originals` true whenever a job leaves the files it took where they were.
    MUST when `leaves_originals` (MAY otherwise): `taken()`, answered from the connector's
    own memory, so the watcher never queues a file a job already handled; a source whose
    connector leaves originals without it is refused when it starts (it would re-take
    every file for ever). `stage()` receives the settled paths as `ctx.hint`.
    """

    watched: ClassVar[bool] = True
    watched_contract: ClassVar[bool] = True
    Options: ClassVar[type[WatchOptions]]

    @classmethod
    def contract_problem(cls) -> str | None:
        options = cls.__dict__.get("Options") or getattr(cls, "Options", None)
        if options is None:
            return None  # an abstract base; a concrete class without Options is caught elsewhere
        if not (isinstance(options, type) and issubclass(options, WatchOptions)):
            return ("a watched connector's Options must subclass ingestd.plugin.WatchOptions "
                    "(the watcher reads poll, settle_seconds, ignore, rescan_seconds and batch_max)")
        return None

    @property
    def root(self) -> Path:
        """MUST: the folder the watcher observes (recursively)."""
        raise NotImplementedError

    @property
    def leaves_originals(self) -> bool:
        """MUST: whether a finished job leaves the files it took in place. The watcher then
        asks `taken()` before it queues a file, instead of expecting it to go away."""
        return False

    def scan(self, start: str | None = None) -> Iterator[str | Failed]:
        """MUST: every candidate file at or below `start` (default: the root), as an
        absolute path string, and a `Failed` for each part of the tree that could not be
        searched (the watcher logs those; a one-shot job records them)."""
        raise NotImplementedError

    def snap(self, path: str) -> Hashable | None:
        """MUST: what `path` is now, as a value that changes whenever the file does (inode,
        size, mtime), looked at without following symlinks; None when there is no
        candidate there any more. A file that cannot be looked at is still a candidate:
        return a stable value for it, and let its job record the typed outcome."""
        raise NotImplementedError

    def taken(self, path: str, snap: Hashable) -> bool:
        """MUST when `leaves_originals`: whether a finished job already handled this file
        (ingested it, or refused it for good) and it is still as `snap` says."""
        return False

    def implements_taken(self) -> bool:
        return type(self).taken is not WatchedConnector.taken

    def watch_problem(self) -> str | None:
        """Why the watcher cannot take this source as configured (None when it can)."""
        if self.leaves_originals and not self.implements_taken():
            return (f'sources "{self.source.name}": connector {self.kind!r} leaves originals in place '
                    "but does not implement taken(); it would take every file again and again")
        return None
