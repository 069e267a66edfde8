"""The admin pages: Organization -> Roles, Members and Settings. Every form is CSRF-protected.

The pages parse the form, call ``service`` (the same rules as the API) and redirect back
with a message; a refused change is flashed, an unknown id is a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bson import ObjectId
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from ..audit.capture.hooks import audit_action
from ..auth.principal import current_principal, require_permission
from ..errors import ApiError
from ..ids import parse_object_id, readable, utcnow
from ..pagination import WebPageQuerySchema
from ..web.confirm import ask_first, confirmed
from ..web.forms import ActionForm, refused, require_valid_form
from . import service
from .api import accept_url
from .permissions import OWNER, PERMISSIONS

roles_bp = Blueprint("roles", __name__, url_prefix="/organization/roles")
members_bp = Blueprint("members", __name__, url_prefix="/organization/members")


def _checked_permissions() -> list[str]:
    chosen = request.form.getlist("permissions")
    unknown = [p for p in chosen if p not in PERMISSIONS]
    if unknown:
        abort(400, f"Unknown permission {unknown[0]!r}.")
    return chosen


def _object_id_or_404(raw: str, what: str) -> ObjectId:
    return parse_object_id(raw, what, status=404, what=what)


def _attempt(change: Callable[[], str], page: str):
    """Run a change from a form: flash its message, or the refusal; 404s stay 404s."""
    require_valid_form()
    try:
        message = change()
    except ApiError as error:
        if error.status == 404:
            raise
        refused(error)
    else:
        flash(message)
    return redirect(url_for(page))


# Roles ---------------------------------------------------------------------------------


@roles_bp.get("")
@require_permission("viewRoles")
def roles_page():
    principal = current_principal()
    page = service.list_roles(principal, request.args, WebPageQuerySchema())
    return render_template(
        "organization/roles.html",
        roles=page.items,
        page=page,
        permissions=PERMISSIONS,
        can_manage=principal.can("manageRoles"),
        form=ActionForm(),
        owner_key=OWNER,
        own_role_id=principal.role_id,
    )


@roles_bp.post("")
@audit_action("role.create")
@require_permission("manageRoles")
def create_role():
    def change():
        name = request.form.get("name", "").strip()
        if not name or len(name) > 100:
            raise ApiError(400, "bad_request", "A role needs a name of 1 to 100 characters.")
        service.create_role(current_principal(), name, _checked_permissions())
        return f"Role {name!r} created."

    return _attempt(change, ".roles_page")


@roles_bp.post("/<roleId>")
@audit_action("role.update")
@require_permission("manageRoles")
def update_role(roleId):
    def change():
        role = service.update_role(
            current_principal(),
            _object_id_or_404(roleId, "Role"),
            permissions=_checked_permissions(),
        )
        return f"Permissions of {role['name']!r} saved."

    return _attempt(change, ".roles_page")


@roles_bp.post("/<roleId>/delete")
@audit_action("role.delete")
@require_permission("manageRoles")
def delete_role(roleId):
    role_id = _object_id_or_404(roleId, "Role")
    if not confirmed():
        role = service.find_role(current_principal(), role_id)
        return ask_first(
            "role.delete",
            role["name"],
            cancel_url=url_for(".roles_page"),
            target=("role", role["_id"], role["name"]),
        )

    def change():
        service.delete_role(current_principal(), role_id)
        return "Role deleted."

    return _attempt(change, ".roles_page")


# Members and invitations ---------------------------------------------------------------


# the invitations' pages on the Members page have their own parameters
_INVITATION_PARAMETERS = {"invitationsCursor": "cursor", "invitationsBefore": "before"}


def _members_page(invited=None, url=None, status=200):
    principal = current_principal()
    roles = service.role_choices(principal)
    member_args = MultiDict(
        [(k, v) for k, v in request.args.items(multi=True) if k in ("email", "cursor", "before")]
    )
    members = service.list_members(principal, member_args, service.WebMemberPageQuerySchema())
    invitation_args = MultiDict(
        [
            (_INVITATION_PARAMETERS[k], v)
            for k, v in request.args.items(multi=True)
            if k in _INVITATION_PARAMETERS
        ]
    )
    invitations = service.list_invitations(principal, invitation_args, WebPageQuerySchema())
    role_names = {r["_id"]: r["name"] for r in roles}
    role_names.update(
        (r["_id"], r["name"])
        for r in service.roles_by_ids(principal, [i["roleId"] for i in invitations.items])
    )
    response = render_template(
        "organization/members.html",
        members=members.items,
        members_page=members,
        email=members.filters.get("email", ""),
        roles=roles,
        role_ids={r["_id"] for r in roles},
        role_names=role_names,
        invitations=invitations.items,
        invitations_page=invitations,
        can_manage=principal.can("manageMembers"),
        own_account_id=principal.account_id,
        form=ActionForm(),
        invited=invited,
        accept_url=url,
    )
    return response, status


@members_bp.get("")
@require_permission("viewMembers")
def members_page():
    return _members_page()


@members_bp.post("")
@audit_action("member.invite")
@require_permission("manageMembers")
def invite_member():
    """Invite by email: the page shows the one-time link to pass on, this once."""
    require_valid_form()
    try:
        role_id = parse_object_id(request.form.get("roleId", ""), "roleId")
        invitation, token = service.invite(
            current_principal(), request.form.get("email", ""), role_id
        )
    except ApiError as error:
        refused(error)
        return redirect(url_for(".members_page"))
    return _members_page(invited=invitation, url=accept_url(token), status=201)


@members_bp.post("/invitations/<invitationId>/revoke")
@audit_action("invitation.revoke")
@require_permission("manageMembers")
def revoke_invitation(invitationId):
    invitation_id = _object_id_or_404(invitationId, "Invitation")
    if not confirmed():
        invitation = service.find_pending_invitation(current_principal(), invitation_id)
        return ask_first(
            "invitation.revoke",
            invitation["email"],
            cancel_url=url_for(".members_page"),
            target=("invitation", invitation["_id"], invitation["email"]),
        )

    def change():
        invitation = service.revoke_invitation(current_principal(), invitation_id)
        return f"Invitation of {invitation['email']} revoked."

    return _attempt(change, ".members_page")


@members_bp.post("/<accountId>")
@audit_action("member.roleChange")
@require_permission("manageMembers")
def change_role(accountId):
    def change():
        account_id = _object_id_or_404(accountId, "Member")
        role_id = parse_object_id(request.form.get("roleId", ""), "roleId")
        service.change_member_role(current_principal(), account_id, role_id)
        return "Role changed."

    return _attempt(change, ".members_page")


@members_bp.post("/<accountId>/remove")
@audit_action("member.remove")
@require_permission("manageMembers")
def remove_member(accountId):
    account_id = _object_id_or_404(accountId, "Member")
    principal = current_principal()
    if not confirmed():
        account = service.find_member(principal, account_id)["account"]
        return ask_first(
            "member.leave" if account_id == principal.account_id else "member.remove",
            account["email"],
            cancel_url=url_for(".members_page"),
            target=("member", account["_id"], account["email"]),
        )

    def change():
        service.remove_member(principal, account_id)
        return "Member removed."

    return _attempt(change, ".members_page")


# Settings: the name, the audit retention and the legal hold ------------------------------

settings_bp = Blueprint("settings", __name__, url_prefix="/organization/settings")


@settings_bp.get("")
@require_permission(None)
def settings_page():
    principal = current_principal()
    organization = service.find_organization(principal)
    response = render_template(
        "organization/settings.html",
        organization=organization,
        may_rename=principal.can("manageOrganization"),
        may_retain=principal.can("manageAuditRetention"),
        may_lift=principal.is_owner,  # only an Owner lifts a legal hold
        disagreement=service.retention_disagreement(principal),
        form=ActionForm(),
    )
    return response, 200, {"Cache-Control": "no-store"}


def _days(text: str) -> object:
    """A whole number as a number; anything else as typed, for the service to refuse."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else text


