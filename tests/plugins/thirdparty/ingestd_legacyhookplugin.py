"""A plugin written before the hooks had a `cursor`: its two-argument `document_stored`
must keep being called. Appends a line per call to $INGESTD_TEST_HOOK_LOG."""

import os

from ingestd.plugin import hookimpl


@hookimpl
def document_stored(document, job):
    log = os.environ.get("INGESTD_TEST_HOOK_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"legacy {job.job_id} {document.doc_id}\n")
