"""Workspaces as a principal may use them: one rule for the API, the pages and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import ObjectId
from marshmallow import Schema
from werkzeug.datastructures import MultiDict

from ..audit.capture.changes import Target, record_changes
from ..audit.capture.context import note_created, note_workspace
from ..auth.principal import Principal
from ..db import Document, get_db
from ..errors import ApiError, not_found
from ..pagination import Page, PageQuerySchema, load_page_query, make_page, paged, read_request
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


def list_workspaces(
    principal: Principal, args: MultiDict[str, str] | None = None, schema: Schema | None = None
) -> Page:
    """A page of the workspaces by name (``schema``: the page's parameters, the API's by
    default; the web page's also pages back); a key bound to a workspace sees that one only."""
    db = get_db()
    args = args if args is not None else MultiDict()
    bound = principal.bound_workspace_id
    if bound is not None:
        load_page_query(args, schema or PageQuerySchema())
        found = workspaces.find_workspace(db, principal.org, bound)
        return Page([found] if found else [])
    return paged(
        args,
        workspaces.WORKSPACES,
        principal.org,
        lambda request: workspaces.list_workspaces(db, principal.org, request),
        schema,
    )


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


def list_pathways(
    principal: Principal, workspace: Mapping[str, Any], args: MultiDict[str, str] | None = None
) -> Page:
    """A page of the workspace's pathways, newest first (a cursor of another workspace's
    list is refused: the workspace is part of the list's filters)."""
    db = get_db()
    filters = {"workspaceId": str(workspace["_id"])}
    loaded = load_page_query(args if args is not None else MultiDict(), PageQuerySchema())
    request = read_request(loaded, workspaces.PATHWAYS, principal.org, filters)
    found, more = workspaces.list_pathways(db, principal.org, workspace["_id"], request)
    return make_page(found, more, request, workspaces.PATHWAYS, principal.org, filters)


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
