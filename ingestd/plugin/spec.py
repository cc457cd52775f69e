"""The hooks a plugin may implement. Keep this surface small: every hook here is a
promise to plugin authors, and docs/plugins.md documents each (a test holds it to that).

Implement them with `@ingestd.plugin.hookimpl` in a module or class registered through
the `ingestd` entry-point group. Hooks are called with keyword arguments only; declare
only the arguments you use. Core calls the downstream hooks (all but the two
`register_*`) through `ingestd.plugin.hooks.Hooks`, the one place that knows
their keyword names: off the job's thread, with read-only snapshots
(`ingestd.plugin.events`), one queue per plugin, a time budget per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

from ingestd.plugin.events import DeletedDocument, Job, StoredDocument

if TYPE_CHECKING:
    from ingestd.plugin.connector import Connector
    from ingestd.plugin.extractor import Extractor

hookspec = pluggy.HookspecMarker("ingestd")
hookimpl = pluggy.HookimplMarker("ingestd")


@hookspec
def register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register connector classes: call `register(ConnectorSubclass)` once per kind.

    Called once, when the plugin loads. Each class is checked then (see `Connector`'s
    MUSTs); one that fails is refused with the reason and the plugin's other kinds and
    hooks still work. A connector whose optional dependency is missing should still be
    registered (its `requires` says what to install), so the operator is told what to
    do rather than that the kind does not exist.
    """


@hookspec
def register_extractors(register: Callable[[type[Extractor]], None]) -> None:
    """Register extractor classes: call `register(ExtractorSubclass)` once per extractor
    (`ingestd.plugin.Extractor`: a name, a version, the MIME types it turns into Markdown).

    Extractors run in child processes, never in the daemon; register one even when its
    library is missing (its `requires` says what to install).
    """


@hookspec
def document_stored(document: StoredDocument, job: Job, cursor: str) -> None:
    """A new document version was committed to the store (and the job's manifest saved):
    new content, or a metadata version (the same bytes with a new origin or metadata).

    `document`: `doc_id`, `source`, `origin_uri`, `blob` (`sha256`, `size`, `mime`),
    `job_id`, `source_modified_at`, `metadata`; `job`: the job's manifest at that moment;
    `cursor`: the change's cursor in the change feed (`GET /changes`). `document` and
    `job` are read-only snapshots. Called on the plugin's own thread, in commit order,
    after the job has moved on: a slow hook delays only the plugin's own later calls.
    Calls beyond the plugin's queue are dropped (counted), so this is a notification, not
    a delivery guarantee: follow the change feed from the last `cursor` for that.
    """


@hookspec
def document_deleted(document: DeletedDocument, job: Job, cursor: str) -> None:
    """A document was tombstoned: its source no longer has it (and the job's manifest saved).

    `document`: the feed's change, `doc_id`, `source`, `origin_uri` and the `version`,
    `sha256`, `size` and `mime` that were current when it went; `job`: the deleting job's
    manifest; `cursor`: the change's cursor in the change feed. Called like
    `document_stored`, in the same queue, after the commit's `document_stored` calls.
    """


@hookspec
def job_finished(manifest: Job) -> None:
    """A job reached a terminal state; `manifest` is a read-only snapshot of its final
    manifest. Called after every `document_stored` and `document_deleted` call of that job
    (same queue)."""
