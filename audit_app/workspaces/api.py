"""``/api/v1/workspaces`` and the workspace-specific ``/api/v1/pathways``.

A pathway request acts in the workspace named by ``X-Workspace-Id``, or in the one its API
key is bound to. A key bound to a workspace sees that workspace only.
"""

from flask import Blueprint, jsonify, request

from ..apidoc import operation
from ..audit.context import note_workspace
from ..auth.principal import current_principal, require_permission
from ..db import get_db
from ..errors import bad_request, not_found
from ..ids import parse_object_id
from ..schemas import load_body
from . import repository as workspaces
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
@operation("List workspaces", response=(200, WorkspaceListSchema), errors=(401, 403))
@require_permission("viewWorkspaces", workspace_scoped=True)
def list_workspaces():
    principal = current_principal()
    items = workspaces.list_workspaces(get_db(), principal.org, only=principal.bound_workspace_id)
    return jsonify(items=WorkspaceSchema(many=True).dump(items))


@workspaces_bp.post("/workspaces")
@operation(
    "Create a workspace",
    body=WorkspaceCreateSchema,
    response=(201, WorkspaceSchema),
    errors=(400, 401, 403, 409, 415),
)
@require_permission("manageWorkspaces")
def create_workspace():
    principal = current_principal()
    data = load_body(WorkspaceCreateSchema())
    workspace = workspaces.create_workspace(
        get_db(), principal.org, data["name"], data["description"]
    )
    note_workspace(workspace["_id"])
    return jsonify(WorkspaceSchema().dump(workspace)), 201


@workspaces_bp.get("/workspaces/<workspaceId>")
@operation("Read a workspace", response=(200, WorkspaceSchema), errors=(401, 403, 404))
@require_permission("viewWorkspaces", workspace_scoped=True)
def get_workspace(workspaceId):
    return jsonify(WorkspaceSchema().dump(_workspace_from_path(workspaceId)))


@workspaces_bp.patch("/workspaces/<workspaceId>")
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
    updated = workspaces.update_workspace(get_db(), current_principal().org, workspace["_id"], data)
    return jsonify(WorkspaceSchema().dump(updated))


@workspaces_bp.delete("/workspaces/<workspaceId>")
@operation(
    "Delete a workspace, its pathways and bound keys",
    response=(204, None),
    errors=(401, 403, 404),
)
@require_permission("manageWorkspaces")
def delete_workspace(workspaceId):
    workspace = _workspace_from_path(workspaceId)
    workspaces.delete_workspace(get_db(), current_principal().org, workspace["_id"])
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
@operation(
    "List the workspace's pathways",
    response=(200, PathwayListSchema),
    errors=(400, 401, 403, 404),
    workspace=True,
)
@require_permission("viewPathways", workspace_scoped=True)
def list_pathways():
    workspace = _request_workspace()
    items = workspaces.list_pathways(
        get_db(), current_principal().organization_id, workspace["_id"]
    )
    return jsonify(items=PathwaySchema(many=True).dump(items))


@pathways_bp.post("/pathways")
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
    principal = current_principal()
    pathway = workspaces.create_pathway(
        get_db(), principal.org, workspace["_id"], data, principal.account_id
    )
    return jsonify(PathwaySchema().dump(pathway)), 201


def _pathway_id(raw: str):
    return parse_object_id(raw, "pathwayId", status=404, what="Pathway")


@pathways_bp.get("/pathways/<pathwayId>")
@operation(
    "Read a pathway",
    response=(200, PathwaySchema),
    errors=(400, 401, 403, 404),
    workspace=True,
)
@require_permission("viewPathways", workspace_scoped=True)
def get_pathway(pathwayId):
    workspace = _request_workspace()
    pathway = workspaces.find_pathway(
        get_db(), current_principal().organization_id, workspace["_id"], _pathway_id(pathwayId)
    )
    if pathway is None:
        raise not_found("Pathway", "pathwayId")
    return jsonify(PathwaySchema().dump(pathway))


@pathways_bp.patch("/pathways/<pathwayId>")
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
    pathway = workspaces.update_pathway(
        get_db(), current_principal().organization_id, workspace["_id"], pathway_id, data
    )
    return jsonify(PathwaySchema().dump(pathway))


@pathways_bp.delete("/pathways/<pathwayId>")
@operation(
    "Delete a pathway",
    response=(204, None),
    errors=(400, 401, 403, 404),
    workspace=True,
)
@require_permission("managePathways", workspace_scoped=True)
def delete_pathway(pathwayId):
    workspace = _request_workspace()
    workspaces.delete_pathway(
        get_db(), current_principal().organization_id, workspace["_id"], _pathway_id(pathwayId)
    )
    return "", 204
