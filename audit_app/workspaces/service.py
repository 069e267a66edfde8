"""Workspaces as a principal may use them: one rule for the API, the pages and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import ObjectId

from ..audit.changes import Target, record_changes
from ..audit.context import note_created, note_workspace
from ..auth.principal import Principal
from ..db import Document, get_db
from ..errors import ApiError, not_found
from . import repository as workspaces


def workspace_in_scope(
    principal: Principal, workspace_id: ObjectId, field: str, *, refuse_other: bool = False
) -> Document:
    """The workspace, if the principal may act in it; noted for the request's record.

    It must belong to the principal's organization, and a key bound to a workspace acts
    in that one only: another is unknown to it (404), or, when the caller named it
    explicitly in a header (``refuse_other``), refused (403).
    """
    bound = principal.bound_workspace_id
    if bound is not None and workspace_id != bound:
        if refuse_other:
            raise ApiError(403, "forbidden", "This API key is bound to another workspace.", field)
        raise not_found("Workspace", field)
    workspace = workspaces.find_workspace(get_db(), principal.org, workspace_id)
    if workspace is None:
        raise not_found("Workspace", field)
    note_workspace(workspace_id)
    return workspace


# What a reader of the audit log sees of each object, field by field (``changes``)
WORKSPACE_FIELDS = ("name", "description")
PATHWAY_FIELDS = ("name", "description", "steps")


def list_workspaces(principal: Principal) -> list[Document]:
    return workspaces.list_workspaces(get_db(), principal.org, only=principal.bound_workspace_id)


def create_workspace(principal: Principal, name: str, description: str | None) -> Document:
    workspace = workspaces.create_workspace(get_db(), principal.org, name, description)
    note_workspace(workspace["_id"])
    note_created(workspace["_id"])
    record_changes(None, workspace, WORKSPACE_FIELDS, target=_workspace(workspace))
    return workspace


def update_workspace(
    principal: Principal, workspace: Mapping[str, Any], data: Mapping[str, Any]
) -> Document:
    before, after = workspaces.update_workspace(get_db(), principal.org, workspace["_id"], data)
    record_changes(before, after, WORKSPACE_FIELDS, target=_workspace(before))
    return after


def delete_workspace(principal: Principal, workspace: Mapping[str, Any]) -> None:
    """Delete a workspace with its pathways; its bound keys are revoked (all in the record)."""
    deleted, pathways, keys = workspaces.delete_workspace(get_db(), principal.org, workspace["_id"])
    went = {"pathways": pathways or None, "boundApiKeys": keys or None}  # what went with it
    record_changes(
        {**deleted, **went}, None, (*WORKSPACE_FIELDS, *went), target=_workspace(deleted)
    )


def _workspace(workspace: Mapping[str, Any]) -> Target:
    return ("workspace", workspace["_id"], workspace.get("name"))


def _pathway(pathway: Mapping[str, Any]) -> Target:
    return ("pathway", pathway["_id"], pathway.get("name"))


def list_pathways(principal: Principal, workspace: Mapping[str, Any]) -> list[Document]:
    return workspaces.list_pathways(get_db(), principal.org, workspace["_id"])


def find_pathway(
    principal: Principal, workspace: Mapping[str, Any], pathway_id: ObjectId
) -> Document:
    pathway = workspaces.find_pathway(get_db(), principal.org, workspace["_id"], pathway_id)
    if pathway is None:
        raise not_found("Pathway", "pathwayId")
    return pathway


def create_pathway(
    principal: Principal, workspace: Mapping[str, Any], data: Mapping[str, Any]
) -> Document:
    pathway = workspaces.create_pathway(
        get_db(), principal.org, workspace["_id"], data, principal.account_id
    )
    note_created(pathway["_id"])
    record_changes(None, pathway, PATHWAY_FIELDS, target=_pathway(pathway))
    return pathway


def update_pathway(
    principal: Principal,
    workspace: Mapping[str, Any],
    pathway_id: ObjectId,
    data: Mapping[str, Any],
) -> Document:
    before, after = workspaces.update_pathway(
        get_db(), principal.org, workspace["_id"], pathway_id, data
    )
    record_changes(before, after, PATHWAY_FIELDS, target=_pathway(before))
    return after


def delete_pathway(
    principal: Principal, workspace: Mapping[str, Any], pathway_id: ObjectId
) -> None:
    deleted = workspaces.delete_pathway(get_db(), principal.org, workspace["_id"], pathway_id)
    record_changes(deleted, None, PATHWAY_FIELDS, target=_pathway(deleted))
