"""The ``audit_logs`` collection: its indexes, and the only code that writes to it.

Index design (docs/audit-schema.md explains each with the query it serves): every list
query is "one organization, optionally one account / workspace / API key / route, newest
first, keyset on (createdAt, _id)". Following MongoDB's equality-sort-range rule, each
index starts with the equality fields and ends with ``createdAt: -1, _id: -1``, so a page
is an index walk that stops after ``limit`` entries: no in-memory sort, no count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import OperationFailure
from pymongo.write_concern import WriteConcern

from ..db import TenantCollection
from ..ids import utcnow

log = logging.getLogger(__name__)

COLLECTION = "audit_logs"
TTL_INDEX = "ttl_createdAt"
_NEWEST = [("createdAt", DESCENDING), ("_id", DESCENDING)]
NEWEST_FIRST = _NEWEST
OLDEST_FIRST = [("createdAt", ASCENDING), ("_id", ASCENDING)]

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
    # sealing reads each organization's records by the time they were stored
    (
        [("organizationId", ASCENDING), ("storedAt", ASCENDING), ("_id", ASCENDING)],
        {"name": "org_stored"},
    ),
]


def insert_record(db: Database, record: dict, write_concern: WriteConcern | None = None) -> None:
    """Store one record, acknowledged as ``write_concern`` (``AUDIT_WRITE_CONCERN``) says."""
    collection = db[COLLECTION]
    if write_concern is not None and isinstance(collection, Collection):
        # MongoDB only: mongomock and the embedded store acknowledge on their own terms
        collection = collection.with_options(write_concern=write_concern)
    collection.insert_one(record)


def audit_write_concern(setting: str, journal: bool) -> WriteConcern:
    """``majority`` (the default) or a number of members, journaled unless told otherwise."""
    w: str | int = setting if setting == "majority" else int(setting)
    return WriteConcern(w=w, j=journal if w != 0 else None)


def purge_expired(db: Database, retention_days: int) -> int:
    """Delete records older than the retention (for stores without a native TTL monitor)."""
    from .integrity import purge_expired_chunks

    cutoff = utcnow() - timedelta(days=retention_days)
    purge_expired_chunks(db, cutoff)
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
        except (NotImplementedError, TypeError):
            # mongomock and the embedded store have no collMod: rebuild the (emulated) index
            collection.drop_index(TTL_INDEX)
        except OperationFailure as error:
            # never drop and rebuild a TTL index over a real collection (a billion documents,
            # raced by every worker): a user without collMod rights gets a clear message
            log.error(
                "Could not change the audit retention to %d days (%s); the TTL index keeps "
                "%s seconds. Run 'flask ensure-indexes' as a user allowed to run collMod.",
                retention_days,
                error,
                existing.get("expireAfterSeconds"),
            )
            return names
        log.info("Audit retention set to %d days", retention_days)
    names.append(
        collection.create_index(
            [("createdAt", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=seconds
        )
    )
    return names


# Reading, always within one organization ------------------------------------------------

LIST_PROJECTION = {"request": 0}


def _scoped(db: Database, organization_id: ObjectId) -> TenantCollection:
    return TenantCollection(db[COLLECTION], organization_id)


def search_records(
    db: Database,
    organization_id: ObjectId,
    criteria: dict,
    limit: int,
    max_time_ms: int,
    *,
    towards_newer: bool = False,
) -> tuple[list[dict], bool]:
    """One page without the heavy ``request`` part, and whether more follow.

    Newest first. ``towards_newer`` walks the same index the other way (the page just
    before a ``before`` position) and returns the page newest first all the same.
    """
    order = OLDEST_FIRST if towards_newer else NEWEST_FIRST
    cursor = (
        _scoped(db, organization_id)
        .find(criteria, dict(LIST_PROJECTION))  # a copy: drivers may change what they get
        .sort(order)
        .limit(limit + 1)
        .max_time_ms(max_time_ms)
    )
    items = list(cursor)
    more = len(items) > limit
    items = items[:limit]
    return (items[::-1] if towards_newer else items), more


def find_record(db: Database, organization_id: ObjectId, record_id: ObjectId) -> dict | None:
    return _scoped(db, organization_id).find_one({"_id": record_id})


def iter_records(
    db: Database, organization_id: ObjectId, criteria: dict, batch_size: int = 500
) -> Iterator[dict]:
    """Every matching record, newest first, fetched from the server a batch at a time."""
    cursor = _scoped(db, organization_id).find(criteria).sort(NEWEST_FIRST).batch_size(batch_size)
    try:
        yield from cursor
    finally:
        cursor.close()
