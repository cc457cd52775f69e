"""What hooks receive: read-only copies of core's records, taken when the event happened.

A hook runs later, on its plugin's own thread, while the job goes on: it gets a snapshot,
not the live manifest or record, so nothing a hook does can change what ingestd saves,
and nothing ingestd does later changes what the hook sees. Setting an attribute of a
snapshot raises; its mappings are read-only views of copies.

The Protocols say what a hook may read (they type `ingestd.plugin.spec`); `snapshot`
makes the copies.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict


class BlobInfo(Protocol):
    sha256: str
    size: int
    mime: str


class StoredDocument(Protocol):
    """`document` of `document_stored`: the version just committed."""

    doc_id: str
    source: str
    origin_uri: str
    blob: BlobInfo
    job_id: str
    source_modified_at: str | None
    metadata: Mapping[str, Any]


class DeletedDocument(Protocol):
    """`document` of `document_deleted`: the feed's change for the tombstone, with the
    version that was current when the document went."""

    cursor: str
    type: str
    doc_id: str
    source: str
    origin_uri: str
    version: int
    sha256: str
    size: int
    mime: str
    job_id: str
    at: str


class JobCounters(Protocol):
    discovered: int
    ingested: int
    unchanged: int
    skipped: int
    failed: int
    deleted: int
    bytes: int


class Job(Protocol):
    """`job` (and `manifest`) of the hooks: the job's manifest as it was at the event,
    the same fields as the JSON manifest (`to_json()` gives that JSON)."""

    job_id: str
    source: str
    kind: str
    trigger: str
    status: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    counters: JobCounters
    errors: Sequence[Any]
    errors_dropped: int

    def to_json(self) -> dict[str, Any]: ...

    def duration_s(self) -> float | None: ...


_IMMUTABLE = (str, int, float, bool, bytes, type(None))


def snapshot(value: Any) -> Any:
    """A deep, read-only copy: pydantic models and dataclasses become frozen copies of
    themselves (same fields and methods), mappings read-only views, sequences tuples."""
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, BaseModel):
        return _frozen_model(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        twin = _frozen_dataclass(type(value))
        return twin(**{f.name: snapshot(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, Mapping):
        return MappingProxyType({k: snapshot(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(snapshot(v) for v in value)
    return copy.deepcopy(value)


def _frozen_model(model: BaseModel) -> BaseModel:
    values = {name: _model_value(getattr(model, name)) for name in type(model).model_fields}
    return _frozen_class(type(model)).model_construct(_fields_set=set(model.model_fields_set), **values)


def _model_value(value: Any) -> Any:
    """Inside a model, containers stay the types the model declares (so it serializes as
    before), but are copies; models inside are frozen."""
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, BaseModel):
        return _frozen_model(value)
    if isinstance(value, list):
        return [_model_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _model_value(v) for k, v in value.items()}
    return copy.deepcopy(value)


@functools.cache
def _frozen_class(cls: type[BaseModel]) -> type[BaseModel]:
    """A frozen subclass: `isinstance` and every method still work."""
    config = ConfigDict(**{**cls.model_config, "frozen": True})
    return type(cls.__name__, (cls,), {"model_config": config, "__module__": cls.__module__,
                                        "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})


@functools.cache
def _frozen_dataclass(cls: type) -> type:
    fields = [(f.name, f.type) for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, namespace={"__doc__": cls.__doc__})
