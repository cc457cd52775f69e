import hashlib
import os

import pytest

from ingestd.errors import NotFoundError
from ingestd.store.catalogue import Blob, Change, Store, doc_id_for
from ingestd.store.enrich import detect_mime


def put(store, tmp_path, data: bytes, name="f.txt"):
    """What the pipeline does: store the bytes, then say what they are."""
    src = tmp_path / ("src-" + hashlib.md5(data).hexdigest())
    src.write_bytes(data)
    fd = os.open(src, os.O_RDONLY)
    try:
        stored = store.blobs.put_file(fd)
    finally:
        os.close(fd)
    return Blob(stored.sha256, stored.size, detect_mime(stored.head, name))


def outcomes(committed):
    return committed.done, committed.gone


def change(store, blob, origin="file:///a", job="job-00000001"):
    return Change(doc_id=doc_id_for("s", origin), source="s", origin_uri=origin, blob=blob, job_id=job)


def test_blobs_are_content_addressed_and_stored_once(tmp_path):
    store = Store(tmp_path / "state")
    a = put(store, tmp_path, b"same bytes")
    b = put(store, tmp_path, b"same bytes", name="other.txt")
    assert a.sha256 == b.sha256 == hashlib.sha256(b"same bytes").hexdigest()
    path = store.blob_path(a.sha256)
    assert path == tmp_path / "state" / "blobs" / "sha256" / a.sha256[:2] / a.sha256
    assert path.read_bytes() == b"same bytes"
    assert sum(1 for _ in (tmp_path / "state" / "blobs" / "sha256").rglob("*") if _.is_file()) == 1
    assert not any((tmp_path / "state" / "blobs" / "tmp").iterdir())


def test_versions_unchanged_and_tombstones(tmp_path):
    store = Store(tmp_path / "state")
    v1 = put(store, tmp_path, b"version one")
    assert outcomes(store.commit([change(store, v1)])) == (["ingested"], [])
    assert outcomes(store.commit([change(store, v1, job="job-00000002")])) == (["unchanged"], [])
    v2 = put(store, tmp_path, b"version two")
    assert outcomes(store.commit([change(store, v2, job="job-00000003")])) == (["ingested"], [])
    doc = store.get(doc_id_for("s", "file:///a"))
    assert doc.sha256 == v2.sha256 and doc.job_id == "job-00000003"
    assert [v.sha256 for v in doc.versions] == [v1.sha256]
    assert doc.mime == "text/plain" and doc.size == len(b"version two")
    assert outcomes(store.commit([], [(doc.doc_id, "job-00000004")])) == ([], ["deleted"])
    assert outcomes(store.commit([], [(doc.doc_id, "job-00000005")])) == ([], ["unchanged"])
    gone = store.get(doc.doc_id)
    assert gone.deleted_at and gone.deleted_job == "job-00000004"
    # the same content coming back revives the document as a new version
    assert outcomes(store.commit([change(store, v2, job="job-00000006")])) == (["ingested"], [])
    assert store.get(doc.doc_id).deleted_at is None


def test_same_content_from_two_origins_is_two_documents_one_blob(tmp_path):
    store = Store(tmp_path / "state")
    blob = put(store, tmp_path, b"shared")
    assert store.commit([change(store, blob, "file:///a"), change(store, blob, "file:///b")]).done == ["ingested"] * 2
    assert store.count() == 2


def test_unknown_document(tmp_path):
    with pytest.raises(NotFoundError):
        Store(tmp_path / "state").get("0" * 32)


def test_mime_by_content_not_extension(tmp_path):
    store = Store(tmp_path / "state")
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(64)
    assert put(store, tmp_path, png, name="photo.txt").mime == "image/png"
    assert put(store, tmp_path, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + os.urandom(64), name="noext").mime == "application/pdf"
    assert put(store, tmp_path, b"a,b\n1,2\n", name="t.csv").mime == "text/csv"


def test_files_staged_before_a_connector_error_are_recorded(tmp_path):
    import threading

    from ingestd.config import Source
    from ingestd.plugin.connector import Connector, Staged
    from ingestd.errors import Code, ConnectorError
    from ingestd.jobs.jobstore import JobStore
    from ingestd.jobs.lifecycle import Lifecycle
    from ingestd.jobs.pipeline import Pipeline

    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(b"x%d" % i)

    class Breaks(Connector):
        kind = "breaks"

        def stage(self, ctx):
            for i in range(5):
                yield Staged(origin_uri=f"t://{i}", path=src / f"f{i}", name=f"f{i}")
            raise ConnectorError(Code.TRANSIENT, "listing broke halfway")

    state = tmp_path / "state"
    store, lifecycle = Store(state), Lifecycle(JobStore(state))
    pipeline = Pipeline(store, lifecycle, state)
    connector = Breaks(Source(name="t", kind="breaks", enabled=True, options=None), None, state)
    manifest = pipeline.run(lifecycle.create("t", "breaks", "cli"), connector, stop=threading.Event())
    assert manifest.status == "failed" and manifest.errors[-1].code == "transient"
    assert manifest.counters.ingested == 5 and store.count() == 5
    pipeline.close()
