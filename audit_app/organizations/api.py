"""``/api/v1/organization``, ``/api/v1/members``, ``/api/v1/invitations`` and ``/api/v1/roles``.

Each view parses its input, calls one function of ``service`` (where every access rule
lives) and renders the answer.
"""

from flask import Blueprint, jsonify, request, url_for

from ..apidoc import operation
from ..audit.capture.context import note_actor
from ..audit.capture.hooks import audit_action
from ..auth.principal import account_of_token, current_principal, require_permission
from ..auth.tokens import TokenError
from ..errors import ApiError, unauthorized
from ..ids import parse_object_id
from ..pagination import PageQuerySchema
from ..schemas import load_body
from . import service
from .schemas import (
    InvitationAcceptedSchema,
    InvitationAcceptSchema,
    InvitationCreatedSchema,
    InvitationListSchema,
    InvitationSchema,
    MemberCreateSchema,
    MemberListSchema,
    MemberSchema,
    MemberUpdateSchema,
    OrganizationSchema,
    OrganizationUpdateSchema,
    RoleCreateSchema,
    RoleListSchema,
    RoleSchema,
    RoleUpdateSchema,
)

organization_bp = Blueprint("organization", __name__)
members_bp = Blueprint("members", __name__)
invitations_bp = Blueprint("invitations", __name__)
roles_bp = Blueprint("roles", __name__)


@organization_bp.get("/organization")
@audit_action("organization.view")
@operation("The caller's organization", response=(200, OrganizationSchema), errors=(401,))
@require_permission(None)
def get_organization():
    organization = service.find_organization(current_principal())
    return jsonify(OrganizationSchema().dump(organization))


@organization_bp.patch("/organization")
@audit_action("organization.update")
@operation(
    "Rename the organization (manageOrganization); set its audit retention and legal hold "
    "(manageAuditRetention)",
    body=OrganizationUpdateSchema,
    response=(200, OrganizationSchema),
    errors=(400, 401, 403, 415, 503),
)
@require_permission(None)  # each field's permission: organizations.service
def update_organization():
    data = load_body(OrganizationUpdateSchema())
    organization = service.update_organization(current_principal(), data)
    return jsonify(OrganizationSchema().dump(organization))


# Members -------------------------------------------------------------------------------


@members_bp.get("/members")
@audit_action("member.list")
@operation(
    "List members and their roles by email, a page at a time; email= keeps the members "
    "whose email starts with it (any case)",
    response=(200, MemberListSchema),
    errors=(400, 401, 403),
    query=service.MemberPageQuerySchema,
)
@require_permission("viewMembers")
def list_members():
    page = service.list_members(current_principal(), request.args)
    return jsonify(items=MemberSchema(many=True).dump(page.items), nextCursor=page.next_cursor)


@members_bp.post("/members")
@audit_action("member.invite")
@operation(
    "Invite someone by email; the one-time acceptUrl is in this answer only",
    body=MemberCreateSchema,
    response=(201, InvitationCreatedSchema),
    errors=(400, 401, 403, 409, 415, 422),
)
@require_permission("manageMembers")
def add_member():
    """Invite someone: the answer carries the one-time ``acceptUrl`` to pass on to them."""
    data = load_body(MemberCreateSchema())
    invitation, token = service.invite(current_principal(), data["email"], data["roleId"])
    return jsonify(
        InvitationCreatedSchema().dump({**invitation, "acceptUrl": accept_url(token)})
    ), 201


def accept_url(token: str) -> str:
    return url_for("web.invitations.accept_page", token=token, _external=True)


@members_bp.patch("/members/<accountId>")
@audit_action("member.roleChange")
@operation(
    "Change a member's role",
    body=MemberUpdateSchema,
    response=(200, MemberSchema),
    errors=(400, 401, 403, 404, 409, 415, 422),
)
@require_permission("manageMembers")
def update_member(accountId):
    account_id = parse_object_id(accountId, "accountId", status=404, what="Member")
    data = load_body(MemberUpdateSchema())
    member = service.change_member_role(current_principal(), account_id, data["roleId"])
    return jsonify(MemberSchema().dump(member))


@members_bp.delete("/members/<accountId>")
@audit_action("member.remove")
@operation("Remove a member", response=(204, None), errors=(401, 403, 404, 409))
@require_permission("manageMembers")
def remove_member(accountId):
    account_id = parse_object_id(accountId, "accountId", status=404, what="Member")
    service.remove_member(current_principal(), account_id)
    return "", 204


# Invitations ---------------------------------------------------------------------------


