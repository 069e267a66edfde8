"""Organization -> API Keys: create (the secret is shown once, on this answer only) and revoke."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from ..audit.capture.hooks import audit_action
from ..auth.principal import current_principal, require_permission
from ..errors import ApiError
from ..ids import parse_object_id
from ..web.confirm import ask_first, confirmed
from ..web.forms import ActionForm, refused, require_valid_form
from . import service

bp = Blueprint("apiKeys", __name__, url_prefix="/organization/api-keys")


def _page(created=None, secret=None, status=200):
    principal = current_principal()
    shown = service.page_data(principal, request.args)
    response = render_template(
        "organization/api_keys.html",
        keys=shown["page"].items,
        page=shown["page"],
        roles=shown["roles"],
        role_names=shown["role_names"],
        workspaces=shown["workspaces"],
        workspace_names=shown["workspace_names"],
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
@audit_action("apiKey.create")
@require_permission("manageApiKeys")
def create_key():
    require_valid_form()
    name = request.form.get("name", "").strip()
    try:
        if not name or len(name) > 200:
            raise ApiError(400, "bad_request", "A key needs a name of 1 to 200 characters.")
        workspace_id = None
        if request.form.get("workspaceId"):
            workspace_id = parse_object_id(request.form["workspaceId"], "workspaceId")
        key, secret = service.create_key(
            current_principal(),
            name=name,
            role_id=parse_object_id(request.form.get("roleId", ""), "roleId"),
            workspace_id=workspace_id,
        )
    except ApiError as error:
        refused(error)
        return redirect(url_for(".api_keys_page"))
    return _page(created=key, secret=secret, status=201)


@bp.post("/<apiKeyId>/revoke")
@audit_action("apiKey.revoke")
@require_permission("manageApiKeys")
def revoke_key(apiKeyId):
    require_valid_form()
    key_id = parse_object_id(apiKeyId, "apiKeyId", status=404, what="API key")
    if not confirmed():
        found = service.find_key(current_principal(), key_id)
        return ask_first(
            "apiKey.revoke",
            found["name"],
            cancel_url=url_for(".api_keys_page"),
            target=("apiKey", found["_id"], found["name"]),
        )
    key = service.revoke_key(current_principal(), key_id)
    flash(f"API key {key['name']!r} revoked.")
    return redirect(url_for(".api_keys_page"))
