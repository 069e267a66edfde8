"""``/api/v1/workspaces`` and the workspace-specific ``/api/v1/pathways``.

A pathway request acts in the workspace named by ``X-Workspace-Id``, or in the one its API
key is bound to. A key bound to a workspace sees that workspace only.
"""

from flask import Blueprint, jsonify, request

from ..apidoc import operation
from ..audit.capture.hooks import audit_action
from ..auth.principal import current_principal, require_permission
from ..errors import bad_request
from ..ids import parse_object_id
from ..pagination import PageQuerySchema
from ..schemas import load_body
from . import service
from .schemas import (
    PathwayCreateSchema,
    PathwayListSchema,
    PathwaySchema,
    PathwayUpdateSchema,
    WorkspaceCreateSchema,
    WorkspaceListSchema,
    WorkspaceSchema,
    WorkspaceUpdateSchema,
)
from .service import workspace_in_scope

workspaces_bp = Blueprint("workspaces", __name__)
pathways_bp = Blueprint("pathways", __name__)


def _workspace_from_path(raw_id: str) -> dict:
    workspace_id = parse_object_id(raw_id, "workspaceId", status=404, what="Workspace")
    return workspace_in_scope(current_principal(), workspace_id, "workspaceId")


@workspaces_bp.get("/workspaces")
@audit_action("workspace.list")
@operation(
    "List workspaces by name, a page at a time",
    response=(200, WorkspaceListSchema),
    errors=(400, 401, 403),
    query=PageQuerySchema,
)
@require_permission("viewWorkspaces", workspace_scoped=True)
def list_workspaces():
    page = service.list_workspaces(current_principal(), request.args)
    return jsonify(items=WorkspaceSchema(many=True).dump(page.items), nextCursor=page.next_cursor)


@workspaces_bp.post("/workspaces")
@audit_action("workspace.create")
@operation(
    "Create a workspace",
    body=WorkspaceCreateSchema,
    response=(201, WorkspaceSchema),
    errors=(400, 401, 403, 409, 415),
)
@require_permission("manageWorkspaces")
def create_workspace():
    data = load_body(WorkspaceCreateSchema())
    workspace = service.create_workspace(current_principal(), data["name"], data["description"])
    return jsonify(WorkspaceSchema().dump(workspace)), 201


@workspaces_bp.get("/workspaces/<workspaceId>")
@audit_action("workspace.view")
@operation("Read a workspace", response=(200, WorkspaceSchema), errors=(401, 403, 404))
@require_permission("viewWorkspaces", workspace_scoped=True)
def get_workspace(workspaceId):
    return jsonify(WorkspaceSchema().dump(_workspace_from_path(workspaceId)))


@workspaces_bp.patch("/workspaces/<workspaceId>")
@audit_action("workspace.update")
@operation(
    "Rename or describe a workspace",
    body=WorkspaceUpdateSchema,
    response=(200, WorkspaceSchema),
    errors=(400, 401, 403, 404, 409, 415),
)
@require_permission("manageWorkspaces")
def update_workspace(workspaceId):
    workspace = _workspace_from_path(workspaceId)
    data = load_body(WorkspaceUpdateSchema())
    updated = service.update_workspace(current_principal(), workspace, data)
    return jsonify(WorkspaceSchema().dump(updated))


@workspaces_bp.delete("/workspaces/<workspaceId>")
@audit_action("workspace.delete")
@operation(
    "Delete a workspace, its pathways and bound keys",
    response=(204, None),
    errors=(401, 403, 404),
)
@require_permission("manageWorkspaces")
def delete_workspace(workspaceId):
    workspace = _workspace_from_path(workspaceId)
    service.delete_workspace(current_principal(), workspace)
    return "", 204


# Pathways ------------------------------------------------------------------------------


def _request_workspace() -> dict:
    """The workspace this pathway request acts in, checked against the caller's organization."""
    principal = current_principal()
    header = request.headers.get("X-Workspace-Id", "").strip()
    if header:
        workspace_id = parse_object_id(header, "X-Workspace-Id")
    elif principal.bound_workspace_id is not None:
        workspace_id = principal.bound_workspace_id
    else:
        raise bad_request(
            "Pathways are workspace-specific: send the X-Workspace-Id header with a workspace id.",
            "X-Workspace-Id",
        )
    return workspace_in_scope(principal, workspace_id, "X-Workspace-Id", refuse_other=True)


@pathways_bp.get("/pathways")
@audit_action("pathway.list")
@operation(
    "List the workspace's pathways, newest first, a page at a time",
    response=(200, PathwayListSchema),
    errors=(400, 401, 403, 404),
    workspace=True,
    query=PageQuerySchema,
)
@require_permission("viewPathways", workspace_scoped=True)
def list_pathways():
    workspace = _request_workspace()
    page = service.list_pathways(current_principal(), workspace, request.args)
    return jsonify(items=PathwaySchema(many=True).dump(page.items), nextCursor=page.next_cursor)


@pathways_bp.post("/pathways")
@audit_action("pathway.create")
@operation(
    "Create a pathway in the workspace",
    body=PathwayCreateSchema,
    response=(201, PathwaySchema),
    errors=(400, 401, 403, 404, 415),
    workspace=True,
)
@require_permission("managePathways", workspace_scoped=True)
def create_pathway():
    workspace = _request_workspace()
    data = load_body(PathwayCreateSchema())
    pathway = service.create_pathway(current_principal(), workspace, data)
    return jsonify(PathwaySchema().dump(pathway)), 201


def _pathway_id(raw: str):
    return parse_object_id(raw, "pathwayId", status=404, what="Pathway")


@pathways_bp.get("/pathways/<pathwayId>")
@audit_action("pathway.view")
@operation(
    "Read a pathway",
    response=(200, PathwaySchema),
    errors=(400, 401, 403, 404),
    workspace=True,
)
@require_permission("viewPathways", workspace_scoped=True)
def get_pathway(pathwayId):
    workspace = _request_workspace()
    pathway = service.find_pathway(current_principal(), workspace, _pathway_id(pathwayId))
    return jsonify(PathwaySchema().dump(pathway))


@pathways_bp.patch("/pathways/<pathwayId>")
@audit_action("pathway.update")
@operation(
    "Edit a pathway",
    body=PathwayUpdateSchema,
    response=(200, PathwaySchema),
    errors=(400, 401, 403, 404, 415),
    workspace=True,
)
@require_permission("managePathways", workspace_scoped=True)
def update_pathway(pathwayId):
    workspace = _request_workspace()
    pathway_id = _pathway_id(pathwayId)
    data = load_body(PathwayUpdateSchema())
    pathway = service.update_pathway(current_principal(), workspace, pathway_id, data)
    return jsonify(PathwaySchema().dump(pathway))


@pathways_bp.delete("/pathways/<pathwayId>")
@audit_action("pathway.delete")
@operation(
    "Delete a pathway",
    response=(204, None),
    errors=(400, 401, 403, 404),
    workspace=True,
)
@require_permission("managePathways", workspace_scoped=True)
def delete_pathway(pathwayId):
    workspace = _request_workspace()
    service.delete_pathway(current_principal(), workspace, _pathway_id(pathwayId))
    return "", 204