@settings_bp.post("")
@audit_action("organization.update")
@require_permission(None)
def save_settings():
    """Send the service only what the form changed: a member who may change the retention
    but not the name (or the other way round) can still save the page. Shortening the
    retention asks first."""
    shorter = _shortened_retention()
    if shorter is not None and not confirmed():
        days, consequence = shorter
        organization = service.find_organization(current_principal())
        return ask_first(
            "organization.shortenRetention",
            days,
            consequence=consequence,
            cancel_url=url_for(".settings_page"),
            target=("organization", organization["_id"], organization["name"]),
        )

    def change() -> str:
        principal = current_principal()
        shown = service.find_organization(principal)
        form = request.form
        if form.get("cancelPending"):  # setting the retention back cancels its shortening
            if shown.get("auditRetentionPending") is None:
                return "No change of the retention is pending."
            days = shown["auditRetentionDays"]
            service.update_organization(principal, {"auditRetentionDays": days})
            return f"The shortening of the retention was cancelled: it stays {days} days."
        wanted = {
            "name": form.get("name", shown["name"]).strip(),
            "staffAccess": form.get("staffAccess", shown["staffAccess"]),
            "auditRetentionDays": _days(form.get("auditRetentionDays", "")),
            "auditLegalHold": form.get("auditLegalHold") == "on",
        }
        if "auditRetentionDays" not in form:  # a page without the retention fields
            wanted.pop("auditRetentionDays")
            wanted.pop("auditLegalHold")
        changes = {field: value for field, value in wanted.items() if value != shown.get(field)}
        if not changes:
            return "Nothing changed."
        saved = service.update_organization(principal, changes)
        pending = saved.get("auditRetentionPending")
        if pending is not None and "auditRetentionDays" in changes:
            return (
                f"Settings saved. The retention of {pending['days']} days applies on "
                f"{readable(pending['effectiveAt'])}; until then it can be cancelled here."
            )
        return "Settings saved."

    return _attempt(change, ".settings_page")


def _shortened_retention() -> tuple[int, str] | None:
    """The days and the consequence when the form shortens the retention (within the
    installation's bounds: a value out of them is refused without asking), else None."""
    form = request.form
    principal = current_principal()
    if (
        form.get("cancelPending")
        or "auditRetentionDays" not in form
        or not principal.can("manageAuditRetention")  # refused without asking
    ):
        return None
    days = _days(form.get("auditRetentionDays", ""))
    shown = service.find_organization(principal)
    bounds = shown["auditRetentionBounds"]
    if not isinstance(days, int) or not bounds["minDays"] <= days < shown["auditRetentionDays"]:
        return None
    grace = bounds["graceDays"]
    if grace:
        when = readable(utcnow() + timedelta(days=grace))
        consequence = (
            f"Records older than {days} days will be deleted for good from {when} (in "
            f"{grace} days); until then the change can be cancelled on the settings page."
        )
    else:
        consequence = (
            f"Records older than {days} days will be deleted for good at the next purge, "
            "within the hour. This cannot be undone."
        )
    if form.get("auditLegalHold") == "on":
        consequence += " While the legal hold is on, nothing is deleted."
    return days, consequence
