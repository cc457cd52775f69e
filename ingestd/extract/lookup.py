"""Where a document's text stands, for the API and `ingestd text`: extracted (by which
extractor, in which version), failed (with its typed error), pending, or not extracted
(and why). Read-only: it never starts an extraction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ingestd.extract.policy import Policy
from ingestd.store.catalogue import Document, Store
from ingestd.store.texts import TextRecord, Texts

State = Literal["extracted", "failed", "pending", "not_extracted"]


@dataclass(frozen=True)
class TextState:
    state: State
    record: TextRecord | None = None
    reason: str | None = None  # why not extracted
    current: bool = True  # made by the extractor version installed now (False: a newer one is pending)
    path: Path | None = None  # the Markdown blob, when extracted

    @property
    def extractor(self) -> str | None:
        return self.record.extractor if self.record else None


def text_state(doc: Document, texts: Texts, policy: Policy, store: Store) -> TextState:
    choice = policy.choose(doc.source, doc.mime)
    cls = choice.extractor
    if cls is None:
        return TextState("not_extracted", reason=choice.reason)
    record = texts.get(doc.sha256, cls.name, cls.version)
    current = record is not None
    if record is None:
        record = texts.latest(doc.sha256, cls.name)  # an older version's, while the new one is pending
    if record is None:
        if doc.deleted_at is not None:  # the queue extracts live documents only
            return TextState("not_extracted", reason="the document was deleted at its source before its text "
                             "was extracted")
        return TextState("pending")
    if not record.ok:
        return TextState("failed", record, current=current)
    return TextState("extracted", record, current=current, path=store.blob_path(record.text_sha256))
