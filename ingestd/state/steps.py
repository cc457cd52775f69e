"""Core's migration steps, in order: each moves the state directory one version forward.

Adding a step: append it here with the next version (a `Step` from
`ingestd.plugin.migration`, whose docstring says what a step must guarantee), add a row
to docs/upgrading.md's table, and a check to tests/upgrade/ that the v0.1.0 fixture
comes out of it right.
"""

from __future__ import annotations

from ingestd._lib.sqlite import open_db
from ingestd.plugin.migration import Step, StepContext
from ingestd.store import texts
from ingestd.store import upgrade as catalogue


def _nothing_else(ctx: StepContext) -> None:
    """The marker the runner writes after this step is the whole change."""


def _change_feed(ctx: StepContext) -> None:
    """One SQLite transaction (store/upgrade.py), durable when it returns, a no-op when done."""
    ctx.progress("replaying the existing documents into the change feed")
    written = catalogue.migrate(ctx.root / "documents.sqlite")
    ctx.log.info("change feed created", changes_replayed=written)


def _text_catalogue(ctx: StepContext) -> None:
    """One transaction (`CREATE TABLE IF NOT EXISTS`), durable when it commits."""
    db = open_db(ctx.root / "documents.sqlite")
    try:
        texts.create(db)
    finally:
        db.close()


CORE: list[Step] = [
    Step(2, "schema-marker", "the state directory records its schema version and migration history (SCHEMA.json)",
         _nothing_else, read_safe=True),
    Step(3, "text-catalogue", "the catalogue gets its text tables: which extractor, in which version, made which "
         "text from which bytes, and the extraction queue's cursor", _text_catalogue, read_safe=True),
    Step(4, "change-feed", "versions get a kind (content or metadata) and the change feed is created, replaying "
         "every document's versions and tombstones in the order they were ingested", _change_feed),
]


def register(step: Step) -> None:
    """Append a step (for tests, and for embedders with steps of their own)."""
    if step.version != latest(CORE) + 1:
        raise ValueError(f"step {step.name!r} is version {step.version}, the next is {latest(CORE) + 1}")
    CORE.append(step)


def latest(steps) -> int:
    return steps[-1].version if steps else 1
