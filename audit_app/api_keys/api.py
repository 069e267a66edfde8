"""``/api/v1/api-keys``: list, create (the secret is in the 201 answer only) and revoke."""

from flask import Blueprint, jsonify
from marshmallow import Schema, fields, validate

from ..auth.principal import current_principal, require_permission
from ..db import get_db
from ..errors import ApiError, unprocessable
from ..ids import parse_object_id
from ..organizations import repository as orgs
from ..organizations.permissions import MEMBER
from ..schemas import ObjectIdField, Text, UtcDateTime, load_body
from ..workspaces import repository as workspaces
from . import repository as api_keys

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


@bp.get("/api-keys")
@require_permission("viewApiKeys")
def list_keys():
    items = api_keys.list_api_keys(get_db(), current_principal().organization_id)
    return jsonify(items=ApiKeySchema(many=True).dump(items))


@bp.post("/api-keys")
@require_permission("manageApiKeys")
def create_key():
    """Create a key acting with a role's permissions (Member by default)."""
    principal = current_principal()
    data = load_body(ApiKeyCreateSchema())
    db = get_db()
    if data["roleId"] is None:
        role = orgs.find_role_by_key(db, principal.organization_id, MEMBER)
    else:
        role = orgs.find_role(db, principal.organization_id, data["roleId"])
        if role is None:
            raise unprocessable("No role with this id in the organization.", "roleId")
    if not set(role["permissions"]) <= principal.permissions:
        raise ApiError(
            403, "forbidden", "A key cannot hold permissions its creator lacks.", "roleId"
        )
    if (
        data["workspaceId"] is not None
        and workspaces.find_workspace(db, principal.organization_id, data["workspaceId"]) is None
    ):
        raise unprocessable("No workspace with this id in the organization.", "workspaceId")
    key, secret = api_keys.create_api_key(
        db,
        principal.organization_id,
        name=data["name"],
        role_id=role["_id"],
        workspace_id=data["workspaceId"],
        created_by=principal.account_id,
    )
    return jsonify(ApiKeyCreatedSchema().dump({**key, "key": secret})), 201


@bp.delete("/api-keys/<apiKeyId>")
@require_permission("manageApiKeys")
def revoke_key(apiKeyId):
    key_id = parse_object_id(apiKeyId, "apiKeyId", status=404, what="API key")
    api_keys.revoke_api_key(get_db(), current_principal().organization_id, key_id)
    return "", 204
