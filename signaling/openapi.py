"""The OpenAPI 3.1 document, generated from the route table and the message types.

Nothing here is written by hand per route: paths come from `ApiRoutes.specs`, schemas from
msgspec's JSON Schema of each request and response type, plus the WebSocket messages.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from signaling.api import RouteSpec

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}

ERROR_REF = {"$ref": "#/components/schemas/Error"}
BEARER = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def build_openapi(specs: list[RouteSpec], extra_types: tuple[Any, ...] = (),
                  version: str = "0.1.0") -> dict[str, Any]:
    """The document served at /api/openapi.json."""
    types: list[Any] = [s.request_type for s in specs if s.request_type is not None]
    types += [s.response_type for s in specs if s.response_type is not None]
    types += list(extra_types)
    refs, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    schema_of = {id(t): r for t, r in zip(types, refs, strict=True)}
    components["Error"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        path = _PARAM.sub(r"{\1}", spec.path)
        op: dict[str, Any] = {
            "summary": spec.summary,
            "tags": [spec.tag],
            "operationId": spec.handler.__name__,
            "responses": {
                "default": {
                    "description": "error",
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
            },
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(spec.path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "description": desc,
             "schema": {"type": "string"}}
            for name, desc in spec.query.items()
        ]
        if params:
            op["parameters"] = params
        if spec.request_type is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema_of[id(spec.request_type)]}},
            }
        ok: dict[str, Any] = {"description": "success"}
        if spec.response_type is not None:
            ok["content"] = {"application/json": {"schema": schema_of[id(spec.response_type)]}}
        no_content = spec.response_type is None and spec.status == 200
        op["responses"]["204" if no_content else str(spec.status)] = ok
        if spec.roles is not None:
            op["security"] = [{"bearer": []}]
            op["description"] = "Roles: " + ", ".join(sorted(spec.roles))
        paths.setdefault(path, {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tongxin API",
            "version": version,
            "description": "Session broker for remote classes and consultations. "
            "Errors are {\"error\": {\"code\", \"message\"}}. The WebSocket protocol at /ws is "
            "described by the WsClientMessage / WsServerMessage schemas.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": BEARER},
        },
    }
