"""``/api/v1/api-keys``: list, create (the secret is in the 201 answer only) and revoke."""

from flask import Blueprint, jsonify, request
from marshmallow import Schema, fields, validate

from ..apidoc import list_of, operation
from ..audit.capture.hooks import audit_action
from ..auth.principal import current_principal, require_permission
from ..ids import parse_object_id
from ..pagination import PageQuerySchema
from ..schemas import ObjectIdField, Text, UtcDateTime, load_body
from . import service

bp = Blueprint("apiKeys", __name__)


class ApiKeySchema(Schema):
    id = ObjectIdField(attribute="_id")
    name = fields.String()
    prefix = fields.String()
    roleId = ObjectIdField()
    workspaceId = ObjectIdField(allow_none=True)
    createdBy = ObjectIdField(allow_none=True)
    createdAt = UtcDateTime()
    lastUsedAt = UtcDateTime(allow_none=True)
    revokedAt = UtcDateTime(allow_none=True)


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String()


class ApiKeyCreateSchema(Schema):
    name = Text(required=True, validate=validate.Length(max=200))
    roleId = ObjectIdField(load_default=None)
    workspaceId = ObjectIdField(load_default=None)


ApiKeyListSchema = list_of("ApiKeyList", ApiKeySchema)


@bp.get("/api-keys")
@audit_action("apiKey.list")
@operation(
    "List API keys (never their secrets), newest first, a page at a time",
    response=(200, ApiKeyListSchema),
    errors=(400, 401, 403),
    query=PageQuerySchema,
)
@require_permission("viewApiKeys")
def list_keys():
    page = service.list_keys(current_principal(), request.args)
    return jsonify(items=ApiKeySchema(many=True).dump(page.items), nextCursor=page.next_cursor)


@bp.post("/api-keys")
@audit_action("apiKey.create")
@operation(
    "Create an API key; the secret is in this answer only",
    body=ApiKeyCreateSchema,
    response=(201, ApiKeyCreatedSchema),
    errors=(400, 401, 403, 415, 422),
)
@require_permission("manageApiKeys")
def create_key():
    """Create a key acting with a role's permissions (Member by default)."""
    data = load_body(ApiKeyCreateSchema())
    key, secret = service.create_key(
        current_principal(),
        name=data["name"],
        role_id=data["roleId"],
        workspace_id=data["workspaceId"],
    )
    return jsonify(ApiKeyCreatedSchema().dump({**key, "key": secret})), 201


@bp.delete("/api-keys/<apiKeyId>")
@audit_action("apiKey.revoke")
@operation("Revoke an API key", response=(204, None), errors=(401, 403, 404))
@require_permission("manageApiKeys")
def revoke_key(apiKeyId):
    key_id = parse_object_id(apiKeyId, "apiKeyId", status=404, what="API key")
    service.revoke_key(current_principal(), key_id)
    return "", 204
