"""The extraction queue: follows the catalogue, extracts what needs it, records each text.

Data flows one way: a job commits versions → this queue reads them (by rowid, after its
durable cursor) → the pool extracts in child processes → the text is placed in the blob
store and recorded with the cursor in one transaction. Nothing here runs on the ingest
path: the ingest pipeline never waits for it, and the daemon only wakes it.

- **Once per bytes and extractor version**: a version whose (sha256, extractor, version)
  is recorded is not extracted again, whichever document it belongs to; identical bytes
  in flight at once are extracted once.
- **Crash-safe**: the cursor moves in the transaction that records the results, and only
  over rows that are all done; a kill at any instant redoes at most the files in flight.
- **New extractor versions**: at start, an extractor whose version is not the one whose
  backlog was last finished (`seen:<name>`) gets its MIME types' documents queued again;
  an unchanged extractor's are never touched.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ingestd._lib import logs
from ingestd._lib.atomic import fsync_dir
from ingestd._lib.files import unlink_quietly
from ingestd.config import ExtractConfig
from ingestd.errors import StoreError
from ingestd.extract.policy import Policy
from ingestd.extract.pool import Pool
from ingestd.extract.protocol import Request, Result
from ingestd.extract.window import Window
from ingestd.extract.worker import IO_FAILURE
from ingestd.plugin.extractor import Extractor, Limits
from ingestd.store.catalogue import Store
from ingestd.store.texts import OK, Pending, TextRecord, Texts

PAGE = 200  # versions read per look at the catalogue
POLL = 2.0  # seconds between looks when nothing woke the queue (commits by other processes)
FLUSH = 0.25  # seconds results wait to be recorded together
RETRY = 5.0  # seconds before a file whose text could not be written is tried again


@dataclass
class Stats:
    """What the metrics show: counters since start, and the queue now."""

    queue_depth: int = 0  # versions committed and not yet looked at, plus files waiting for a worker
    running: int = 0
    done: Counter = field(default_factory=Counter)  # (extractor, status) → files
    seconds: Counter = field(default_factory=Counter)  # extractor → seconds spent
    extractors: tuple[str, ...] = ()


@dataclass
class _Work:
    key: tuple[str, str, str]  # (sha256, extractor, version)
    extractor: type[Extractor]
    item: Pending
    rowids: list[int]


def limits_of(cfg: ExtractConfig) -> Limits:
    return Limits(seconds=cfg.timeout, memory_mib=cfg.memory_mib, max_chars=cfg.max_chars)


class Extraction:
    def __init__(self, store: Store, texts: Texts, policy: Policy, cfg: ExtractConfig, pool: Pool | None = None):
        self.store, self.texts, self.policy, self.cfg = store, texts, policy, cfg
        self.pool = pool or Pool(cfg.workers, cfg.memory_mib)
        self.window = Window(texts.cursor())
        self._work: queue.Queue[_Work | None] = queue.Queue(maxsize=cfg.workers * 4)
        self._running: dict[tuple, _Work] = {}
        self._results: list[tuple[TextRecord | None, list[int]]] = []
        self._dirs: set[Path] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flushed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._unrecorded = 0  # results handed to the recorder and not yet committed
        self._head = 0  # the newest version rowid at the last look
        self.texts_cursor = self.window.low
        self.stats = Stats(extractors=tuple(sorted(policy.extractors)))
        self._log = logs.get("ingestd.extract")

    # -- life -------------------------------------------------------------------------------

    def start(self, feed: bool = True) -> None:
        """Start the threads; without `feed`, only what `backfill` needs (`ingestd reextract`)."""
        targets = [("extract-feed", self._feed)] if feed else []
        targets += [("extract-record", self._record_loop)]
        targets += [(f"extract-{n}", self._serve) for n in range(self.cfg.workers)]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self, *_args) -> None:
        """Something was committed: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work; files in flight are abandoned (their workers killed) and
        redone at the next start, since the cursor never passed them."""
        self._stop.set()
        self._wake.set()
        self.pool.terminate()
        for _ in range(self.cfg.workers):
            try:
                self._work.put_nowait(None)
            except queue.Full:
                break
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self._flush()
        self.pool.close()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads) if self._threads else False

    def snapshot(self) -> Stats:
        with self._lock:
            waiting = max(0, self._head - self.window.high)
            return Stats(queue_depth=waiting + self._work.qsize(), running=self._busy, done=Counter(self.stats.done),
                         seconds=Counter(self.stats.seconds), extractors=self.stats.extractors)

    # -- feeding ----------------------------------------------------------------------------

    def _feed(self) -> None:
        try:
            self._backfill_changed()
            while not self._stop.is_set():
                if not self._feed_once():
                    self._wake.wait(POLL)
                    self._wake.clear()
        except Exception:
            self._log.exception("extraction queue stopped")

    def _feed_once(self) -> bool:
        """Hand out the next page of versions; False when there was none."""
        self._head = self.texts.head()
        items = self.texts.pending(self.window.high, PAGE)
        for item in items:
            if self._stop.is_set():
                return True
            self.window.issue(item.rowid)
            self._offer(item, [item.rowid])
        return bool(items)

    def _backfill_changed(self) -> None:
        """Queue the backlog of every extractor whose version changed (or is new)."""
        for cls in self.policy.extractors.values():
            if self.texts.state(f"seen:{cls.name}") != cls.version:
                self.backfill(cls)

    def backfill(self, cls: type[Extractor]) -> int:
        """Queue every live document this extractor is the one for and has no text of in
        its current version; waits until they are recorded, then marks it seen."""
        queued = 0
        for item in self.texts.backlog(self.policy.mime_types(cls)):
            if self._stop.is_set():
                return queued
            queued += self._offer(item, [])
        self._drain()
        if not self._stop.is_set():
            self.texts.set_state(f"seen:{cls.name}", cls.version)
            self._log.info("extractor backlog queued", extractor=cls.name, version=cls.version, files=queued)
        return queued

    def _offer(self, item: Pending, rowids: list[int]) -> int:
        """1 when the item needs extracting (queued or joined to the same bytes in flight)."""
        cls = self.policy.choose(item.source, item.mime).extractor if item.current else None
        key = (item.sha256, cls.name, cls.version) if cls else None
        if cls is None or self.texts.get(*key) is not None:
            self._finished(None, rowids)
            return 0
        with self._lock:
            running = self._running.get(key)
            if running is not None:
                running.rowids.extend(rowids)
                return 1
            work = self._running[key] = _Work(key, cls, item, list(rowids))
        self._put(work)
        return 1

    def _put(self, work: _Work) -> None:
        while not self._stop.is_set():
            try:
                self._work.put(work, timeout=0.5)
                return
            except queue.Full:
                continue

    def _drain(self) -> None:
        """Wait until nothing is queued, running or unrecorded."""
        with self._flushed:
            while not self._stop.is_set() and (self._running or self._unrecorded):
                self._flushed.wait(0.5)

    # -- extracting -------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            work = self._work.get()
            if work is None:
                return
            with self._lock:
                self._busy += 1
            try:
                record = self._extract(work)
            except Exception:
                self._log.exception("extraction failed unexpectedly", extractor=work.extractor.name)
                record = None
            finally:
                with self._lock:
                    self._busy -= 1
            if self._stop.is_set():
                return  # abandoned: redone at the next start
            if record is None:  # not a verdict on the file (the disk): try again later
                self._stop.wait(RETRY)
                self._put(work)
                continue
            with self._lock:  # one step, so a drain never sees it neither running nor unrecorded
                self._running.pop(work.key, None)
                self._results.append((record, list(work.rowids)))
                self._unrecorded += 1

    def _extract(self, work: _Work) -> TextRecord | None:
        sha, name, version = work.key
        if work.item.size > self.cfg.max_file_size:
            result = Result.failed("too_large", f"{work.item.size} bytes is over [extract] max_file_size "
                                   f"({self.cfg.max_file_size})")
        else:
            out = self.store.tmp_dir / f"text-{os.getpid()}-{os.urandom(6).hex()}"
            result = self.pool.run(Request(str(self.store.blob_path(sha)), name, str(out), limits_of(self.cfg)))
            if not result.ok or self._stop.is_set():
                unlink_quietly(out)  # a worker killed mid-write (its clock ran out in fsync) leaves a part
            if result.code == IO_FAILURE or self._stop.is_set():
                return None
            if result.ok:
                placed = self.store.place(out, result.sha256)
                with self._lock:
                    self._dirs.add(placed.parent)
        if not result.ok:
            self._log.info("extraction failed", extractor=name, sha256=sha, code=result.code, error=result.message)
        return TextRecord(sha, name, version, OK if result.ok else result.code, result.sha256,
                          result.chars if result.ok else None, result.pages, result.language,
                          result.message, [[b.kind, b.index, b.start, b.end, b.label] for b in result.boundaries],
                          result.seconds)

    # -- recording --------------------------------------------------------------------------

    def _finished(self, record: TextRecord | None, rowids: Iterable[int]) -> None:
        with self._lock:
            self._results.append((record, list(rowids)))
            self._unrecorded += 1

    def _record_loop(self) -> None:
        while not self._stop.wait(FLUSH):
            try:
                self._flush()
            except StoreError as exc:
                self._log.error("extraction results not recorded; retrying", error=str(exc))
            except Exception:  # this thread must outlive any one bad batch
                self._log.exception("extraction results not recorded; retrying")

    def _flush(self) -> None:
        with self._lock:
            results, self._results = self._results, []
            dirs, self._dirs = self._dirs, set()
        if not results:
            with self._flushed:
                self._flushed.notify_all()
            return
        for directory in dirs:  # the texts' names are durable before any record names them
            fsync_dir(directory)
        records = [r for r, _ in results if r is not None]
        rowids = [rowid for _, ids in results for rowid in ids]
        cursor = self.window.would_be(rowids)
        try:
            self.texts.record_all(records, cursor if cursor > self.texts_cursor else None)
        except StoreError:
            with self._lock:
                self._results[:0] = results
                self._dirs |= dirs
            raise
        self.texts_cursor = max(self.texts_cursor, cursor)
        self.window.finish(rowids)
        with self._flushed:
            for r in records:  # counted once recorded, so a metric never runs ahead of the API
                self.stats.done[r.extractor, r.status] += 1
                self.stats.seconds[r.extractor] += r.seconds
            self._unrecorded -= len(results)
            self._flushed.notify_all()
