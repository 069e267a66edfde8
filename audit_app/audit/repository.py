"""The ``audit_logs`` collection: its indexes, and the only code that writes to it.

Index design (docs/audit-schema.md explains each with the query it serves): every list
query is "one organization, optionally one account / workspace / API key / route, newest
first, keyset on (createdAt, _id)". Following MongoDB's equality-sort-range rule, each
index starts with the equality fields and ends with ``createdAt: -1, _id: -1``, so a page
is an index walk that stops after ``limit`` entries: no in-memory sort, no count.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import OperationFailure

from ..ids import utcnow

log = logging.getLogger(__name__)

COLLECTION = "audit_logs"
TTL_INDEX = "ttl_createdAt"
_NEWEST = [("createdAt", DESCENDING), ("_id", DESCENDING)]

INDEXES = [
    ([("organizationId", ASCENDING), *_NEWEST, ("path", ASCENDING)], {"name": "org_newest"}),
    (
        [("organizationId", ASCENDING), ("accountId", ASCENDING), *_NEWEST],
        {"name": "org_account_newest"},
    ),
    (
        [("organizationId", ASCENDING), ("workspaceId", ASCENDING), *_NEWEST],
        {"name": "org_workspace_newest"},
    ),
    (
        [("organizationId", ASCENDING), ("apiKeyId", ASCENDING), *_NEWEST],
        {"name": "org_apikey_newest"},
    ),
    ([("organizationId", ASCENDING), ("route", ASCENDING), *_NEWEST], {"name": "org_route_newest"}),
]


def insert_record(db: Database, record: dict) -> None:
    db[COLLECTION].insert_one(record)


def purge_expired(db: Database, retention_days: int) -> int:
    """Delete records older than the retention (for stores without a native TTL monitor)."""
    cutoff = utcnow() - timedelta(days=retention_days)
    return db[COLLECTION].delete_many({"createdAt": {"$lt": cutoff}}).deleted_count


def ensure_audit_indexes(
    db: Database, retention_days: int, *, native_ttl: bool = True
) -> list[str]:
    """Create the query indexes and the TTL index; a changed retention updates the TTL.

    ``native_ttl=False`` is for the embedded store: its engine (mongomock's) emulates a TTL
    index by decoding every document on every read and write, so there retention is
    enforced by ``purge_expired`` instead, and any TTL index is removed.
    """
    collection = db[COLLECTION]
    names = [collection.create_index(keys, **options) for keys, options in INDEXES]
    seconds = retention_days * 86400
    existing = collection.index_information().get(TTL_INDEX)
    if not native_ttl:
        if existing is not None:
            collection.drop_index(TTL_INDEX)
        purge_expired(db, retention_days)
        return names
    if existing is not None and existing.get("expireAfterSeconds") != seconds:
        try:
            db.command(
                {"collMod": COLLECTION, "index": {"name": TTL_INDEX, "expireAfterSeconds": seconds}}
            )
        except (OperationFailure, NotImplementedError, TypeError):
            # mongomock and the embedded store have no collMod: rebuild the index instead
            collection.drop_index(TTL_INDEX)
        log.info("Audit retention set to %d days", retention_days)
    names.append(
        collection.create_index(
            [("createdAt", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=seconds
        )
    )
    return names
