"""Workspaces and the pathways inside them, always read through the caller's organization."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ..db import Document, IndexSpec, TenantCollection
from ..errors import conflict, not_found
from ..ids import utcnow
from ..pagination import Listing, PageRequest, find_page

# the lists of the API, each walked on its index (``pagination``)
WORKSPACES = Listing("workspaces", "workspaces", "org_name_id", "nameLower", 1)
PATHWAYS = Listing("pathways", "pathways", "org_workspace_newest_id", "createdAt", -1)

INDEXES: dict[str, list[IndexSpec]] = {
    "workspaces": [
        (
            [("organizationId", ASCENDING), ("nameLower", ASCENDING)],
            {"name": "org_name_unique", "unique": True},
        ),
        # the list, by name (a name is unique, but the page's keyset is (name, _id))
        (
            [("organizationId", ASCENDING), ("nameLower", ASCENDING), ("_id", ASCENDING)],
            {"name": "org_name_id"},
        ),
    ],
    "pathways": [
        (
            [
                ("organizationId", ASCENDING),
                ("workspaceId", ASCENDING),
                ("createdAt", DESCENDING),
                ("_id", DESCENDING),
            ],
            {"name": "org_workspace_newest_id"},
        ),
    ],
}


def create_workspace(
    db: Database[Document], organization_id: ObjectId, name: str, description: str | None = None
) -> Document:
    now = utcnow()
    workspace: Document = {
        "_id": ObjectId(),
        "name": name.strip(),
        "nameLower": name.strip().lower(),
        "description": (description or "").strip() or None,
        "createdAt": now,
        "updatedAt": now,
    }
    try:
        TenantCollection(db.workspaces, organization_id).insert_one(workspace)
    except DuplicateKeyError:
        raise conflict("A workspace with this name already exists.", "name") from None
    return workspace


def list_workspaces(
    db: Database[Document], organization_id: ObjectId, request: PageRequest
) -> tuple[list[Document], bool]:
    """A page of the organization's workspaces by name, and whether more follow."""
    return find_page(TenantCollection(db.workspaces, organization_id), WORKSPACES, {}, request)


def find_workspace(
    db: Database[Document], organization_id: ObjectId, workspace_id: ObjectId
) -> Document | None:
    return TenantCollection(db.workspaces, organization_id).find_one({"_id": workspace_id})


def find_workspace_by_name(
    db: Database[Document], organization_id: ObjectId, name: str
) -> Document | None:
    """A workspace by its name, any case (the org_name_unique index)."""
    return TenantCollection(db.workspaces, organization_id).find_one(
        {"nameLower": name.strip().lower()}, {"_id": 1, "name": 1}
    )


def find_workspaces_by_ids(
    db: Database[Document], organization_id: ObjectId, ids: Iterable[ObjectId | None]
) -> dict[ObjectId, Document]:
    ids = [i for i in set(ids) if i is not None]
    if not ids:
        return {}
    found = TenantCollection(db.workspaces, organization_id).find({"_id": {"$in": ids}})
    return {w["_id"]: w for w in found}


def update_workspace(
    db: Database[Document],
    organization_id: ObjectId,
    workspace_id: ObjectId,
    changes: Mapping[str, Any],
) -> tuple[Document, Document]:
    """Apply the changes; return the workspace before and after them (one atomic update)."""
    update = {k: v for k, v in changes.items() if k in ("name", "description")}
    if "name" in update:
        update["name"] = update["name"].strip()
        update["nameLower"] = update["name"].lower()
    update["updatedAt"] = utcnow()
    try:
        before = TenantCollection(db.workspaces, organization_id).find_one_and_update(
            {"_id": workspace_id}, {"$set": update}, return_document=ReturnDocument.BEFORE
        )
    except DuplicateKeyError:
        raise conflict("A workspace with this name already exists.", "name") from None
    if before is None:
        raise not_found("Workspace", "workspaceId")
    return before, {**before, **update}


def delete_workspace(
    db: Database[Document], organization_id: ObjectId, workspace_id: ObjectId
) -> tuple[Document, int, int]:
    """Delete a workspace and its pathways; API keys bound to it are revoked. Return the
    deleted workspace, how many pathways went with it and how many keys were revoked."""
    deleted = TenantCollection(db.workspaces, organization_id).find_one_and_delete(
        {"_id": workspace_id}
    )
    if deleted is None:
        raise not_found("Workspace", "workspaceId")
    pathways = TenantCollection(db.pathways, organization_id).delete_many(
        {"workspaceId": workspace_id}
    )
    keys = TenantCollection(db.api_keys, organization_id).update_many(
        {"workspaceId": workspace_id, "revokedAt": None},
        {"$set": {"revokedAt": utcnow()}},
    )
    return deleted, pathways.deleted_count, keys.modified_count


# Pathways ------------------------------------------------------------------------------


def create_pathway(
    db: Database[Document],
    organization_id: ObjectId,
    workspace_id: ObjectId,
    data: Mapping[str, Any],
    created_by: ObjectId | None,
) -> Document:
    now = utcnow()
    pathway: Document = {
        "_id": ObjectId(),
        "workspaceId": workspace_id,
        "name": data["name"].strip(),
        "description": (data.get("description") or "").strip() or None,
        "steps": data.get("steps", []),
        "createdBy": created_by,
        "createdAt": now,
        "updatedAt": now,
    }
    TenantCollection(db.pathways, organization_id).insert_one(pathway)
    return pathway


def list_pathways(
    db: Database[Document], organization_id: ObjectId, workspace_id: ObjectId, request: PageRequest
) -> tuple[list[Document], bool]:
    """A page of a workspace's pathways, newest first, and whether more follow."""
    pathways = TenantCollection(db.pathways, organization_id)
    return find_page(pathways, PATHWAYS, {"workspaceId": workspace_id}, request)


def find_pathway(
    db: Database[Document], organization_id: ObjectId, workspace_id: ObjectId, pathway_id: ObjectId
) -> Document | None:
    return TenantCollection(db.pathways, organization_id).find_one(
        {"_id": pathway_id, "workspaceId": workspace_id}
    )


def update_pathway(
    db: Database[Document],
    organization_id: ObjectId,
    workspace_id: ObjectId,
    pathway_id: ObjectId,
    changes: Mapping[str, Any],
) -> tuple[Document, Document]:
    """Apply the changes; return the pathway before and after them (one atomic update)."""
    update = {k: v for k, v in changes.items() if k in ("name", "description", "steps")}
    update["updatedAt"] = utcnow()
    before = TenantCollection(db.pathways, organization_id).find_one_and_update(
        {"_id": pathway_id, "workspaceId": workspace_id},
        {"$set": update},
        return_document=ReturnDocument.BEFORE,
    )
    if before is None:
        raise not_found("Pathway", "pathwayId")
    return before, {**before, **update}


def delete_pathway(
    db: Database[Document], organization_id: ObjectId, workspace_id: ObjectId, pathway_id: ObjectId
) -> Document:
    """Delete a pathway; return what was deleted."""
    deleted = TenantCollection(db.pathways, organization_id).find_one_and_delete(
        {"_id": pathway_id, "workspaceId": workspace_id}
    )
    if deleted is None:
        raise not_found("Pathway", "pathwayId")
    return deleted
