"""The hooks a plugin may implement. Keep this surface small: every hook here is a
promise to plugin authors.

Implement them with `@ingestd.hookimpl` in a module or class registered through the
`ingestd` entry-point group. Hooks are called with keyword arguments only.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("ingestd")
hookimpl = pluggy.HookimplMarker("ingestd")


@hookspec
def register_connectors(register):
    """Register connector classes: call `register(ConnectorSubclass)` once per kind.

    A connector whose optional dependency is missing should still be registered (its
    `requires` says what to install), so the operator is told what to do rather than
    that the kind does not exist.
    """


@hookspec
def register_extractors(register):
    """Register extractor classes: call `register(ExtractorSubclass)` once per extractor
    (`ingestd.plugin.Extractor`: a name, a version, the MIME types it turns into Markdown).

    Extractors run in child processes, never in the daemon; register one even when its
    library is missing (its `requires` says what to install).
    """


@hookspec
def document_stored(document, job):
    """A new document version was committed to the store.

    `document` has `doc_id`, `source`, `origin_uri`, `blob` (sha256, size, mime),
    `metadata` and `source_modified_at`; `job` is the running job's manifest. Called
    after the record is durable, from the job's thread: keep it quick, hand heavy work
    (indexing, embedding) to your own queue. An exception is logged, not propagated.
    """


@hookspec
def job_finished(manifest):
    """A job reached a terminal state; `manifest` is its final manifest."""
