"""API keys: who may create one with which role, and what becomes of them.

A key never holds a permission its creator lacks: checked when it is made, and again on
every request (its permissions are its role's, cut down to what its creator holds now).
A key made by another key carries the same creator, the person at the root. Keys made by
the operator on the command line have no creator and hold their role. When a member leaves
the organization, the keys they created are revoked with the membership (docs/security.md).
"""

from __future__ import annotations

from bson import ObjectId

from ..audit.changes import record_changes
from ..audit.context import note_created
from ..auth.principal import Principal
from ..credentials import service as credentials
from ..db import Document, get_db
from ..errors import unprocessable
from ..organizations import repository as orgs
from ..organizations.permissions import MEMBER, OWNER
from ..organizations.service import check_may_grant
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


def list_keys(actor: Principal) -> list[Document]:
    return api_keys.list_api_keys(get_db(), actor.org)


def page_data(actor: Principal) -> dict[str, list[Document]]:
    """What the API Keys page shows: the keys, and the roles and workspaces to pick from."""
    db = get_db()
    return {
        "keys": api_keys.list_api_keys(db, actor.org),
        "roles": orgs.list_roles(db, actor.org),
        "workspaces": workspaces.list_workspaces(db, actor.org),
    }
