"""Copy an installation from one store to another: ``flask migrate-store``.

The main case is outgrowing the embedded store: copy everything into a MongoDB cluster,
switch ``MONGO_URI``, check. Every collection of the platform database and of the audit
database is copied document by document with its ``_id``, dates and BSON types unchanged,
so digests computed on the source verify on the target (the chain's anchor is a
directory outside the database: the target uses the same one).

Idempotent and resumable, and a second run brings the target up to date:

- platform documents (accounts, members, keys, sessions, ...) change: one that differs
  from the source is replaced, one the source no longer has is deleted, so a key revoked
  or a member removed since the first run is revoked or removed on the target too;
- the audit log, its digests and their chunks are append-only: what is missing is
  copied; a document that exists on both sides with different content is a conflict (a
  sealed record cannot have two versions), reported, and the command fails.

The target's indexes are built first (``ensure_indexes``), so its unique constraints hold
while it fills.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import bson
from pymongo.errors import BulkWriteError

from .audit.integrity import digests as integrity
from .audit.integrity import merkle
from .audit.store.repository import COLLECTION as AUDIT_LOGS
from .db import Store
from .ids import utcnow
from .indexes import ensure_indexes

BATCH = 1000
# collections that belong to a running installation, not to its data
SKIPPED = frozenset({"audit_leases"})
AUDIT_COLLECTIONS = (
    AUDIT_LOGS,
    integrity.DIGESTS,
    integrity.CHUNKS,
    "audit_integrity",
    "audit_counters",
    merkle.TILES,
    merkle.TREES,
    merkle.CHECKPOINTS,
)
APPEND_ONLY = frozenset(
    {AUDIT_LOGS, integrity.DIGESTS, integrity.CHUNKS, merkle.TILES, merkle.CHECKPOINTS}
)


@dataclass
class CollectionCopy:
    name: str
    source: int = 0
    copied: int = 0
    present: int = 0  # already in the target, the same (an earlier run)
    updated: int = 0  # replaced: changed on the source since
    deleted: int = 0  # gone from the source since
    conflicts: list[str] = field(default_factory=list)  # append-only, yet different


@dataclass
class MigrationReport:
    collections: list[CollectionCopy] = field(default_factory=list)
    verified: dict[str, bool] = field(default_factory=dict)

    @property
    def copied(self) -> int:
        return sum(c.copied + c.updated + c.deleted for c in self.collections)

    @property
    def conflicts(self) -> list[str]:
        return [f"{c.name} {i}" for c in self.collections for i in c.conflicts]

    def as_dict(self) -> dict:
        return {
            "collections": {
                c.name: {
                    "source": c.source,
                    "copied": c.copied,
                    "alreadyThere": c.present,
                    "updated": c.updated,
                    "deleted": c.deleted,
                    "conflicts": c.conflicts[:20],
                }
                for c in self.collections
            },
            "copied": self.copied,
            "conflicts": len(self.conflicts),
            "verified": self.verified,
        }


def store_for(uri: str, *, db_name: str | None, client=None) -> Store:
    """A store from a ``--to``/``--from`` value: a MongoDB URI, ``mongomock://``, or
    ``embedded:PATH`` (the folder of an embedded store)."""
    if uri.startswith("embedded:"):
        path = uri.removeprefix("embedded:").removeprefix("//") or "instance/store"
        return Store(None, db_name=db_name, embedded_dir=path)
    return Store(uri, db_name=db_name, embedded_dir="", client=client)


def plan(source_main, source_audit) -> list[tuple[str, Any]]:
    """(collection, source database) for every collection to copy, audit log last."""
    platform = sorted(
        name
        for name in source_main.list_collection_names()
        if name not in SKIPPED and name not in AUDIT_COLLECTIONS and not name.startswith("system.")
    )
    return [(name, source_main) for name in platform] + [
        (name, source_audit) for name in reversed(AUDIT_COLLECTIONS)
    ]


def migrate(
    source_main,
    source_audit,
    target_main,
    target_audit,
    *,
    progress: Callable[[str, int, int], None] = lambda name, done, total: None,
) -> MigrationReport:
    """Copy every collection; ``progress(collection, documents done, total)`` as it goes."""
    ensure_indexes(target_main, target_audit)
    report = MigrationReport()
    for name, source in plan(source_main, source_audit):
        target = target_audit if name in AUDIT_COLLECTIONS else target_main
        copy = CollectionCopy(name)
        report.collections.append(copy)
        # for the progress line only: the collection's metadata, not a count over a billion
        # records (the report counts what it read)
        total = source[name].estimated_document_count()
        seen: set = set()
        for batch in _batches(source[name].find({}).sort("_id", 1)):
            copy.source += len(batch)
            _sync_batch(target[name], batch, copy, append_only=name in APPEND_ONLY)
            if name not in APPEND_ONLY:
                seen.update(document["_id"] for document in batch)
            progress(name, copy.source, max(total, copy.source))
        if name not in APPEND_ONLY:  # what the source no longer has
            gone = [d["_id"] for d in target[name].find({}, {"_id": 1}) if d["_id"] not in seen]
            for record_id in gone:
                target[name].delete_one({"_id": record_id})
            copy.deleted = len(gone)
    return report


def _sync_batch(collection, batch: list[dict], copy: CollectionCopy, *, append_only: bool):
    there = {d["_id"]: d for d in collection.find({"_id": {"$in": [d["_id"] for d in batch]}})}
    missing = [document for document in batch if document["_id"] not in there]
    copy.copied += _insert_missing(collection, missing) if missing else 0
    for document in batch:
        existing = there.get(document["_id"])
        if existing is None:
            continue
        if bson.encode(existing) == bson.encode(document):
            copy.present += 1
        elif append_only:
            copy.conflicts.append(str(document["_id"]))
        else:
            collection.replace_one({"_id": document["_id"]}, document)
            copy.updated += 1


def verify_target(target_main, target_audit, policy: integrity.SealPolicy) -> dict[str, bool]:
    """Verify every organization's chain on the target, as ``verify`` would there."""
    results = {}
    for organization in target_main.organizations.find({}, {"_id": 1}):
        report = integrity.verify_organization(target_audit, organization["_id"], utcnow(), policy)
        results[str(organization["_id"])] = report.ok
    return results


def _batches(cursor) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for document in cursor:
        batch.append(document)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert_missing(collection, documents: list[dict]) -> int:
    """Insert what the target lacks; documents already there (same ``_id``) stay."""
    try:
        return len(collection.insert_many(documents, ordered=False).inserted_ids)
    except BulkWriteError as error:
        codes = {e.get("code") for e in error.details.get("writeErrors", [])}
        if codes - {11000}:
            raise
        return error.details.get("nInserted", 0)
