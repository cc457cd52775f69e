"""The extraction queue's counters: a file counts as extracted once its text is recorded,
so whoever sees the metric move can read the text."""

from __future__ import annotations

import os
import threading
from collections import Counter

from ingestd import config
from ingestd.extract.policy import Policy
from ingestd.extract.protocol import Result
from ingestd.extract.service import Extraction
from ingestd.plugin.manager import Plugins
from ingestd.store.catalogue import Blob, Change, Store, doc_id_for
from ingestd.store.enrich import detect_mime
from ingestd.store.texts import Texts
from tests.support.helpers import wait_for


class GatedTexts(Texts):
    """The real text catalogue, whose writes of results wait for the test's go."""

    def __init__(self, state_dir):
        super().__init__(state_dir)
        self.entered, self.gate = threading.Event(), threading.Event()

    def record_all(self, records, cursor=None):
        if records:
            self.entered.set()
            self.gate.wait(60)
        super().record_all(records, cursor)


def store_one_csv(tmp_path) -> tuple[Store, Blob]:
    """A store holding one committed CSV document, for the extraction to find."""
    store = Store(tmp_path / "state")
    src = tmp_path / "in.csv"
    src.write_bytes(b"a,b\n1,2\n")
    fd = os.open(src, os.O_RDONLY)
    try:
        stored = store.blobs.put_file(fd)  # the store stores; what a file is, the pipeline works out
        blob = Blob(stored.sha256, stored.size, detect_mime(stored.head, "in.csv"))
    finally:
        os.close(fd)
    store.commit([Change(doc_id=doc_id_for("s", "file:///in.csv"), source="s", origin_uri="file:///in.csv",
                         blob=blob, job_id="job-00000001")])
    return store, blob


def test_an_extraction_is_counted_only_once_its_text_is_recorded(tmp_path):
    store, blob = store_one_csv(tmp_path)
    texts = GatedTexts(tmp_path / "state")
    cfg = config.parse({}, {}, base_dir=tmp_path)
    policy = Policy(Plugins().load().extractors, cfg)
    version = policy.extractors["csv"].version
    extraction = Extraction(store, texts, policy, cfg.extract)
    extraction.start()
    try:
        wait_for(texts.entered.is_set, timeout=60, message="the result on its way to the catalogue")
        assert texts.get(blob.sha256, "csv", version) is None
        assert extraction.snapshot().done == Counter()
        texts.gate.set()
        wait_for(lambda: extraction.snapshot().done["csv", "ok"] == 1, timeout=30, message="counted")
        assert texts.get(blob.sha256, "csv", version).ok
    finally:
        texts.gate.set()
        extraction.stop()
        texts.close()
        store.close()


class PartWritingPool:
    """A worker whose wall clock ran out while it was writing its text: the part is on disk,
    the answer is `timeout` (seen under load: fsync outlasting the limit)."""

    def __init__(self, real):
        self.real, self.asked = real, threading.Event()

    def run(self, request):
        with open(request.out, "wb") as part:
            part.write(b"half a text")
        self.asked.set()
        return Result.failed("timeout", "took longer than 1 s")

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_worker_killed_mid_write_leaves_no_part_in_the_temp_folder(tmp_path):
    store, _ = store_one_csv(tmp_path)
    texts = Texts(tmp_path / "state")
    cfg = config.parse({}, {}, base_dir=tmp_path)
    extraction = Extraction(store, texts, Policy(Plugins().load().extractors, cfg), cfg.extract)
    extraction.pool = pool = PartWritingPool(extraction.pool)
    extraction.start()
    try:
        wait_for(lambda: sum(extraction.snapshot().done.values()) >= 1, timeout=60, message="the timeout recorded")
        assert pool.asked.is_set()
        assert list(store.tmp_dir.iterdir()) == []
    finally:
        extraction.stop()