@invitations_bp.get("/invitations")
@audit_action("invitation.list")
@operation(
    "List pending invitations, soonest to expire first, a page at a time",
    response=(200, InvitationListSchema),
    errors=(400, 401, 403),
    query=PageQuerySchema,
)
@require_permission("viewMembers")
def list_invitations():
    page = service.list_invitations(current_principal(), request.args)
    return jsonify(items=InvitationSchema(many=True).dump(page.items), nextCursor=page.next_cursor)


@invitations_bp.delete("/invitations/<invitationId>")
@audit_action("invitation.revoke")
@operation("Revoke a pending invitation", response=(204, None), errors=(401, 403, 404))
@require_permission("manageMembers")
def revoke_invitation(invitationId):
    invitation_id = parse_object_id(invitationId, "invitationId", status=404, what="Invitation")
    service.revoke_invitation(current_principal(), invitation_id)
    return "", 204


@invitations_bp.post("/invitations/accept")
@audit_action("invitation.accept")
@operation(
    "Accept an invitation: a new account sends its password, an existing one its JWT",
    body=InvitationAcceptSchema,
    response=(200, InvitationAcceptedSchema),
    errors=(400, 401, 403, 404, 409, 415),
    security=[{}, {"bearerAuth": []}],
)
def accept_invitation():
    """Accept with the token: a new account sends its password, an existing one its JWT."""
    data = load_body(InvitationAcceptSchema())
    account = None
    authorization = request.headers.get("Authorization", "")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise TokenError("The Authorization header must be 'Bearer <token>'.")
            account, _ = account_of_token(token.strip())
        except TokenError as error:
            raise unauthorized(str(error)) from None
    try:
        accepted = service.accept_invitation(
            data["token"], account=account, password=data["password"]
        )
    except ApiError as error:
        if error.status != 404:
            _attribute_to_invitation(data["token"])
        raise
    note_actor(accepted["account"], accepted["organizationId"], overrides=True)
    return jsonify(InvitationAcceptedSchema().dump(accepted))


def _attribute_to_invitation(token: str) -> None:
    invitation = service.invitation_of(token)
    if invitation is not None:
        note_actor(
            {"_id": None, "email": invitation["email"]},
            invitation["organizationId"],
            overrides=True,
        )


# Roles ---------------------------------------------------------------------------------


@roles_bp.get("/roles")
@audit_action("role.list")
@operation(
    "List roles and their permissions by name, a page at a time",
    response=(200, RoleListSchema),
    errors=(400, 401, 403),
    query=PageQuerySchema,
)
@require_permission("viewRoles")
def list_roles():
    page = service.list_roles(current_principal(), request.args)
    return jsonify(items=RoleSchema(many=True).dump(page.items), nextCursor=page.next_cursor)


@roles_bp.post("/roles")
@audit_action("role.create")
@operation(
    "Create a custom role",
    body=RoleCreateSchema,
    response=(201, RoleSchema),
    errors=(400, 401, 403, 409, 415),
)
@require_permission("manageRoles")
def create_role():
    data = load_body(RoleCreateSchema())
    role = service.create_role(
        current_principal(), data["name"], data["permissions"], data["description"]
    )
    return jsonify(RoleSchema().dump(role)), 201


@roles_bp.get("/roles/<roleId>")
@audit_action("role.view")
@operation("Read a role", response=(200, RoleSchema), errors=(401, 403, 404))
@require_permission("viewRoles")
def get_role(roleId):
    role_id = parse_object_id(roleId, "roleId", status=404, what="Role")
    role = service.find_role(current_principal(), role_id)
    return jsonify(RoleSchema().dump(role))


@roles_bp.patch("/roles/<roleId>")
@audit_action("role.update")
@operation(
    "Rename a custom role or change permissions",
    body=RoleUpdateSchema,
    response=(200, RoleSchema),
    errors=(400, 401, 403, 404, 409, 415),
)
@require_permission("manageRoles")
def update_role(roleId):
    role_id = parse_object_id(roleId, "roleId", status=404, what="Role")
    data = load_body(RoleUpdateSchema())
    role = service.update_role(current_principal(), role_id, **data)
    return jsonify(RoleSchema().dump(role))


@roles_bp.delete("/roles/<roleId>")
@audit_action("role.delete")
@operation("Delete an unused custom role", response=(204, None), errors=(401, 403, 404, 409))
@require_permission("manageRoles")
def delete_role(roleId):
    role_id = parse_object_id(roleId, "roleId", status=404, what="Role")
    service.delete_role(current_principal(), role_id)
    return "", 204
