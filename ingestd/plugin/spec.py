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
def register_sinks(register):
    """Register sink classes (`ingestd.plugin.Sink` subclasses): call `register(SinkSubclass)`
    once per kind. A `[[sinks]]` table with `kind = "<kind>"` then pushes the change feed
    through it (docs/sinks.md)."""


@hookspec
def document_stored(document, job, cursor):
    """A new document version was committed to the store: new content, or a metadata
    version (the same bytes with a new origin or metadata).

    `document` has `doc_id`, `source`, `origin_uri`, `blob` (sha256, size, mime),
    `metadata` and `source_modified_at`; `job` is the running job's manifest; `cursor`
    is the change's cursor in the change feed (`GET /changes`). Called after the record
    is durable, from the job's thread: keep it quick, hand heavy work (indexing,
    embedding) to your own queue. An exception is logged, not propagated. Declare only
    the arguments you use (`def document_stored(document, job)` keeps working).
    """


@hookspec
def document_deleted(document, job, cursor):
    """A document was tombstoned: its source no longer has it.

    `document` has `doc_id`, `source`, `origin_uri` and the `version`, `sha256`, `size`
    and `mime` that were current when it went; `job` is the deleting job's manifest;
    `cursor` is the change's cursor in the change feed. Called like `document_stored`:
    after the tombstone is durable, from the job's thread, exceptions logged.
    """


@hookspec
def job_finished(manifest):
    """A job reached a terminal state; `manifest` is its final manifest."""
