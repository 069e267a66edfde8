"""Organization -> API Keys: create (the secret is shown once, on this answer only) and revoke."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from ..auth.principal import current_principal, require_permission
from ..db import get_db
from ..errors import ApiError
from ..ids import parse_object_id
from ..organizations import repository as orgs
from ..web.forms import ActionForm, require_valid_form
from ..workspaces import repository as workspaces
from . import repository as api_keys

bp = Blueprint("apiKeys", __name__, url_prefix="/organization/api-keys")


def _page(created=None, secret=None, status=200):
    principal = current_principal()
    db = get_db()
    roles = orgs.list_roles(db, principal.organization_id)
    response = render_template(
        "organization/api_keys.html",
        keys=api_keys.list_api_keys(db, principal.organization_id),
        roles=roles,
        role_names={r["_id"]: r["name"] for r in roles},
        workspaces=workspaces.list_workspaces(db, principal.organization_id),
        can_manage=principal.can("manageApiKeys"),
        form=ActionForm(),
        created=created,
        secret=secret,
    )
    return response, status, {"Cache-Control": "no-store"}


@bp.get("")
@require_permission("viewApiKeys")
def api_keys_page():
    return _page()


@bp.post("")
@require_permission("manageApiKeys")
def create_key():
    require_valid_form()
    principal = current_principal()
    db = get_db()
    name = request.form.get("name", "").strip()
    try:
        if not name or len(name) > 200:
            raise ApiError(400, "bad_request", "A key needs a name of 1 to 200 characters.")
        role = orgs.find_role(
            db, principal.organization_id, parse_object_id(request.form.get("roleId", ""), "roleId")
        )
        if role is None:
            raise ApiError(400, "bad_request", "Choose one of the roles.")
        if not set(role["permissions"]) <= principal.permissions:
            raise ApiError(403, "forbidden", "A key cannot hold permissions you lack.")
        workspace_id = None
        if request.form.get("workspaceId"):
            workspace_id = parse_object_id(request.form["workspaceId"], "workspaceId")
            if workspaces.find_workspace(db, principal.organization_id, workspace_id) is None:
                raise ApiError(400, "bad_request", "Choose one of the workspaces.")
    except ApiError as error:
        flash(error.message, "error")
        return redirect(url_for(".api_keys_page"))
    key, secret = api_keys.create_api_key(
        db,
        principal.organization_id,
        name=name,
        role_id=role["_id"],
        workspace_id=workspace_id,
        created_by=principal.account_id,
    )
    return _page(created=key, secret=secret, status=201)


@bp.post("/<apiKeyId>/revoke")
@require_permission("manageApiKeys")
def revoke_key(apiKeyId):
    require_valid_form()
    key_id = parse_object_id(apiKeyId, "apiKeyId", status=404, what="API key")
    key = api_keys.revoke_api_key(get_db(), current_principal().organization_id, key_id)
    flash(f"API key {key['name']!r} revoked.")
    return redirect(url_for(".api_keys_page"))
