"""The types the hooks are documented with say what the snapshots really carry: a field
renamed in core fails here, not in a plugin author's indexer."""

import typing

from ingestd.plugin import events
from ingestd.plugin.events import snapshot
from tests.unit.plugin.test_hooks import change, manifest


def declared(protocol) -> set[str]:
    names = set(typing.get_type_hints(protocol)) | {n for n in vars(protocol) if not n.startswith("_")}
    return names


def test_a_stored_documents_snapshot_has_every_documented_field():
    doc = snapshot(change())
    for name in declared(events.StoredDocument):
        assert hasattr(doc, name), name
    for name in declared(events.BlobInfo):
        assert hasattr(doc.blob, name), name


def test_a_jobs_snapshot_has_every_documented_field_and_method():
    job = snapshot(manifest())
    for name in declared(events.Job):
        assert hasattr(job, name), name
    for name in declared(events.JobCounters):
        assert hasattr(job.counters, name), name
    assert job.to_json() == manifest().to_json()


def test_snapshots_keep_values_and_types_readable():
    doc = snapshot(change())
    assert doc.metadata["tags"] == ("x",) and doc.blob.size == 3
    assert type(doc).__name__ == "Change"  # a frozen twin, named like the record it copies
    job = snapshot(manifest())
    assert job.model_dump() == manifest().model_dump()
