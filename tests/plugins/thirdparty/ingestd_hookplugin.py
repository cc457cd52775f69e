"""Hooks that misbehave, steered by environment variables (issue 25, items 4 to 6):

- INGESTD_TEST_HOOK_HOLD: a path; `document_stored` waits while it exists (at most 60 s),
  as a slow indexer would.
- INGESTD_TEST_HOOK_RAISE: when set, `document_stored` raises after recording.
- INGESTD_TEST_HOOK_MUTATE: when set, both hooks try to change what they were given.
- INGESTD_TEST_HOOK_SEEN: a file; one JSON line per call says what the hook saw and did.
"""

import json
import os
import time

from ingestd.plugin import hookimpl


def _record(**fields) -> None:
    path = os.environ.get("INGESTD_TEST_HOOK_SEEN")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(fields) + "\n")


def _try(change) -> str:
    try:
        change()
    except Exception as exc:
        return type(exc).__name__
    return "changed"


@hookimpl
def document_stored(document, job):
    hold = os.environ.get("INGESTD_TEST_HOOK_HOLD")
    deadline = time.monotonic() + 60
    while hold and os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.02)
    tried = {}
    if os.environ.get("INGESTD_TEST_HOOK_MUTATE"):
        tried["status"] = _try(lambda: setattr(job, "status", "failed"))
        tried["counters"] = _try(lambda: setattr(job.counters, "ingested", job.counters.ingested + 100))
        tried["metadata"] = _try(lambda: document.metadata.__setitem__("evil", True))
        tried["blob"] = _try(lambda: setattr(document.blob, "sha256", "0" * 64))
    _record(hook="document_stored", job_id=job.job_id, doc_id=document.doc_id, tried=tried)
    if os.environ.get("INGESTD_TEST_HOOK_RAISE"):
        raise ValueError("hook broken on purpose")


@hookimpl
def job_finished(manifest):
    tried = {}
    if os.environ.get("INGESTD_TEST_HOOK_MUTATE"):
        tried["status"] = _try(lambda: setattr(manifest, "status", "failed"))
    _record(hook="job_finished", job_id=manifest.job_id, status=manifest.status, tried=tried)
