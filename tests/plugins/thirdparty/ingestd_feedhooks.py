"""Hooks that write down every call (the feed-parity tests, both backends): one JSON line
per call in INGESTD_TEST_FEEDHOOKS_SEEN, with the cursor, the job and the process that
called; with INGESTD_TEST_FEEDHOOKS_RAISE set, each hook raises after recording (which
must never break the job)."""

import json
import os

from ingestd.plugin import hookimpl


def _record(**fields) -> None:
    with open(os.environ["INGESTD_TEST_FEEDHOOKS_SEEN"], "a") as fh:
        fh.write(json.dumps({**fields, "pid": os.getpid()}) + "\n")
    if os.environ.get("INGESTD_TEST_FEEDHOOKS_RAISE"):
        raise ValueError("feed hook broken on purpose")


@hookimpl
def document_stored(document, job, cursor):
    _record(hook="document_stored", cursor=cursor, doc_id=document.doc_id, sha256=document.blob.sha256,
            origin_uri=document.origin_uri, job_id=job.job_id, source=job.source)


@hookimpl
def document_deleted(document, job, cursor):
    _record(hook="document_deleted", cursor=cursor, doc_id=document.doc_id, type=document.type,
            version=document.version, sha256=document.sha256, job_id=job.job_id, source=job.source)


@hookimpl
def job_finished(manifest):
    _record(hook="job_finished", job_id=manifest.job_id, status=manifest.status, source=manifest.source,
            ingested=manifest.counters.ingested, deleted=manifest.counters.deleted)
