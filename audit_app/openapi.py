"""``GET /api/v1/openapi.json``: the OpenAPI 3 document, derived from the views.

Paths and methods come from the URL map; what each operation loads, answers and may fail
with from the ``@operation`` the view declares beside its code (``apidoc.py``); the
permission from its ``require_permission``. apispec's marshmallow plugin turns the
schemas into JSON Schema. A view of the API without ``@operation`` fails the build (and
the test that builds it), so no route goes undocumented.
"""

from __future__ import annotations

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify

from .apidoc import ERRORS, EXPORT, ErrorSchema, Operation
from .audit.capture.hooks import audit_action
from .audit.store.query import IsoDateTime, TimeZoneField
from .schemas import ObjectIdField, Text, UtcDateTime

bp = Blueprint("openapi", __name__)
API_PREFIX = "/api/v1"
WORKSPACE_HEADER = {
    "in": "header",
    "name": "X-Workspace-Id",
    "required": False,
    "description": "The workspace (24-hex id); optional for a key bound to one workspace.",
    "schema": {"type": "string"},
}


def _object_id_pattern(self, field, **kwargs) -> dict:
    if isinstance(field, ObjectIdField):
        return {"pattern": "^[0-9a-fA-F]{24}$"}
    return {}


def build_spec(app=None, version: str = "1.0.0") -> dict:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Organization Audit Log API",
        version=version,
        openapi_version="3.0.3",
        plugins=[plugin],
        servers=[{"url": "/api/v1"}],
        info={
            "description": "Every request to this API is recorded in the organization's "
            "audit log. Authenticate with a bearer JWT or an X-API-Key."
        },
    )
    plugin.map_to_openapi_type(ObjectIdField, "string", None)
    plugin.map_to_openapi_type(UtcDateTime, "string", "date-time")
    plugin.map_to_openapi_type(IsoDateTime, "string", None)
    plugin.map_to_openapi_type(TimeZoneField, "string", None)
    plugin.map_to_openapi_type(Text, "string", None)
    assert plugin.converter is not None  # (set when the plugin joined the spec)
    plugin.converter.add_attribute_function(_object_id_pattern)
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    spec.components.security_scheme(
        "apiKeyAuth", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )
    spec.components.security_scheme(  # the platform's support staff: /staff/... only
        "staffBearerAuth",
        {"type": "http", "scheme": "bearer", "bearerFormat": "staff token (POST /staff/token)"},
    )
    spec.components.schema("Error", schema=ErrorSchema)
    paths: dict[str, dict] = {}
    for path, method, view in api_views(app or current_app):
        declared = getattr(view, "openapi", None)
        if not isinstance(declared, Operation):
            raise LookupError(f"{method.upper()} {API_PREFIX}{path}: no @operation on the view")
        paths.setdefault(path, {})[method] = _operation(path, view, declared)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    document["security"] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
    return document


def api_views(app):
    """(path as OpenAPI writes it, method, view) of every API route but this document."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX + "/") or rule.endpoint.endswith("openapi_document"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule[len(API_PREFIX) :])
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield path, method.lower(), app.view_functions[rule.endpoint]


def _operation(path: str, view, declared: Operation) -> dict:
    operation: dict = {"summary": declared.summary, "responses": {}}
    action = getattr(view, "audit_action", None)
    if action:  # what its audit records say it did (and say when it failed, if not that)
        operation["x-audit-action"] = action
        failed = getattr(view, "audit_action_failed", None)
        if failed:
            operation["x-audit-action-failed"] = failed
    permission = getattr(view, "required_permission", None)
    if permission:
        operation["description"] = f"Needs the `{permission}` permission."
    if declared.security is not None:
        operation["security"] = declared.security
    parameters = [
        {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
        for name in _path_names(path)
    ]
    if declared.workspace:
        parameters.append(WORKSPACE_HEADER)
    if declared.query is not None:
        parameters.append({"in": "query", "schema": declared.query})
    if parameters:
        operation["parameters"] = parameters
    if declared.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": declared.body}},
        }
    status, out = declared.response
    if out is None:
        operation["responses"][str(status)] = {"description": "Done"}
    elif out == EXPORT:
        operation["responses"][str(status)] = {
            "description": "A CSV (UTF-8 with BOM) or NDJSON file",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    else:
        operation["responses"][str(status)] = {
            "description": "OK",
            "content": {"application/json": {"schema": out}},
        }
    for code in (*declared.errors, 405):
        operation["responses"][str(code)] = {
            "description": ERRORS.get(code, "Method not allowed"),
            "content": {"application/json": {"schema": "Error"}},
        }
    return operation


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


@bp.get("/openapi.json")
@audit_action("apiDocs.view")
def openapi_document():
    cached = current_app.extensions.get("audit_app.openapi")
    if cached is None:
        cached = current_app.extensions["audit_app.openapi"] = build_spec()
    return jsonify(cached)
