"""``GET /api/v1/openapi.json``: the OpenAPI 3 document, generated from the marshmallow schemas.

Each operation below names its schemas, permission and statuses; apispec's marshmallow
plugin turns the schemas into JSON Schema, so the document cannot drift from what the
views load and dump.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, current_app, jsonify
from marshmallow import Schema, fields

from .api_keys.api import ApiKeyCreatedSchema, ApiKeyCreateSchema, ApiKeySchema
from .audit.query import ExportQuerySchema, IsoDateTime, ListQuerySchema
from .audit.schemas import AuditLogDetailSchema, AuditLogPageSchema
from .auth.api import TokenRequestSchema
from .organizations.schemas import (
    InvitationAcceptedSchema,
    InvitationAcceptSchema,
    InvitationCreatedSchema,
    InvitationSchema,
    MemberCreateSchema,
    MemberSchema,
    MemberUpdateSchema,
    OrganizationSchema,
    OrganizationUpdateSchema,
    RoleCreateSchema,
    RoleSchema,
    RoleUpdateSchema,
)
from .schemas import ObjectIdField, Text, UtcDateTime
from .workspaces.schemas import (
    PathwayCreateSchema,
    PathwaySchema,
    PathwayUpdateSchema,
    WorkspaceCreateSchema,
    WorkspaceSchema,
    WorkspaceUpdateSchema,
)

bp = Blueprint("openapi", __name__)


class ErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    field = fields.String()


class ErrorSchema(Schema):
    error = fields.Nested(ErrorDetailSchema, required=True)


class IntegrityProblemSchema(Schema):
    sequence = fields.Integer()
    windowStart = fields.String()
    windowEnd = fields.String()
    status = fields.String()
    problems = fields.List(fields.Dict())


class IntegritySchema(Schema):
    state = fields.String(required=True, metadata={"enum": ["verified", "failed", "unsealed"]})
    verifiedUpTo = fields.String(allow_none=True)
    checkedWindows = fields.Integer()
    unsealedRecords = fields.Integer()
    problems = fields.List(fields.Nested(IntegrityProblemSchema))
    scope = fields.String(metadata={"enum": ["full", "recent", "error"]})
    checkedAt = fields.String(metadata={"format": "date-time"})


class TokenSchema(Schema):
    token = fields.String(required=True)
    tokenType = fields.String(required=True, metadata={"enum": ["Bearer"]})
    expiresIn = fields.Integer(required=True)
    organizationId = ObjectIdField(required=True)


def _list_of(name: str, item: type[Schema]) -> type[Schema]:
    return type(name, (Schema,), {"items": fields.List(fields.Nested(item), required=True)})


WorkspaceListSchema = _list_of("WorkspaceList", WorkspaceSchema)
PathwayListSchema = _list_of("PathwayList", PathwaySchema)
MemberListSchema = _list_of("MemberList", MemberSchema)
InvitationListSchema = _list_of("InvitationList", InvitationSchema)
RoleListSchema = _list_of("RoleList", RoleSchema)
ApiKeyListSchema = _list_of("ApiKeyList", ApiKeySchema)

ERRORS = {
    400: "Bad input; `field` names it",
    401: "Missing or invalid credentials",
    403: "Authenticated but lacking the permission, or refused by the access rules",
    404: "Unknown, or another organization's",
    409: "Conflict with the current state",
    413: "Body too large",
    415: "The body must be JSON",
    422: "Refers to something that does not exist in the organization",
    429: "Too many attempts; retry after the Retry-After seconds",
    503: "The database is unavailable or the query took too long",
}
WORKSPACE_HEADER = {
    "in": "header",
    "name": "X-Workspace-Id",
    "required": False,
    "description": "The workspace (24-hex id); optional for a key bound to one workspace.",
    "schema": {"type": "string"},
}

# method, path, summary, permission, body schema, (status, response schema), errors, extra
OPERATIONS: list[tuple[Any, ...]] = [
    (
        "post",
        "/auth/token",
        "Exchange an email and password for a JWT",
        None,
        TokenRequestSchema,
        (200, TokenSchema),
        (400, 401, 403, 415, 429),
        {"security": []},
    ),
    (
        "get",
        "/organization",
        "The caller's organization",
        "",
        None,
        (200, OrganizationSchema),
        (401,),
        {},
    ),
    (
        "patch",
        "/organization",
        "Rename the organization",
        "manageOrganization",
        OrganizationUpdateSchema,
        (200, OrganizationSchema),
        (400, 401, 403, 415),
        {},
    ),
    (
        "get",
        "/workspaces",
        "List workspaces",
        "viewWorkspaces",
        None,
        (200, WorkspaceListSchema),
        (401, 403),
        {},
    ),
    (
        "post",
        "/workspaces",
        "Create a workspace",
        "manageWorkspaces",
        WorkspaceCreateSchema,
        (201, WorkspaceSchema),
        (400, 401, 403, 409, 415),
        {},
    ),
    (
        "get",
        "/workspaces/{workspaceId}",
        "Read a workspace",
        "viewWorkspaces",
        None,
        (200, WorkspaceSchema),
        (401, 403, 404),
        {},
    ),
    (
        "patch",
        "/workspaces/{workspaceId}",
        "Rename or describe a workspace",
        "manageWorkspaces",
        WorkspaceUpdateSchema,
        (200, WorkspaceSchema),
        (400, 401, 403, 404, 409, 415),
        {},
    ),
    (
        "delete",
        "/workspaces/{workspaceId}",
        "Delete a workspace, its pathways and bound keys",
        "manageWorkspaces",
        None,
        (204, None),
        (401, 403, 404),
        {},
    ),
    (
        "get",
        "/pathways",
        "List the workspace's pathways",
        "viewPathways",
        None,
        (200, PathwayListSchema),
        (400, 401, 403, 404),
        {"workspace": True},
    ),
    (
        "post",
        "/pathways",
        "Create a pathway in the workspace",
        "managePathways",
        PathwayCreateSchema,
        (201, PathwaySchema),
        (400, 401, 403, 404, 415),
        {"workspace": True},
    ),
    (
        "get",
        "/pathways/{pathwayId}",
        "Read a pathway",
        "viewPathways",
        None,
        (200, PathwaySchema),
        (400, 401, 403, 404),
        {"workspace": True},
    ),
    (
        "patch",
        "/pathways/{pathwayId}",
        "Edit a pathway",
        "managePathways",
        PathwayUpdateSchema,
        (200, PathwaySchema),
        (400, 401, 403, 404, 415),
        {"workspace": True},
    ),
    (
        "delete",
        "/pathways/{pathwayId}",
        "Delete a pathway",
        "managePathways",
        None,
        (204, None),
        (400, 401, 403, 404),
        {"workspace": True},
    ),
    (
        "get",
        "/members",
        "List members and their roles",
        "viewMembers",
        None,
        (200, MemberListSchema),
        (401, 403),
        {},
    ),
    (
        "post",
        "/members",
        "Invite someone by email; the one-time acceptUrl is in this answer only",
        "manageMembers",
        MemberCreateSchema,
        (201, InvitationCreatedSchema),
        (400, 401, 403, 409, 415, 422),
        {},
    ),
    (
        "get",
        "/invitations",
        "List pending invitations",
        "viewMembers",
        None,
        (200, InvitationListSchema),
        (401, 403),
        {},
    ),
    (
        "delete",
        "/invitations/{invitationId}",
        "Revoke a pending invitation",
        "manageMembers",
        None,
        (204, None),
        (401, 403, 404),
        {},
    ),
    (
        "post",
        "/invitations/accept",
        "Accept an invitation: a new account sends its password, an existing one its JWT",
        None,
        InvitationAcceptSchema,
        (200, InvitationAcceptedSchema),
        (400, 401, 403, 404, 409, 415),
        {"security": [{}, {"bearerAuth": []}]},
    ),
    (
        "patch",
        "/members/{accountId}",
        "Change a member's role",
        "manageMembers",
        MemberUpdateSchema,
        (200, MemberSchema),
        (400, 401, 403, 404, 409, 415, 422),
        {},
    ),
    (
        "delete",
        "/members/{accountId}",
        "Remove a member",
        "manageMembers",
        None,
        (204, None),
        (401, 403, 404, 409),
        {},
    ),
    (
        "get",
        "/roles",
        "List roles and their permissions",
        "viewRoles",
        None,
        (200, RoleListSchema),
        (401, 403),
        {},
    ),
    (
        "post",
        "/roles",
        "Create a custom role",
        "manageRoles",
        RoleCreateSchema,
        (201, RoleSchema),
        (400, 401, 403, 409, 415),
        {},
    ),
    (
        "get",
        "/roles/{roleId}",
        "Read a role",
        "viewRoles",
        None,
        (200, RoleSchema),
        (401, 403, 404),
        {},
    ),
    (
        "patch",
        "/roles/{roleId}",
        "Rename a custom role or change permissions",
        "manageRoles",
        RoleUpdateSchema,
        (200, RoleSchema),
        (400, 401, 403, 404, 409, 415),
        {},
    ),
    (
        "delete",
        "/roles/{roleId}",
        "Delete an unused custom role",
        "manageRoles",
        None,
        (204, None),
        (401, 403, 404, 409),
        {},
    ),
    (
        "get",
        "/api-keys",
        "List API keys (never their secrets)",
        "viewApiKeys",
        None,
        (200, ApiKeyListSchema),
        (401, 403),
        {},
    ),
    (
        "post",
        "/api-keys",
        "Create an API key; the secret is in this answer only",
        "manageApiKeys",
        ApiKeyCreateSchema,
        (201, ApiKeyCreatedSchema),
        (400, 401, 403, 415, 422),
        {},
    ),
    (
        "delete",
        "/api-keys/{apiKeyId}",
        "Revoke an API key",
        "manageApiKeys",
        None,
        (204, None),
        (401, 403, 404),
        {},
    ),
    (
        "get",
        "/audit-logs",
        "The audit log, newest first, a page at a time",
        "viewAuditLog",
        None,
        (200, AuditLogPageSchema),
        (400, 401, 403, 503),
        {"query": ListQuerySchema},
    ),
    (
        "get",
        "/audit-logs/export",
        "The filtered audit log as CSV or NDJSON, streamed",
        "viewAuditLog",
        None,
        (200, "export"),
        (400, 401, 403),
        {"query": ExportQuerySchema},
    ),
    (
        "get",
        "/audit-logs/integrity",
        "Whether the latest sealed windows of the organization's audit log verify",
        "viewAuditLog",
        None,
        (200, IntegritySchema),
        (401, 403),
        {},
    ),
    (
        "get",
        "/audit-logs/{auditLogId}",
        "One audit record with its request details",
        "viewAuditLog",
        None,
        (200, AuditLogDetailSchema),
        (401, 403, 404),
        {},
    ),
]


def _object_id_pattern(self, field, **kwargs) -> dict:
    if isinstance(field, ObjectIdField):
        return {"pattern": "^[0-9a-fA-F]{24}$"}
    return {}


def build_spec(version: str = "1.0.0") -> dict:
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
    plugin.map_to_openapi_type(Text, "string", None)
    assert plugin.converter is not None  # (set when the plugin joined the spec)
    plugin.converter.add_attribute_function(_object_id_pattern)
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    spec.components.security_scheme(
        "apiKeyAuth", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )
    spec.components.schema("Error", schema=ErrorSchema)
    paths: dict[str, dict] = {}
    for method, path, summary, permission, body, (status, out), errors, extra in OPERATIONS:
        operation: dict = {"summary": summary, "responses": {}}
        if permission:
            operation["description"] = f"Needs the `{permission}` permission."
        if "security" in extra:
            operation["security"] = extra["security"]
        parameters = [
            {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
            for name in _path_names(path)
        ]
        if extra.get("workspace"):
            parameters.append(WORKSPACE_HEADER)
        if "query" in extra:
            parameters.append({"in": "query", "schema": extra["query"]})
        if parameters:
            operation["parameters"] = parameters
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        if out is None:
            operation["responses"][str(status)] = {"description": "Done"}
        elif out == "export":
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
        for code in (*errors, 405):
            operation["responses"][str(code)] = {
                "description": ERRORS.get(code, "Method not allowed"),
                "content": {"application/json": {"schema": "Error"}},
            }
        paths.setdefault(path, {})[method] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    document["security"] = [{"bearerAuth": []}, {"apiKeyAuth": []}]
    return document


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


@bp.get("/openapi.json")
def openapi_document():
    cached = current_app.extensions.get("audit_app.openapi")
    if cached is None:
        cached = current_app.extensions["audit_app.openapi"] = build_spec()
    return jsonify(cached)
