"""The OpenAPI 3.1 document, generated from the route table and its pydantic models.

Nothing here is written by hand per endpoint: paths, parameters, bodies and every status
come from `routes.ROUTES` and `routes.responses`, schemas from the models the
handlers build their answers with. OpenAPI 3.1 uses JSON Schema 2020-12, which is what
pydantic emits, so the schemas go in unchanged.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from ingestd.api.routes import ROUTES, Route, responses

REF = "#/components/schemas/{model}"
SECURITY = "bearerAuth"
DOCUMENTED = [route for route in ROUTES if route.documented]


def build(version: str, secured: bool) -> dict[str, Any]:
    """The document for this daemon; `secured` when a token file is configured."""
    refs, defs = _schemas()
    paths: dict[str, dict] = {}
    for route in DOCUMENTED:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs, secured)
    components: dict[str, Any] = {"schemas": defs}
    if secured:
        components["securitySchemes"] = {SECURITY: {"type": "http", "scheme": "bearer",
                                                    "description": "the token in the file named by http.token_file"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ingestd status API", "version": version,
                 "description": "Poll jobs, trigger syncs, read document records and metrics of an ingestd daemon."},
        "paths": paths,
        "components": components,
    }


def _models() -> list[tuple[type[BaseModel], str]]:
    seen: list[tuple[type[BaseModel], str]] = []
    for route in DOCUMENTED:
        for model in responses(route).values():
            for m in model if isinstance(model, tuple) else (model,):
                if isinstance(m, type) and (m, "serialization") not in seen:
                    seen.append((m, "serialization"))
        if route.body and (route.body, "validation") not in seen:
            seen.append((route.body, "validation"))
    return seen


class _Published(GenerateJsonSchema):
    """Responses are written with every field present (null where empty), so in a
    response schema every field is `required`: a client may rely on the key being there."""

    def field_is_required(self, field, total: bool) -> bool:
        return True if self.mode == "serialization" else super().field_is_required(field, total)


def _schemas():
    refs, top = models_json_schema(_models(), ref_template=REF, schema_generator=_Published)
    return refs, top.get("$defs", {})


def _operation(route: Route, refs, secured: bool) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary,
                          "responses": {str(s): _response(s, m, refs) for s, m in responses(route).items()}}
    params = [_path_param(name, kind) for name, kind in route.params.items()]
    if route.query:
        params += _query_params(route.query)
    if params:
        op["parameters"] = params
    if route.body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": refs[(route.body, "validation")]}}}
    if secured:
        op["security"] = [] if route.public else [{SECURITY: []}]
    return op


def _response(status: int, model, refs) -> dict[str, Any]:
    out: dict[str, Any] = {"description": HTTPStatus(status).phrase}
    if isinstance(model, str):  # a media type ("" for no body at all)
        if model:
            out["content"] = {model: {"schema": _raw_schema(model)}}
        return out
    models = model if isinstance(model, tuple) else (model,)
    schemas = [refs[(m, "serialization")] for m in models]
    out["content"] = {"application/json": {"schema": schemas[0] if len(schemas) == 1 else {"anyOf": schemas}}}
    if status == 202:
        out["headers"] = {"Location": {"description": "the new job's status URL", "required": True,
                                       "schema": {"type": "string"}}}
    if status == 401:
        out["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
    return out


def _raw_schema(media: str) -> dict[str, Any]:
    if media.startswith("text/"):
        return {"type": "string"}
    if media in ("*/*", "application/octet-stream"):  # any bytes: a document's content, in its own MIME type
        return {"type": "string", "format": "binary"}
    return {"type": "object"}


def _path_param(name: str, kind) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": TypeAdapter(kind).json_schema()}


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = _without_null(prop)
        param = {"name": name, "in": "query", "required": name in schema.get("required", []), "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        out.append(param)
    return out


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """`X | None` means "may be left out" for a query parameter: there is no null on the wire."""
    branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**branches[0], **rest}
