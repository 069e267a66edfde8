"""API keys: who may create one with which role, and what becomes of them.

A key never holds a permission its creator lacks: checked when it is made, and again on
every request (its permissions are its role's, cut down to what its creator holds now).
A key made by another key carries the same creator, the person at the root. Keys made by
the operator on the command line have no creator and hold their role. When a member leaves
the organization, the keys they created are revoked with the membership (docs/security.md).
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from marshmallow import Schema
from werkzeug.datastructures import MultiDict

from ..audit.capture.changes import record_changes
from ..audit.capture.context import note_created
from ..auth.principal import Principal
from ..credentials import service as credentials
from ..db import Document, get_db
from ..errors import ApiError, not_found, unprocessable
from ..organizations import repository as orgs
from ..organizations.permissions import MEMBER, OWNER
from ..organizations.service import check_may_grant
from ..pagination import Page, PageRequest, WebPageQuerySchema, paged
from ..workspaces import repository as workspaces
from . import repository as api_keys

KEY_FIELDS = ("name", "role", "roleId", "workspace", "workspaceId")  # as ``changes`` shows


def create_key(
    actor: Principal,
    *,
    name: str,
    role_id: ObjectId | None,
    workspace_id: ObjectId | None,
) -> tuple[Document, str]:
    """Create a key with a role (Member by default); return it and its secret, shown once."""
    db = get_db()
    organization_id = actor.org
    if role_id is None:
        role = orgs.find_role_by_key(db, organization_id, MEMBER)
    else:
        role = orgs.find_role(db, organization_id, role_id)
    if role is None:
        raise unprocessable("No role with this id in the organization.", "roleId")
    check_may_grant(actor, role)
    if role.get("key") == OWNER:
        raise unprocessable(
            "API keys cannot hold the Owner role; choose Admin or a custom role.", "roleId"
        )
    workspace = None
    if workspace_id is not None:
        workspace = workspaces.find_workspace(db, organization_id, workspace_id)
        if workspace is None:
            raise unprocessable("No workspace with this id in the organization.", "workspaceId")
    key, secret = api_keys.create_api_key(
        db,
        organization_id,
        name=name,
        role_id=role["_id"],
        workspace_id=workspace_id,
        created_by=actor.account_id or actor.key_creator_id,
        created_by_api_key=actor.api_key_id,
    )
    note_created(key["_id"])
    shown = {**key, "role": role["name"], "workspace": workspace["name"] if workspace else None}
    record_changes(None, shown, KEY_FIELDS, target=("apiKey", key["_id"], key["name"]))
    return key, secret


def find_key(actor: Principal, key_id: ObjectId) -> Document:
    """One key of the organization (never its hash); a 404 if there is none."""
    key = api_keys.find_api_keys_by_ids(get_db(), actor.org, [key_id]).get(key_id)
    if key is None:
        raise not_found("API key", "apiKeyId")
    return key


def revoke_key(actor: Principal, key_id: ObjectId) -> Document:
    """Revoke a key; revoking one already revoked changes nothing and says so in no record."""
    key, revoked_now = api_keys.revoke_api_key(get_db(), actor.org, key_id)
    if revoked_now:
        # what the key created dies with it: the keys it made, the invitations they sent
        went = credentials.after_key_revoked(actor.org, key["_id"])
        went = {name: value or None for name, value in went.items()}
        record_changes(
            {"name": key["name"], "revokedAt": None},
            {**key, **went},
            ("revokedAt", *went),
            target=("apiKey", key["_id"], key["name"]),
        )
    return key


def list_keys(
    actor: Principal, args: MultiDict[str, str] | None = None, schema: Schema | None = None
) -> Page:
    """A page of the organization's keys, newest first."""
    db = get_db()
    return paged(
        args if args is not None else MultiDict(),
        api_keys.API_KEYS,
        actor.org,
        lambda request: api_keys.list_api_keys(db, actor.org, request),
        schema,
    )


def page_data(actor: Principal, args: MultiDict[str, str]) -> dict[str, Any]:
    """What the API Keys page shows: a page of keys with the names of their roles and
    workspaces, and the first roles and workspaces (by name) to pick from."""
    db = get_db()
    page = list_keys(actor, args, WebPageQuerySchema())
    choices = PageRequest(CHOICES)
    return {
        "page": page,
        "roles": key_roles(actor, orgs.list_roles(db, actor.org, choices)[0]),
        "workspaces": workspaces.list_workspaces(db, actor.org, choices)[0],
        "role_names": {
            r["_id"]: r["name"]
            for r in orgs.find_roles_by_ids(db, actor.org, [k["roleId"] for k in page.items])
        },
        "workspace_names": {
            w: found["name"]
            for w, found in workspaces.find_workspaces_by_ids(
                db, actor.org, [k.get("workspaceId") for k in page.items]
            ).items()
        },
    }


def key_roles(actor: Principal, roles: list[Document]) -> list[Document]:
    """The roles a new key of this actor may hold: the ones ``create_key`` accepts (never
    Owner, only what the actor could grant), so the form offers nothing it then refuses."""
    offered = []
    for role in roles:
        if role.get("key") == OWNER:
            continue
        try:
            check_may_grant(actor, role)
        except ApiError:
            continue
        offered.append(role)
    return offered


CHOICES = 200  # roles and workspaces offered by a form's list, first by name
