"""The admin pages: Organization -> Roles and Members. Every form is CSRF-protected."""

from __future__ import annotations

from bson import ObjectId
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from ..auth.principal import current_principal, require_permission
from ..db import get_db
from ..errors import ApiError
from ..ids import parse_object_id
from ..web.forms import ActionForm, require_valid_form
from . import repository as orgs
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


@roles_bp.get("")
@require_permission("viewRoles")
def roles_page():
    principal = current_principal()
    roles = orgs.list_roles(get_db(), principal.organization_id)
    return render_template(
        "organization/roles.html",
        roles=roles,
        permissions=PERMISSIONS,
        can_manage=principal.can("manageRoles"),
        form=ActionForm(),
        owner_key=OWNER,
    )


@roles_bp.post("")
@require_permission("manageRoles")
def create_role():
    require_valid_form()
    name = request.form.get("name", "").strip()
    if not name or len(name) > 100:
        flash("A role needs a name of 1 to 100 characters.", "error")
        return redirect(url_for(".roles_page"))
    try:
        orgs.create_role(
            get_db(), current_principal().organization_id, name, _checked_permissions()
        )
    except ApiError as error:
        flash(error.message, "error")
        return redirect(url_for(".roles_page"))
    flash(f"Role {name!r} created.")
    return redirect(url_for(".roles_page"))


@roles_bp.post("/<roleId>")
@require_permission("manageRoles")
def update_role(roleId):
    require_valid_form()
    role_id = _object_id_or_404(roleId, "Role")
    try:
        role = orgs.update_role(
            get_db(),
            current_principal().organization_id,
            role_id,
            permissions=_checked_permissions(),
        )
    except ApiError as error:
        if error.status == 404:
            raise
        flash(error.message, "error")
        return redirect(url_for(".roles_page"))
    flash(f"Permissions of {role['name']!r} saved.")
    return redirect(url_for(".roles_page"))


@roles_bp.post("/<roleId>/delete")
@require_permission("manageRoles")
def delete_role(roleId):
    require_valid_form()
    try:
        orgs.delete_role(
            get_db(), current_principal().organization_id, _object_id_or_404(roleId, "Role")
        )
    except ApiError as error:
        if error.status == 404:
            raise
        flash(error.message, "error")
        return redirect(url_for(".roles_page"))
    flash("Role deleted.")
    return redirect(url_for(".roles_page"))


@members_bp.get("")
@require_permission("viewMembers")
def members_page():
    principal = current_principal()
    db = get_db()
    return render_template(
        "organization/members.html",
        members=orgs.list_members(db, principal.organization_id),
        roles=orgs.list_roles(db, principal.organization_id),
        can_manage=principal.can("manageMembers"),
        form=ActionForm(),
    )


@members_bp.post("")
@require_permission("manageMembers")
def add_member():
    require_valid_form()
    db = get_db()
    organization_id = current_principal().organization_id
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    role_id = request.form.get("roleId", "")
    try:
        role = orgs.find_role(db, organization_id, parse_object_id(role_id, "roleId"))
        if role is None or "@" not in email or len(email) > 320:
            raise ApiError(400, "bad_request", "Give an email address and one of the roles.")
        account = orgs.find_account_by_email(db, email)
        if account is None:
            if len(password) < 8:
                raise ApiError(
                    400, "bad_request", "A new account needs a password of at least 8 characters."
                )
            account = orgs.create_account(db, email, password)
        orgs.add_membership(db, organization_id, account["_id"], role["_id"])
    except ApiError as error:
        flash(error.message, "error")
        return redirect(url_for(".members_page"))
    flash(f"{email} added as {role['name']}.")
    return redirect(url_for(".members_page"))


@members_bp.post("/<accountId>")
@require_permission("manageMembers")
def change_role(accountId):
    require_valid_form()
    account_id = _object_id_or_404(accountId, "Member")
    try:
        role_id = parse_object_id(request.form.get("roleId", ""), "roleId")
        orgs.change_member_role(get_db(), current_principal().organization_id, account_id, role_id)
    except ApiError as error:
        if error.status == 404:
            raise
        flash(error.message, "error")
        return redirect(url_for(".members_page"))
    flash("Role changed.")
    return redirect(url_for(".members_page"))


@members_bp.post("/<accountId>/remove")
@require_permission("manageMembers")
def remove_member(accountId):
    require_valid_form()
    try:
        orgs.remove_member(
            get_db(), current_principal().organization_id, _object_id_or_404(accountId, "Member")
        )
    except ApiError as error:
        if error.status == 404:
            raise
        flash(error.message, "error")
        return redirect(url_for(".members_page"))
    flash("Member removed.")
    return redirect(url_for(".members_page"))
