"""``audit_streams``: each organization's log streams, their cursor, lease and health.

Read and changed through the caller's organization (``TenantCollection``); only the
deliverer lists the streams that are due across organizations, and it changes a stream
only while it holds the stream's lease.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database

from ..db import Document, IndexSpec, TenantCollection
from ..errors import not_found
from ..ids import utcnow
from ..pagination import Listing, PageRequest, find_page

COLLECTION = "audit_streams"
MAX_STREAMS = 20  # per organization
STREAMS = Listing("auditStreams", COLLECTION, "org_newest_id", "createdAt", -1)
INDEXES: dict[str, list[IndexSpec]] = {
    COLLECTION: [
        (
            [("organizationId", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)],
            {"name": "org_newest_id"},
        ),
        ([("state", ASCENDING), ("nextAttemptAt", ASCENDING)], {"name": "state_due"}),
    ]
}


def _streams(db: Database[Document], organization_id: ObjectId) -> TenantCollection:
    return TenantCollection(db[COLLECTION], organization_id)


def insert_stream(db: Database[Document], organization_id: ObjectId, stream: Document) -> None:
    _streams(db, organization_id).insert_one(stream)


def count_streams(db: Database[Document], organization_id: ObjectId) -> int:
    return _streams(db, organization_id).count_documents({}, limit=MAX_STREAMS + 1)


def list_streams(
    db: Database[Document], organization_id: ObjectId, request: PageRequest | None = None
) -> list[Document]:
    """The organization's streams, newest first: a page, or all (at most ``MAX_STREAMS``)."""
    return page_streams(db, organization_id, request or PageRequest(MAX_STREAMS))[0]


def page_streams(
    db: Database[Document], organization_id: ObjectId, request: PageRequest
) -> tuple[list[Document], bool]:
    return find_page(_streams(db, organization_id), STREAMS, {}, request)


def find_stream(
    db: Database[Document], organization_id: ObjectId, stream_id: ObjectId
) -> Document | None:
    return _streams(db, organization_id).find_one({"_id": stream_id})


def update_stream(
    db: Database[Document],
    organization_id: ObjectId,
    stream_id: ObjectId,
    update: Mapping[str, Any],
) -> tuple[Document, Document]:
    """Apply settings; return the stream before and after (one atomic update)."""
    changes = {**update, "updatedAt": utcnow()}
    before = _streams(db, organization_id).find_one_and_update(
        {"_id": stream_id}, {"$set": changes}, return_document=ReturnDocument.BEFORE
    )
    if before is None:
        raise not_found("Audit stream", "streamId")
    return before, {**before, **changes}


def delete_stream(
    db: Database[Document], organization_id: ObjectId, stream_id: ObjectId
) -> Document:
    deleted = _streams(db, organization_id).find_one_and_delete({"_id": stream_id})
    if deleted is None:
        raise not_found("Audit stream", "streamId")
    return deleted


# The deliverer ---------------------------------------------------------------------------


def due_streams(db: Database[Document], now: datetime, limit: int = 100) -> list[Document]:
    """Active streams whose next attempt is due, in every organization (the deliverer)."""
    cursor = db[COLLECTION].find({"state": "active", "nextAttemptAt": {"$lte": now}})
    return list(cursor.sort("nextAttemptAt", ASCENDING).hint("state_due").limit(limit))


def take_lease(
    db: Database[Document], stream: Mapping[str, Any], holder: str, seconds: float
) -> bool:
    """Hold the stream for a while: one deliverer per stream across processes and hosts."""
    now = utcnow()
    taken = db[COLLECTION].find_one_and_update(
        {
            "_id": stream["_id"],
            "organizationId": stream["organizationId"],
            "$or": [{"lease.expiresAt": {"$lte": now}}, {"lease.holder": holder}, {"lease": None}],
        },
        {"$set": {"lease": {"holder": holder, "expiresAt": now + timedelta(seconds=seconds)}}},
    )
    return taken is not None


def record_progress(
    db: Database[Document],
    stream: Mapping[str, Any],
    holder: str,
    update: Mapping[str, Any],
    increments: Mapping[str, int] | None = None,
    expect: Mapping[str, Any] | None = None,
) -> bool:
    """Save the cursor and health, only while this deliverer still holds the lease (a
    deliverer that lost it cannot move a cursor back) and the stream still matches
    ``expect`` (its settings unchanged since it was read)."""
    change: dict[str, Any] = {"$set": dict(update)}
    if increments:
        change["$inc"] = dict(increments)
    result = db[COLLECTION].update_one(
        {
            **(expect or {}),
            "_id": stream["_id"],
            "organizationId": stream["organizationId"],
            "lease.holder": holder,
        },
        change,
    )
    return result.matched_count == 1
