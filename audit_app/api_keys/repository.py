"""API keys: the secret is shown once and only its SHA-256 is stored.

A key looks like ``oal_`` + 40 random URL-safe characters (240 bits). Its first 12
characters are the visible ``prefix`` that identifies it in lists and in the audit log. A
fast hash is right for a random secret of that size (a slow KDF protects guessable
passwords); the lookup goes by prefix and the hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import PyMongoError

from ..db import Document, IndexSpec, TenantCollection
from ..errors import not_found
from ..ids import utcnow
from ..pagination import Listing, PageRequest, find_page

log = logging.getLogger(__name__)

KEY_PREFIX = "oal_"
PREFIX_LENGTH = 12
LAST_USED_RESOLUTION = timedelta(minutes=1)

API_KEYS = Listing("apiKeys", "api_keys", "org_newest_id", "createdAt", -1)
INDEXES: dict[str, list[IndexSpec]] = {
    "api_keys": [
        ([("prefix", ASCENDING)], {"name": "prefix"}),
        # the list, newest first
        (
            [("organizationId", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)],
            {"name": "org_newest_id"},
        ),
        ([("organizationId", ASCENDING), ("createdBy", ASCENDING)], {"name": "org_creator"}),
        # revoking a key revokes the keys it made
        (
            [("organizationId", ASCENDING), ("createdByApiKeyId", ASCENDING)],
            {"name": "org_creator_key"},
        ),
    ],
}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_api_key(
    db: Database[Document],
    organization_id: ObjectId,
    *,
    name: str,
    role_id: ObjectId,
    workspace_id: ObjectId | None,
    created_by: ObjectId | None,
    created_by_api_key: ObjectId | None = None,
) -> tuple[Document, str]:
    """Create a key and return (its document, the secret): the secret is never stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(30)
    key: Document = {
        "_id": ObjectId(),
        "name": name.strip(),
        "prefix": secret[:PREFIX_LENGTH],
        "keyHash": _digest(secret),
        "roleId": role_id,
        "workspaceId": workspace_id,
        "createdBy": created_by,
        "createdByApiKeyId": created_by_api_key,
        "createdAt": utcnow(),
        "lastUsedAt": None,
        "revokedAt": None,
    }
    TenantCollection(db.api_keys, organization_id).insert_one(key)
    return key, secret


def authenticate_api_key(db: Database[Document], secret: str) -> Document | None:
    """Return the key document a secret belongs to, or None; revoked keys are returned too."""
    if not secret.startswith(KEY_PREFIX) or len(secret) < PREFIX_LENGTH + 8 or len(secret) > 200:
        return None
    digest = _digest(secret)
    for candidate in db.api_keys.find({"prefix": secret[:PREFIX_LENGTH]}).limit(10):
        if hmac.compare_digest(candidate["keyHash"], digest):
            return candidate
    return None


def touch_last_used(db: Database[Document], key: Mapping[str, Any]) -> None:
    """Record that the key was used, at most once a minute to spare the database.

    Best effort: a store that cannot write (a full disk, a failover) must not make the
    key's request unauthenticated, which would also leave its audit record unattributed.
    """
    now = utcnow()
    last = key.get("lastUsedAt")
    if last is None or now - last >= LAST_USED_RESOLUTION:
        try:
            db.api_keys.update_one({"_id": key["_id"]}, {"$set": {"lastUsedAt": now}})
        except (PyMongoError, sqlite3.Error) as error:
            log.warning("Could not record when API key %s was last used: %s", key["_id"], error)


def list_api_keys(
    db: Database[Document], organization_id: ObjectId, request: PageRequest
) -> tuple[list[Document], bool]:
    """A page of the organization's keys (never their hashes), newest first."""
    keys = TenantCollection(db.api_keys, organization_id)
    return find_page(keys, API_KEYS, {}, request, {"keyHash": 0})


def find_api_keys_by_ids(
    db: Database[Document], organization_id: ObjectId, ids: Iterable[ObjectId | None]
) -> dict[ObjectId, Document]:
    ids = [i for i in set(ids) if i is not None]
    if not ids:
        return {}
    found = TenantCollection(db.api_keys, organization_id).find(
        {"_id": {"$in": ids}}, {"keyHash": 0}
    )
    return {k["_id"]: k for k in found}


def revoke_api_key(
    db: Database[Document], organization_id: ObjectId, key_id: ObjectId
) -> tuple[Document, bool]:
    """Revoke a key (again is fine); return it and whether this call revoked it."""
    keys = TenantCollection(db.api_keys, organization_id)
    now = utcnow()
    before = keys.find_one_and_update(
        {"_id": key_id, "revokedAt": None},
        {"$set": {"revokedAt": now}},
        projection={"keyHash": 0},
        return_document=ReturnDocument.BEFORE,
    )
    if before is not None:
        return {**before, "revokedAt": now}, True
    key = keys.find_one({"_id": key_id}, {"keyHash": 0})
    if key is None:
        raise not_found("API key", "apiKeyId")
    return key, False


def revoke_keys_created_by(
    db: Database[Document], organization_id: ObjectId, account_id: ObjectId
) -> int:
    """Revoke every live key an account created (it is leaving the organization)."""
    return len(revoke_keys_where(db, organization_id, {"createdBy": account_id}))


def revoke_keys_made_with(
    db: Database[Document], organization_id: ObjectId, key_ids: list[ObjectId]
) -> list[ObjectId]:
    """Revoke the live keys these keys made, and the keys those made, to any depth: what a
    credential creates dies with it. Returns the ids revoked."""
    revoked: list[ObjectId] = []
    parents = list(key_ids)
    for _ in range(MAX_KEY_GENERATIONS):
        if not parents:
            break
        parents = revoke_keys_where(db, organization_id, {"createdByApiKeyId": {"$in": parents}})
        revoked.extend(parents)
    return revoked


MAX_KEY_GENERATIONS = 50  # a chain of keys made by keys; each generation is one query


def revoke_keys_where(
    db: Database[Document], organization_id: ObjectId, selector: Mapping[str, Any]
) -> list[ObjectId]:
    """Revoke the live keys that match; return their ids."""
    keys = TenantCollection(db.api_keys, organization_id)
    live = {**selector, "revokedAt": None}
    ids = [k["_id"] for k in keys.find(live, {"_id": 1}).limit(10_000)]
    if ids:
        keys.update_many(
            {"_id": {"$in": ids}, "revokedAt": None}, {"$set": {"revokedAt": utcnow()}}
        )
    return ids
