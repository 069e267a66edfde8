"""The staff's collections: accounts, their sessions, their grants and their own log.

None of them holds tenant data the way ``TenantCollection`` guards it: staff belong to no
organization. A grant names one organization, and every read under it goes through
``find_live_grant``, which asks the store (not a cache) each time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database

from ..db import Document, IndexSpec
from ..pagination import Listing

STAFF = "staff_accounts"
STAFF_SESSIONS = "staff_sessions"
GRANTS = "staff_grants"
STAFF_LOG = "staff_log"

INDEXES: dict[str, list[IndexSpec]] = {
    STAFF: [
        ([("email", ASCENDING)], {"name": "email_unique", "unique": True}),
        ([("createdAt", ASCENDING), ("_id", ASCENDING)], {"name": "oldest"}),
    ],
    STAFF_SESSIONS: [
        ([("tokenHash", ASCENDING)], {"name": "token_unique", "unique": True}),
        ([("staffId", ASCENDING)], {"name": "staff"}),
        ([("expiresAt", ASCENDING)], {"name": "expiry_ttl", "expireAfterSeconds": 0}),
    ],
    GRANTS: [
        # a staff member's grants, newest first (GET /api/v1/staff/grants), and the live one
        # for an organization (every request under a grant)
        (
            [
                ("staffId", ASCENDING),
                ("organizationId", ASCENDING),
                ("expiresAt", DESCENDING),
                ("_id", DESCENDING),
            ],
            {"name": "staff_org_expiry"},
        ),
        (
            [("staffId", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)],
            {"name": "staff_newest"},
        ),
        # an organization's requests waiting for approval, newest first
        (
            [
                ("organizationId", ASCENDING),
                ("state", ASCENDING),
                ("createdAt", DESCENDING),
                ("_id", DESCENDING),
            ],
            {"name": "org_state_newest"},
        ),
    ],
    STAFF_LOG: [
        ([("createdAt", DESCENDING), ("_id", DESCENDING)], {"name": "newest"}),
        (
            [("staffEmail", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)],
            {"name": "staff_newest"},
        ),
    ],
}

# the walks above, as the embedded store keeps them sorted (``indexes.LISTINGS``)
STAFF_LIST = Listing("staff", STAFF, "oldest", "createdAt", 1)
LIVE_GRANTS = Listing("liveGrants", GRANTS, "staff_org_expiry", "expiresAt", -1)
STAFF_GRANTS = Listing("staffGrants", GRANTS, "staff_newest", "createdAt", -1)
REQUESTS = Listing("staffRequests", GRANTS, "org_state_newest", "createdAt", -1)
LOG = Listing("staffLog", STAFF_LOG, "newest", "createdAt", -1)
LOG_OF = Listing("staffLogOf", STAFF_LOG, "staff_newest", "createdAt", -1)
LISTINGS = (STAFF_LIST, LIVE_GRANTS, STAFF_GRANTS, REQUESTS, LOG, LOG_OF)

ACTIVE, PENDING, DENIED, REVOKED = "active", "pending", "denied", "revoked"
STATES = (ACTIVE, PENDING, DENIED, REVOKED)


# Accounts -------------------------------------------------------------------------------


def insert_staff(db: Database[Document], document: Document) -> None:
    db[STAFF].insert_one(document)


def find_staff(db: Database[Document], staff_id: ObjectId) -> Document | None:
    return db[STAFF].find_one({"_id": staff_id})


def find_staff_by_email(db: Database[Document], email: str) -> Document | None:
    return db[STAFF].find_one({"email": email})


def list_staff(db: Database[Document], limit: int) -> tuple[list[Document], bool]:
    """The staff accounts, oldest first, at most ``limit`` (and whether there are more)."""
    found = list(
        db[STAFF]
        .find({}, {"passwordHash": 0})
        .sort(STAFF_LIST.sort())
        .hint("oldest")
        .limit(limit + 1)
    )
    return found[:limit], len(found) > limit


def delete_staff(db: Database[Document], staff_id: ObjectId) -> bool:
    return db[STAFF].delete_one({"_id": staff_id}).deleted_count == 1


# Sessions -------------------------------------------------------------------------------


def insert_session(db: Database[Document], document: Document) -> None:
    db[STAFF_SESSIONS].insert_one(document)


def find_live_session(db: Database[Document], token_hash: str, now: datetime) -> Document | None:
    return db[STAFF_SESSIONS].find_one({"tokenHash": token_hash, "expiresAt": {"$gt": now}})


def delete_session(db: Database[Document], token_hash: str) -> None:
    db[STAFF_SESSIONS].delete_one({"tokenHash": token_hash})


def delete_sessions_of(db: Database[Document], staff_id: ObjectId) -> int:
    return db[STAFF_SESSIONS].delete_many({"staffId": staff_id}).deleted_count


# Grants ---------------------------------------------------------------------------------


def insert_grant(db: Database[Document], document: Document) -> None:
    db[GRANTS].insert_one(document)


def find_grant(db: Database[Document], grant_id: ObjectId) -> Document | None:
    return db[GRANTS].find_one({"_id": grant_id})


def find_live_grant(
    db: Database[Document], staff_id: ObjectId, organization_id: ObjectId, now: datetime
) -> Document | None:
    """The staff member's active grant for this organization that has not expired, read
    from the store on every call: an expiry or a revocation holds on every worker."""
    found = (
        db[GRANTS]
        .find(
            {
                "staffId": staff_id,
                "organizationId": organization_id,
                "state": ACTIVE,
                "expiresAt": {"$gt": now},
            }
        )
        .sort(LIVE_GRANTS.sort())
        .hint("staff_org_expiry")
        .limit(1)
    )
    return next(iter(found), None)


def list_grants_of_staff(
    db: Database[Document], staff_id: ObjectId, limit: int
) -> tuple[list[Document], bool]:
    found = list(
        db[GRANTS]
        .find({"staffId": staff_id})
        .sort(STAFF_GRANTS.sort())
        .hint("staff_newest")
        .limit(limit + 1)
    )
    return found[:limit], len(found) > limit


def list_grants_of_organization(
    db: Database[Document], organization_id: ObjectId, state: str, limit: int
) -> tuple[list[Document], bool]:
    found = list(
        db[GRANTS]
        .find({"organizationId": organization_id, "state": state})
        .sort(REQUESTS.sort())
        .hint("org_state_newest")
        .limit(limit + 1)
    )
    return found[:limit], len(found) > limit


def decide_grant(
    db: Database[Document],
    grant_id: ObjectId,
    organization_id: ObjectId,
    now: datetime,
    changes: Mapping[str, Any],
) -> Document | None:
    """Move a pending, unexpired grant of this organization to its decision, atomically
    (two admins deciding at once: one wins); None when there is no such grant."""
    return db[GRANTS].find_one_and_update(
        {
            "_id": grant_id,
            "organizationId": organization_id,
            "state": PENDING,
            "expiresAt": {"$gt": now},
        },
        {"$set": {**changes, "decidedAt": now}},
        return_document=ReturnDocument.AFTER,
    )


def revoke_grant(
    db: Database[Document],
    grant_id: ObjectId,
    organization_id: ObjectId,
    now: datetime,
    changes: Mapping[str, Any],
) -> Document | None:
    """End an active, unexpired grant of this organization, atomically; None when there is
    no such grant."""
    return db[GRANTS].find_one_and_update(
        {
            "_id": grant_id,
            "organizationId": organization_id,
            "state": ACTIVE,
            "expiresAt": {"$gt": now},
        },
        {"$set": {**changes, "state": REVOKED, "revokedAt": now, "expiresAt": now}},
        return_document=ReturnDocument.AFTER,
    )


def end_grants_refused_by(
    db: Database[Document], organization_id: ObjectId, setting: str, now: datetime
) -> int:
    """The organization changed its ``staffAccess``: end at once its active grants the new
    setting refuses (``none``: all; ``approval``: those nobody approved), so switching back
    does not bring them back. A walk of ``org_state_newest`` (the organization's active
    grants: an hour's worth each)."""
    wanted: dict[str, Any] = {"organizationId": organization_id, "state": ACTIVE}
    if setting == "approval":
        wanted["decidedBy"] = {"$exists": False}
    elif setting != "none":
        return 0
    return (
        db[GRANTS]
        .update_many(wanted, {"$set": {"state": REVOKED, "revokedAt": now, "expiresAt": now}})
        .modified_count
    )


def revoke_grants_of(db: Database[Document], staff_id: ObjectId, now: datetime) -> int:
    """End every live or pending grant of a staff member at once."""
    return (
        db[GRANTS]
        .update_many(
            {"staffId": staff_id, "state": {"$in": [ACTIVE, PENDING]}},
            {"$set": {"state": REVOKED, "revokedAt": now, "expiresAt": now}},
        )
        .modified_count
    )


# The staff log --------------------------------------------------------------------------


def insert_log_entry(db: Database[Document], document: Document) -> None:
    db[STAFF_LOG].insert_one(document)


def list_log(
    db: Database[Document], limit: int, email: str | None = None
) -> tuple[list[Document], bool]:
    """The staff log, newest first, at most ``limit``: all of it or one member's."""
    if email is None:
        cursor = db[STAFF_LOG].find({}).hint("newest")
    else:
        cursor = db[STAFF_LOG].find({"staffEmail": email}).hint("staff_newest")
    found = list(cursor.sort(LOG.sort()).limit(limit + 1))
    return found[:limit], len(found) > limit


# What an id is, across organizations (the lookup) ---------------------------------------

# the platform's collections an id may name, each looked up by ``_id`` alone (its own index)
# and what holds the organization: a field, or (an account) its memberships
ID_KINDS = (
    ("organization", "organizations", "_id"),
    ("account", "accounts", None),
    ("workspace", "workspaces", "organizationId"),
    ("apiKey", "api_keys", "organizationId"),
    ("role", "roles", "organizationId"),
    ("auditStream", "audit_streams", "organizationId"),
)
MAX_ORGANIZATIONS = 50  # an account in more organizations than this is said to be in more


def kinds_of_id(db: Database[Document], object_id: ObjectId) -> list[tuple[str, list[ObjectId]]]:
    """Which platform objects this id names, and their organizations: one ``_id`` lookup per
    collection (an account's organizations: its memberships, at most ``MAX_ORGANIZATIONS``)."""
    found: list[tuple[str, list[ObjectId]]] = []
    for kind, collection, holder in ID_KINDS:
        document = db[collection].find_one({"_id": object_id}, {"_id": 1, "organizationId": 1})
        if document is None:
            continue
        if holder is None:
            memberships = (
                db.memberships.find({"accountId": object_id}, {"organizationId": 1})
                .sort("createdAt", ASCENDING)
                .limit(MAX_ORGANIZATIONS + 1)
            )
            found.append((kind, [m["organizationId"] for m in memberships]))
        else:
            found.append((kind, [document[holder]]))
    return found


def find_organizations(db: Database[Document], ids: list[ObjectId]) -> list[Document]:
    """These organizations' ids, names and staff access, in the order given."""
    wanted = list(dict.fromkeys(ids))[: MAX_ORGANIZATIONS + 1]
    by_id = {
        o["_id"]: o
        for o in db.organizations.find(
            {"_id": {"$in": wanted}}, {"_id": 1, "name": 1, "staffAccess": 1}
        )
    }
    return [by_id[i] for i in wanted if i in by_id]
