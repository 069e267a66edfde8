"""Organization -> Workspaces: list, create, rename and delete workspaces, each one's audit
log a click away.

The same rules as the API (``service``; ``viewWorkspaces`` to see the page,
``manageWorkspaces`` to change anything), the same records (``workspace.create``,
``.update``, ``.delete``, with their ``changes`` and ``workspaceId``), the API's schemas for
the form's fields. Deleting asks first (``web.confirm``); a refused form comes back as typed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import Schema, ValidationError

from ..audit.capture.context import note_error
from ..audit.capture.hooks import audit_action
from ..auth.principal import current_principal, require_permission
from ..errors import ApiError, bad_request
from ..ids import parse_object_id
from ..organizations.permissions import VIEW_AUDIT_LOG
from ..pagination import WebPageQuerySchema
from ..schemas import first_error
from ..web.confirm import ask_first, confirmed
from ..web.forms import ActionForm, require_valid_form
from . import service
from .schemas import WorkspaceCreateSchema, WorkspaceUpdateSchema

bp = Blueprint("workspaces", __name__, url_prefix="/organization/workspaces")
VIEW, MANAGE = "viewWorkspaces", "manageWorkspaces"


def _page(typed: dict[str, Any] | None = None, error: ApiError | None = None, status: int = 200):
    """The list; after a refusal, the form that was sent as it was typed, with the reason."""
    principal = current_principal()
    page = service.list_workspaces(principal, request.args, WebPageQuerySchema())
    response = render_template(
        "organization/workspaces.html",
        workspaces=page.items,
        page=page,
        can_manage=principal.can(MANAGE),
        can_view_log=principal.can(VIEW_AUDIT_LOG),
        form=ActionForm(),
        typed=typed or {},
        error=error,
    )
    return response, status, {"Cache-Control": "no-store"}


@bp.get("")
@require_permission(VIEW)
def workspaces_page():
    return _page()


def _loaded(schema: Schema, names: tuple[str, ...]) -> dict[str, Any]:
    """The form's fields through the API's schema: the same limits and the same messages."""
    data = {name: request.form[name] for name in names if name in request.form}
    try:
        return schema.load(data)
    except ValidationError as error:
        field, message = first_error(error.messages)
        raise bad_request(f"{field}: {message}", field) from None


def _refused(error: ApiError, typed: dict[str, Any]):
    """The page again, as typed, saying why beside the form (and in the record)."""
    note_error(error.code, error.message)
    return _page(typed=typed, error=error, status=error.status)


def _workspace(raw_id: str) -> dict[str, Any]:
    """The workspace of the path, in the caller's organization (404 otherwise), noted as the
    request's workspace, as the API's requests note it."""
    workspace_id = parse_object_id(raw_id, "workspaceId", status=404, what="Workspace")
    return service.workspace_in_scope(current_principal(), workspace_id, "workspaceId")


@bp.post("")
@audit_action("workspace.create")
@require_permission(MANAGE)
def create_workspace():
    require_valid_form()
    typed = {
        "form": "create",
        "name": request.form.get("name", ""),
        "description": request.form.get("description", ""),
    }
    try:
        data = _loaded(WorkspaceCreateSchema(), ("name", "description"))
        workspace = service.create_workspace(current_principal(), data["name"], data["description"])
    except ApiError as error:
        return _refused(error, typed)
    flash(f"Workspace {workspace['name']!r} created.")
    return redirect(url_for(".workspaces_page"))


@bp.post("/<workspaceId>")
@audit_action("workspace.update")
@require_permission(MANAGE)
def rename_workspace(workspaceId):
    require_valid_form()
    workspace = _workspace(workspaceId)
    typed = {"form": str(workspace["_id"]), "name": request.form.get("name", "")}
    try:
        data = _loaded(WorkspaceUpdateSchema(), ("name",))
        if "name" not in data:
            raise bad_request("name: the new name of the workspace is needed.", "name")
        renamed = service.update_workspace(current_principal(), workspace, data)
    except ApiError as error:
        return _refused(error, typed)
    flash(f"Workspace {workspace['name']!r} renamed to {renamed['name']!r}.")
    return redirect(url_for(".workspaces_page"))


@bp.post("/<workspaceId>/delete")
@audit_action("workspace.delete")
@require_permission(MANAGE)
def delete_workspace(workspaceId):
    require_valid_form()
    workspace = _workspace(workspaceId)
    if not confirmed():
        return ask_first(
            "workspace.delete",
            workspace["name"],
            cancel_url=url_for(".workspaces_page"),
            target=("workspace", workspace["_id"], workspace["name"]),
        )
    service.delete_workspace(current_principal(), workspace)
    flash(f"Workspace {workspace['name']!r} deleted.")
    return redirect(url_for(".workspaces_page"))
