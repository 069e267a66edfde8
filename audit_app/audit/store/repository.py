"""The ``audit_logs`` collection: its indexes, and the only code that writes to it.

Index design (docs/audit-schema.md explains each with the query it serves): every list
query is "one organization, optionally one account / workspace / API key / route, newest
first, keyset on (createdAt, _id)". Following MongoDB's equality-sort-range rule, each
index starts with the equality fields and ends with ``createdAt: -1, _id: -1``, so a page
is an index walk that stops after ``limit`` entries: no in-memory sort, no count.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from ...db import Document, IndexSpec, TenantCollection

log = logging.getLogger(__name__)

COLLECTION = "audit_logs"
TTL_INDEX = "ttl_createdAt"
_NEWEST = [("createdAt", DESCENDING), ("_id", DESCENDING)]
NEWEST_FIRST = _NEWEST
OLDEST_FIRST = [("createdAt", ASCENDING), ("_id", ASCENDING)]


def _by(field: str, name: str) -> IndexSpec:
    return [("organizationId", ASCENDING), (field, ASCENDING), *_NEWEST], {"name": name}


INDEXES: list[IndexSpec] = [
    # the unfiltered view, date ranges, and path searches (the regex is matched on the
    # index keys, so a search reads each key once and fetches only the matches)
    ([("organizationId", ASCENDING), *_NEWEST, ("path", ASCENDING)], {"name": "org_newest"}),
    # one per filter a page is asked for, each walked in order from the keyset position
    _by("accountId", "org_account_newest"),
    _by("apiKeyId", "org_apikey_newest"),
    _by("workspaceId", "org_workspace_newest"),
    # what a request acted on (multikey: one key per target; the sort is not on the array,
    # so the walk still comes out newest first and stops after limit + 1)
    _by("targets.id", "org_target_newest"),
    _by("statusCode", "org_status_newest"),
    _by("method", "org_method_newest"),
    _by("authType", "org_authtype_newest"),
    _by("resource", "org_resource_newest"),
    # what support staff paste into the search bar (requestId:, credential:, ip:, action:)
    _by("requestId", "org_requestid_newest"),
    _by("credentialId", "org_credential_newest"),
    _by("ip", "org_ip_newest"),
    _by("action", "org_action_newest"),
    # the paths that start with a text (``path:/...``: an anchored, case-sensitive regex):
    # a range of this index's keys, the matches sorted newest first
    _by("path", "org_path_newest"),
    # the platform's support staff: which organizations a pasted request id belongs to
    # (``staff.lookup``), across organizations: each distinct organization one seek
    (
        [("requestId", ASCENDING), ("organizationId", ASCENDING)],
        {"name": "requestid_org"},
    ),
    # sealing reads each organization's records by the time they were stored
    (
        [("organizationId", ASCENDING), ("storedAt", ASCENDING), ("_id", ASCENDING)],
        {"name": "org_stored"},
    ),
]
# indexes earlier versions created that nothing queries any more: each one costs every
# insert, so ``ensure-indexes`` drops them
OBSOLETE_INDEXES = ("org_route_newest", "requestid_newest")
# which index walks a branch, by its most selective top-level equality (first match wins)
_IDS = (
    ("accountId", "org_account_newest"),
    ("apiKeyId", "org_apikey_newest"),
    ("workspaceId", "org_workspace_newest"),
    ("targets.id", "org_target_newest"),
)
_HINTS = (
    ("requestId", "org_requestid_newest"),  # one request: a record or two
    ("credentialId", "org_credential_newest"),
    *_IDS,
    ("ip", "org_ip_newest"),
    ("action", "org_action_newest"),
    ("statusCode", "org_status_newest"),
    ("method", "org_method_newest"),
    ("authType", "org_authtype_newest"),
    ("resource", "org_resource_newest"),
)


def index_for(branch: Mapping[str, Any]) -> str:
    """The index a query branch walks: named, so the plan is the same for every tenant.

    Without a hint the planner races candidate plans and caches the winner per query
    shape, for every organization alike: the plan that won on a small tenant can be the
    one that scans a large one. A branch that leads with an id field (an id search's
    branch leads with the id it searches) walks that field's index; otherwise the most
    selective equality's.
    """
    for name, index in _HINTS[:2]:  # a request id or a credential narrows most
        if name in branch:
            return index
    leading = next(iter(branch), None)
    for name, index in _IDS:
        if name == leading:
            return index
    for name, index in _HINTS:
        if name in branch:
            return index
    if any(_anchored(clause.get("path")) for clause in branch.get("$and", ())):
        return "org_path_newest"
    return "org_newest"


def _anchored(clause: Any) -> bool:
    """Whether a path clause is the anchored form (``query.prefix_regex``)."""
    return isinstance(clause, Mapping) and str(clause.get("$regex", "")).startswith("^")


def insert_record(
    db: Database[Document], record: Document, write_concern: WriteConcern | None = None
) -> None:
    """Store one record, acknowledged as ``write_concern`` (``AUDIT_WRITE_CONCERN``) says."""
    collection = db[COLLECTION]
    if write_concern is not None and isinstance(collection, Collection):
        # MongoDB only: mongomock and the embedded store acknowledge on their own terms
        collection = collection.with_options(write_concern=write_concern)
    collection.insert_one(record)


def insert_records(
    db: Database[Document], records: list[Document], write_concern: WriteConcern | None = None
) -> set[int]:
    """Store records in one command (``insert_many``, unordered, so one duplicate stops
    nothing): a batch of the journal's fold. Return the positions of the records that were
    stored already; raise on any other failure."""
    collection = db[COLLECTION]
    if write_concern is not None and isinstance(collection, Collection):
        collection = collection.with_options(write_concern=write_concern)
    try:
        collection.insert_many(records, ordered=False)
    except BulkWriteError as error:
        found = error.details.get("writeErrors", [])
        if not found or any(e.get("code") != 11000 for e in found):
            raise
        return {int(e["index"]) for e in found}
    return set()


def confirm_stored(db: Database[Document], record: Mapping[str, Any]) -> bool:
    """Whether a record is in the store for good: on MongoDB, read with majority concern.

    A duplicate key on replay means *a* copy exists, not that it survives a failover: one
    acknowledged with ``w: 1`` (or not yet replicated) can still be rolled back, and then
    its spool entry would be the only copy left.
    """
    collection = db[COLLECTION]
    if isinstance(collection, Collection):
        collection = collection.with_options(read_concern=ReadConcern("majority"))
    # with the organization, the read is targeted on a cluster sharded by it
    found = collection.find_one(
        {"_id": record["_id"], "organizationId": record.get("organizationId")}, {"_id": 1}
    )
    return found is not None


def index_mismatches(db: Database[Document], organization_id: ObjectId) -> list[str]:
    """Records whose store-side index copy disagrees with the record (the embedded store
    keeps filtered fields in columns beside the BSON; MongoDB indexes the document itself,
    so there nothing can disagree)."""
    collection = db[COLLECTION]
    # looked up on the class: a pymongo Collection answers any attribute with a collection
    check = getattr(type(collection), "column_mismatches", None)
    return check(collection, organization_id) if check is not None else []


def audit_write_concern(setting: str, journal: bool) -> WriteConcern:
    """``majority`` (the default) or a number of members, journaled unless told otherwise."""
    w: str | int = setting if setting == "majority" else int(setting)
    return WriteConcern(w=w, j=journal if w != 0 else None)


PURGE_WRITE_CONCERN = WriteConcern(w="majority", j=True)


def stored_before(
    db: Database[Document],
    organization_id: ObjectId,
    cutoff: datetime,
    limit: int,
    timeout_ms: int = 30_000,
) -> list[tuple[ObjectId, datetime]]:
    """The (id, storedAt) of up to ``limit`` of an organization's records stored before
    ``cutoff``, oldest first: a walk of ``org_stored`` that stops after ``limit`` (covered
    on MongoDB: the index holds every field it reads)."""
    cursor = (
        _scoped(db, organization_id)
        .find({"storedAt": {"$lt": cutoff}}, {"_id": 1, "storedAt": 1})
        .sort([("storedAt", ASCENDING), ("_id", ASCENDING)])
        .hint("org_stored")
        .limit(limit)
        .max_time_ms(timeout_ms)
    )
    return [(record["_id"], record["storedAt"]) for record in cursor]


def delete_records(db: Database[Document], organization_id: ObjectId, ids: list[ObjectId]) -> int:
    """Delete exactly these records of the organization (the retention purge's batch)."""
    collection = db[COLLECTION]
    if isinstance(collection, Collection):
        collection = collection.with_options(write_concern=PURGE_WRITE_CONCERN)
    scoped = TenantCollection(collection, organization_id)
    return scoped.delete_many({"_id": {"$in": ids}}).deleted_count


def drop_ttl(
    db: Database[Document], before_dropping_ttl: Callable[[int | None], None] | None = None
) -> list[str]:
    """Drop the TTL index of earlier versions, and the indexes nothing queries any more.

    A TTL index deletes by age whatever an organization's settings say: it cannot honour a
    legal hold nor a retention of the organization's own. Records now go by the retention
    purge (``retention``), on MongoDB as on the embedded store. Dropping an index is cheap
    (no rebuild). The query indexes (``INDEXES``) are built by ``indexes.ensure_indexes``.
    """
    collection = db[COLLECTION]
    present = collection.index_information()
    seconds = present.get(TTL_INDEX, {}).get("expireAfterSeconds")
    if before_dropping_ttl is not None:  # what it removed (None: none), said before it goes
        before_dropping_ttl(seconds if isinstance(seconds, int) else None)
    dropped = []
    for obsolete in (*OBSOLETE_INDEXES, TTL_INDEX):
        if obsolete in present:
            collection.drop_index(obsolete)
            log.info("Dropped the index %s, which nothing needs any more", obsolete)
            dropped.append(obsolete)
    return dropped


def ensure_audit_indexes(db: Database[Document]) -> list[str]:
    """The records' query indexes (benchmarks and tests build just these)."""
    return [db[COLLECTION].create_index(keys, **options) for keys, options in INDEXES]


# Reading, always within one organization ------------------------------------------------

LIST_PROJECTION = {"request": 0}


def _scoped(db: Database[Document], organization_id: ObjectId) -> TenantCollection:
    return TenantCollection(db[COLLECTION], organization_id)


def _position(record: Mapping[str, Any]) -> tuple[Any, Any]:
    return record["createdAt"], record["_id"]


def _merged(streams: Sequence[Iterable[Document]], *, newest_first: bool) -> Iterator[Document]:
    """Records of several branches in one order, each record once."""
    if len(streams) == 1:
        yield from streams[0]
        return
    last = None
    for record in heapq.merge(*streams, key=_position, reverse=newest_first):
        if record["_id"] != last:
            last = record["_id"]
            yield record


def search_records(
    db: Database[Document],
    organization_id: ObjectId,
    branches: Sequence[Mapping[str, Any]],
    limit: int,
    max_time_ms: int,
    *,
    towards_newer: bool = False,
) -> tuple[list[Document], bool]:
    """One page without the heavy ``request`` part, and whether more follow.

    Newest first. Each branch walks its own index (``index_for``) and stops after
    ``limit + 1`` entries; several branches are merged. ``towards_newer`` walks the same
    indexes the other way (the page just before a ``before`` position) and returns the
    page newest first all the same.
    """
    order = OLDEST_FIRST if towards_newer else NEWEST_FIRST
    max_time_ms = _share(max_time_ms, branches)
    pages = [
        list(
            _scoped(db, organization_id)
            .find(branch, dict(LIST_PROJECTION))  # a copy: drivers may change what they get
            .sort(order)
            .hint(index_for(branch))
            .limit(limit + 1)
            .max_time_ms(max_time_ms)
        )
        for branch in branches
    ]
    streams = [iter(page) for page in pages]
    items = list(itertools.islice(_merged(streams, newest_first=not towards_newer), limit + 1))
    more = len(items) > limit
    items = items[:limit]
    return (items[::-1] if towards_newer else items), more


def _share(max_time_ms: int, branches: Sequence[object]) -> int:
    """The request's time budget split between its branches: the budget bounds the
    request, not each of its walks."""
    return max(1, max_time_ms // max(len(branches), 1))


def find_record(
    db: Database[Document], organization_id: ObjectId, record_id: ObjectId
) -> Document | None:
    return _scoped(db, organization_id).find_one({"_id": record_id})


def organization_of_record(db: Database[Document], record_id: ObjectId) -> ObjectId | None:
    """The organization of one record, across organizations (the staff's lookup: ``_id``)."""
    found = db[COLLECTION].find_one({"_id": record_id}, {"organizationId": 1})
    return found.get("organizationId") if found is not None else None


def organizations_of_request(db: Database[Document], request_id: str, limit: int) -> list[ObjectId]:
    """The distinct organizations whose records carry this request id, across
    organizations (the staff's lookup), in id order, at most ``limit``: a skip walk of
    ``requestid_org``, one seek per organization past the last one found, so records of no
    organization (null sorts before any id) and an organization's many records of the id
    cost nothing and hide nobody. At most ``limit`` queries of one key each."""
    found: list[ObjectId] = []
    last = ObjectId("0" * 24)
    while len(found) < limit:
        cursor = (
            db[COLLECTION]
            .find({"requestId": request_id, "organizationId": {"$gt": last}}, {"organizationId": 1})
            .sort([("organizationId", ASCENDING)])
            .hint("requestid_org")
            .limit(1)
        )
        record = next(iter(cursor), None)
        if record is None or not isinstance(record.get("organizationId"), ObjectId):
            break
        last = record["organizationId"]
        found.append(last)
    return found


def find_records_by_ids(
    db: Database[Document], organization_id: ObjectId, record_ids: Sequence[ObjectId]
) -> list[Document]:
    """The records of these ids that exist, ids only (at most 200: a verification's list)."""
    cursor = _scoped(db, organization_id).find({"_id": {"$in": list(record_ids[:200])}}, {"_id": 1})
    return list(cursor)


def iter_records(
    db: Database[Document],
    organization_id: ObjectId,
    branches: Sequence[Mapping[str, Any]],
    max_time_ms: int,
    batch_size: int = 500,
    projection: Mapping[str, Any] | None = None,
) -> Iterator[Document]:
    """Every matching record, newest first, fetched from the server a batch at a time.

    ``max_time_ms`` bounds the server's work on each cursor as a whole (MongoDB counts it
    across the cursor's batches, not the time the client spends writing them out);
    ``projection`` keeps only the fields a caller needs (the histogram: two).
    """
    max_time_ms = _share(max_time_ms, branches)
    cursors = [
        _scoped(db, organization_id)
        .find(branch, dict(projection) if projection else None)
        .sort(NEWEST_FIRST)
        .hint(index_for(branch))
        .max_time_ms(max_time_ms)
        .batch_size(batch_size)
        for branch in branches
    ]
    try:
        yield from _merged(cursors, newest_first=True)
    finally:
        for cursor in cursors:
            cursor.close()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def count_by_bucket(
    db: Database[Document],
    organization_id: ObjectId,
    branches: Sequence[Mapping[str, Any]],
    step: timedelta,
    cap: int,
    max_time_ms: int,
) -> tuple[list[tuple[datetime, int | None, int]], datetime | None] | None:
    """The newest ``cap`` matching records counted by ``step`` (from the epoch) and status
    class (``4`` for 4xx; None: no integer code), and the createdAt of the next record when
    there are more: what a walk of ``iter_records`` would count, counted by the store
    itself. None when the store cannot (MongoDB and mongomock: the caller walks)."""
    collection = db[COLLECTION]
    # looked up on the class: a pymongo Collection answers any attribute with a collection
    count = getattr(type(collection), "bucket_counts", None)
    if count is None:
        return None
    scoped = [
        ({**branch, "organizationId": organization_id}, index_for(branch)) for branch in branches
    ]
    found = count(collection, scoped, step // timedelta(milliseconds=1), cap, max_time_ms)
    if found is None:
        return None
    rows, more = found
    at = _EPOCH + timedelta(milliseconds=more) if more is not None else None
    return [(_EPOCH + timedelta(milliseconds=b), family, n) for b, family, n in rows], at


def stored_after(
    db: Database[Document],
    organization_id: ObjectId,
    after: tuple[datetime, ObjectId | None],
    until: datetime,
    limit: int,
    max_time_ms: int,
) -> list[Document]:
    """The next records in stored order (``storedAt``, ``_id``) after a position, stored no
    later than ``until``: a log stream's next batch, walked on ``org_stored``."""
    at, record_id = after
    stored: dict[str, Any] = {"$gte": at, "$lte": until}
    query: Document = {"storedAt": stored}
    if record_id is not None:
        query["$and"] = [{"$or": [{"storedAt": {"$gt": at}}, {"_id": {"$gt": record_id}}]}]
    cursor = (
        _scoped(db, organization_id)
        .find(query)
        .sort([("storedAt", ASCENDING), ("_id", ASCENDING)])
        .hint("org_stored")
        .limit(limit)
        .max_time_ms(max_time_ms)
    )
    return list(cursor)
