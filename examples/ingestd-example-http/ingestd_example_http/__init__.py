"""An example plugin: the `http-catalogue` connector and two hooks.

It imports only `ingestd.plugin` (and its `kit`), like every plugin should.
"""

import json
import os

from ingestd.plugin import Job, StoredDocument, hookimpl

from .connector import CatalogueConnector


@hookimpl
def register_connectors(register):
    register(CatalogueConnector)


@hookimpl
def document_stored(document: StoredDocument, job: Job) -> None:
    """Hand the new version to an indexer: here, one JSON line in a file. Runs on this
    plugin's own thread after the version is durable; keep it short all the same."""
    _append({"event": "stored", "doc_id": document.doc_id, "origin_uri": document.origin_uri,
             "sha256": document.blob.sha256, "mime": document.blob.mime, "job_id": job.job_id})


@hookimpl
def job_finished(manifest: Job) -> None:
    _append({"event": "finished", "job_id": manifest.job_id, "source": manifest.source,
             "status": manifest.status, "ingested": manifest.counters.ingested})


def _append(record: dict) -> None:
    path = os.environ.get("INGESTD_EXAMPLE_CATALOGUE")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
