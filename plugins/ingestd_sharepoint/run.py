"""One SharePoint job over every library of the source.

Every library is read and planned first (`Sync.prepare`), then the delete limit is
checked over the whole source, and only then are events yielded, library by library:
a run that would tombstone too much changes nothing anywhere. A library that cannot be
read (gone, or no longer readable by the app) while others can is reported as a failed
item, and the others go on; with one library, the job fails as before. `finish` hands
each library its outcomes; each saves its own state, so one library's delta link moves
on whatever another's does.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from ingestd.errors import Code, ConnectorError
from ingestd.plugin import JobContext, Outcome

from .libraries import Index, Library
from .state import State
from .sync import Sync
from .tokens import Token

ISOLATED = {Code.NOT_FOUND, Code.PERMISSION}  # a library's own problem, not the source's


class Run:
    def __init__(self, opts, ctx: JobContext, http, index: Index, libraries: list[Library]):
        self.opts = opts
        self.ctx = ctx
        self.index = index
        self.done = threading.Event()  # set once finish has saved (or given up on) the state
        self.complete = False
        self.syncs: list[Sync] = []
        try:
            for lib in libraries:
                self.syncs.append(Sync(opts, ctx, http, State(lib.path), lib.target, graph_url=opts.graph_url,
                                       retired=lib.retired))
        except BaseException:
            self.close()
            raise

    def events(self):
        self.ctx.progress.phase("listing")  # reading every library's delta, then planning
        for sync in self.syncs:
            self._prepare(sync)
        self._check_deletes()
        self.ctx.progress.expect(items=sum(sync.planned() for sync in self.syncs),
                                 bytes=sum(sync.planned_bytes() for sync in self.syncs))
        self.ctx.progress.phase("downloading")
        for sync in self.syncs:
            if self.ctx.stop.is_set():
                return
            for event in sync.emit():
                if isinstance(event.token, Token):
                    event.token.library = sync.key
                yield event
        self.complete = True

    def _prepare(self, sync: Sync) -> None:
        try:
            sync.prepare()
        except ConnectorError as exc:
            if sync.gone:
                self.index.forget_lookups(sync.key)
            if exc.code not in ISOLATED or len(self.syncs) < 2:
                raise
            self.ctx.log.warning("sharepoint library not read; the others go on", library=sync.target.drive_name,
                                 site=sync.target.site_url, code=exc.code.value, error=exc.message)
            sync.broken = exc
            sync.state.forget_seen()

    def _check_deletes(self) -> None:
        deletes = live = 0
        for sync in self.syncs:
            if sync.broken is None:
                d, n = sync.deletes()
                deletes, live = deletes + d, live + n
        limit = self.opts.max_delete_fraction
        if deletes and deletes > limit * live:
            raise ConnectorError(
                Code.DELETE_LIMIT,
                f"this run would delete {deletes} of {live} documents ({deletes / live:.0%}), more than "
                f"max_delete_fraction {limit}; if that is intended, raise max_delete_fraction for this source "
                "(or set on_delete = \"ignore\") and run it again",
            )

    def finish(self, outcomes: list[Outcome], status: str) -> None:
        by_library: dict[str, list[Outcome]] = defaultdict(list)
        for out in outcomes:
            if isinstance(out.event.token, Token):
                by_library[out.event.token.library].append(out)
        for sync in self.syncs:
            if sync.finish(by_library.get(sync.key, []), status, self.complete) and sync.retired:
                self.index.retire(sync.key)

    def close(self) -> None:
        for sync in self.syncs:
            sync.state.close()
        self.index.close()
