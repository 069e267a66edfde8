"""``/api/v1/organization``, ``/api/v1/members`` and ``/api/v1/roles``."""

from flask import Blueprint, jsonify

from ..auth.principal import current_principal, require_permission
from ..db import get_db
from ..errors import not_found, unprocessable
from ..ids import parse_object_id
from ..schemas import load_body
from . import repository as orgs
from .schemas import (
    MemberCreateSchema,
    MemberSchema,
    MemberUpdateSchema,
    OrganizationSchema,
    OrganizationUpdateSchema,
    RoleCreateSchema,
    RoleSchema,
    RoleUpdateSchema,
)

organization_bp = Blueprint("organization", __name__)
members_bp = Blueprint("members", __name__)
roles_bp = Blueprint("roles", __name__)


@organization_bp.get("/organization")
@require_permission(None)
def get_organization():
    organization = orgs.find_organization(get_db(), current_principal().organization_id)
    return jsonify(OrganizationSchema().dump(organization))


@organization_bp.patch("/organization")
@require_permission("manageOrganization")
def update_organization():
    data = load_body(OrganizationUpdateSchema())
    organization = orgs.rename_organization(
        get_db(), current_principal().organization_id, data["name"]
    )
    return jsonify(OrganizationSchema().dump(organization))


# Members -------------------------------------------------------------------------------


def _member(db, organization_id, account_id):
    member = orgs.find_member(db, organization_id, account_id)
    if member is None:
        raise not_found("Member", "accountId")
    return member


@members_bp.get("/members")
@require_permission("viewMembers")
def list_members():
    members = orgs.list_members(get_db(), current_principal().organization_id)
    return jsonify(items=MemberSchema(many=True).dump(members))


@members_bp.post("/members")
@require_permission("manageMembers")
def add_member():
    """Add a member by email; a new account needs a password, an existing one keeps its own."""
    data = load_body(MemberCreateSchema())
    db = get_db()
    organization_id = current_principal().organization_id
    if orgs.find_role(db, organization_id, data["roleId"]) is None:
        raise unprocessable("No role with this id in the organization.", "roleId")
    account = orgs.find_account_by_email(db, data["email"])
    if account is None:
        if not data["password"]:
            raise unprocessable(
                "A password of at least 8 characters is needed for a new account.", "password"
            )
        account = orgs.create_account(db, data["email"], data["password"], data["name"])
    orgs.add_membership(db, organization_id, account["_id"], data["roleId"])
    return jsonify(MemberSchema().dump(_member(db, organization_id, account["_id"]))), 201


@members_bp.patch("/members/<accountId>")
@require_permission("manageMembers")
def update_member(accountId):
    account_id = parse_object_id(accountId, "accountId", status=404, what="Member")
    data = load_body(MemberUpdateSchema())
    db = get_db()
    organization_id = current_principal().organization_id
    orgs.change_member_role(db, organization_id, account_id, data["roleId"])
    return jsonify(MemberSchema().dump(_member(db, organization_id, account_id)))


@members_bp.delete("/members/<accountId>")
@require_permission("manageMembers")
def remove_member(accountId):
    account_id = parse_object_id(accountId, "accountId", status=404, what="Member")
    orgs.remove_member(get_db(), current_principal().organization_id, account_id)
    return "", 204


# Roles ---------------------------------------------------------------------------------


@roles_bp.get("/roles")
@require_permission("viewRoles")
def list_roles():
    roles = orgs.list_roles(get_db(), current_principal().organization_id)
    return jsonify(items=RoleSchema(many=True).dump(roles))


@roles_bp.post("/roles")
@require_permission("manageRoles")
def create_role():
    data = load_body(RoleCreateSchema())
    role = orgs.create_role(
        get_db(),
        current_principal().organization_id,
        data["name"],
        data["permissions"],
        data["description"],
    )
    return jsonify(RoleSchema().dump(role)), 201


@roles_bp.get("/roles/<roleId>")
@require_permission("viewRoles")
def get_role(roleId):
    role_id = parse_object_id(roleId, "roleId", status=404, what="Role")
    role = orgs.find_role(get_db(), current_principal().organization_id, role_id)
    if role is None:
        raise not_found("Role", "roleId")
    return jsonify(RoleSchema().dump(role))


@roles_bp.patch("/roles/<roleId>")
@require_permission("manageRoles")
def update_role(roleId):
    role_id = parse_object_id(roleId, "roleId", status=404, what="Role")
    data = load_body(RoleUpdateSchema())
    role = orgs.update_role(get_db(), current_principal().organization_id, role_id, **data)
    return jsonify(RoleSchema().dump(role))


@roles_bp.delete("/roles/<roleId>")
@require_permission("manageRoles")
def delete_role(roleId):
    role_id = parse_object_id(roleId, "roleId", status=404, what="Role")
    orgs.delete_role(get_db(), current_principal().organization_id, role_id)
    return "", 204
