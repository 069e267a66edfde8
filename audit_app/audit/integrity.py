"""Tamper evidence: signed, chained digests of each organization's records (docs/integrity.md).

For every organization, time is cut into windows of ``AUDIT_SEAL_INTERVAL`` minutes by the
time records were stored (``storedAt``: a record replayed late from the spool falls in a
window still open, so it is covered, not lost). Once a window has been closed for
``AUDIT_SEAL_DELAY`` seconds it is sealed: a digest lists every record of the window as
(id, SHA-256 of its canonical form), hashes that list, links to the previous digest's
hash, and is signed with HMAC-SHA256 under ``AUDIT_SIGNING_KEY``, a key that is not in the
database. Empty windows are sealed too, so a missing digest is a visible gap.

Verification recomputes everything and names what differs: a record modified, deleted or
inserted after sealing, a digest edited or missing, a broken chain, a bad signature.
"""

from __future__ import annotations

import hashlib
import hmac
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ..db import TenantCollection
from ..ids import iso
from .canonical import canonical_bytes, record_hash
from .repository import COLLECTION

DIGESTS = "audit_digests"
ALGORITHM = "HMAC-SHA256"
MAX_WINDOWS_PER_RUN = 10_000
RECORDS_BATCH_WINDOWS = 24  # windows whose records verification reads with one query

INDEXES = [
    (
        [("organizationId", ASCENDING), ("sequence", ASCENDING)],
        {"name": "org_sequence_unique", "unique": True},
    ),
    (
        [("organizationId", ASCENDING), ("windowStart", ASCENDING)],
        {"name": "org_window_unique", "unique": True},
    ),
]


class Signer:
    """HMAC-SHA256 under a key kept outside the database."""

    def __init__(self, key: str):
        if not key:
            raise ValueError("AUDIT_SIGNING_KEY is empty")
        self._key = key.encode("utf-8")
        self.key_id = hashlib.sha256(b"key-id:" + self._key).hexdigest()[:12]

    def sign(self, digest_hash: str) -> str:
        return hmac.new(self._key, digest_hash.encode("ascii"), hashlib.sha256).hexdigest()

    def valid(self, digest_hash: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(digest_hash), signature or "")


def ensure_digest_indexes(db: Database) -> list[str]:
    return [db[DIGESTS].create_index(keys, **options) for keys, options in INDEXES]


def _floor(moment: datetime, interval: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // interval) * interval


def _records_in(db: Database, organization_id: ObjectId, start: datetime, end: datetime):
    window = {"storedAt": {"$gte": start, "$lt": end}}
    cursor = TenantCollection(db[COLLECTION], organization_id).find(window)
    return list(cursor.sort([("storedAt", ASCENDING), ("_id", ASCENDING)]))


def _entries_hash(entries: list[list[str]]) -> str:
    return hashlib.sha256("\n".join(f"{i}:{h}" for i, h in entries).encode()).hexdigest()


def digest_payload(digest: dict) -> dict:
    """The signed part of a digest: everything but its own hash, signature and bookkeeping."""
    return {
        k: digest[k]
        for k in (
            "organizationId",
            "sequence",
            "windowStart",
            "windowEnd",
            "count",
            "records",
            "recordsHash",
            "previousDigestHash",
            "algorithm",
            "keyId",
        )
        if k in digest
    }


def digest_hash(digest: dict) -> str:
    return hashlib.sha256(canonical_bytes(digest_payload(digest))).hexdigest()


def seal_organization(
    db: Database,
    organization_id: ObjectId,
    since: datetime,
    now: datetime,
    interval: timedelta,
    delay: timedelta,
    signer: Signer,
    until: datetime | None = None,
) -> int:
    """Seal every closed window of one organization; return how many digests were written.

    Windows are aligned to ``interval``; with ``until``, the last one may end early, at
    ``until`` (never later than ``now - delay``), and aligned windows resume from there.
    """
    digests = TenantCollection(db[DIGESTS], organization_id)
    last = digests.find_one({}, sort=[("sequence", DESCENDING)])
    start = last["windowEnd"] if last else _floor(since, interval)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    previous = last["digestHash"] if last else None
    sequence = last["sequence"] + 1 if last else 1
    written = 0
    limit = now - delay if until is None else min(now - delay, until)
    while written < MAX_WINDOWS_PER_RUN:
        end = _floor(start, interval) + interval
        if end > limit:
            if until is None or start >= limit:
                break
            end = limit
        records = _records_in(db, organization_id, start, end)
        entries = [[str(r["_id"]), record_hash(r)] for r in records]
        digest = {
            "_id": ObjectId(),
            "organizationId": organization_id,
            "sequence": sequence,
            "windowStart": start,
            "windowEnd": end,
            "count": len(entries),
            "records": entries,
            "recordsHash": _entries_hash(entries),
            "previousDigestHash": previous,
            "algorithm": ALGORITHM,
            "keyId": signer.key_id,
        }
        digest["digestHash"] = digest_hash(digest)
        digest["signature"] = signer.sign(digest["digestHash"])
        digest["createdAt"] = now
        try:
            digests.insert_one(digest)
        except DuplicateKeyError:
            return written  # another process sealed this window first
        previous, sequence, start = digest["digestHash"], sequence + 1, end
        written += 1
    return written


def iter_digests(db: Database, organization_id: ObjectId):
    """An organization's digests in chain order, for export to write-once storage."""
    cursor = TenantCollection(db[DIGESTS], organization_id).find({}, {"_id": 0})
    yield from cursor.sort("sequence", ASCENDING).batch_size(100)


def seal_all(
    main_db: Database,
    audit_db: Database,
    now: datetime,
    interval: timedelta,
    delay: timedelta,
    signer: Signer,
    only: ObjectId | None = None,
    until: datetime | None = None,
) -> dict:
    """Seal every organization (or one); return the number of digests written per organization."""
    query = {"_id": only} if only else {}
    written = {}
    for organization in main_db.organizations.find(query, {"createdAt": 1}):
        written[str(organization["_id"])] = seal_organization(
            audit_db,
            organization["_id"],
            organization["createdAt"],
            now,
            interval,
            delay,
            signer,
            until=until,
        )
    return written


@dataclass
class WindowReport:
    sequence: int
    window_start: datetime
    window_end: datetime
    status: str = "verified"  # verified, failed, expired
    problems: list[dict] = field(default_factory=list)

    def fail(self, kind: str, message: str, record_id: str | None = None) -> None:
        self.status = "failed"
        problem = {"type": kind, "message": message}
        if record_id:
            problem["recordId"] = record_id
        self.problems.append(problem)

    def as_dict(self) -> dict:
        return {
            "sequence": self.sequence,
            "windowStart": iso(self.window_start),
            "windowEnd": iso(self.window_end),
            "status": self.status,
            "problems": self.problems,
        }


@dataclass
class VerifyReport:
    windows: list[WindowReport] = field(default_factory=list)
    unsealed_records: int = 0

    @property
    def ok(self) -> bool:
        return all(w.status != "failed" for w in self.windows)

    @property
    def verified_up_to(self) -> datetime | None:
        last = None
        for window in self.windows:
            if window.status == "failed":
                break
            last = window.window_end
        return last

    def as_dict(self) -> dict:
        failed = [w.as_dict() for w in self.windows if w.status == "failed"]
        return {
            "ok": self.ok,
            "windows": len(self.windows),
            "failedWindows": failed,
            "verifiedUpTo": iso(self.verified_up_to),
            "unsealedRecords": self.unsealed_records,
            "details": [w.as_dict() for w in self.windows],
        }


def verify_organization(
    db: Database,
    organization_id: ObjectId,
    signer: Signer,
    now: datetime,
    retention_days: int,
    start: datetime | None = None,
    end: datetime | None = None,
    last: int | None = None,
) -> VerifyReport:
    """Recompute the digests of one organization (all, a time range, or the ``last`` N)."""
    digests = TenantCollection(db[DIGESTS], organization_id)
    query: dict = {}
    if start:
        query["windowEnd"] = {"$gt": start}
    if end:
        query["windowStart"] = {"$lt": end}
    cursor = digests.find(query)
    if last:
        chain = list(cursor.sort("sequence", DESCENDING).limit(last))[::-1]
    else:
        chain = list(cursor.sort("sequence", ASCENDING))
    report = VerifyReport()
    previous = None
    if chain and chain[0]["sequence"] > 1:
        previous = digests.find_one({"sequence": chain[0]["sequence"] - 1})
    expired_before = now - timedelta(days=retention_days)
    for batch_start in range(0, len(chain), RECORDS_BATCH_WINDOWS):
        batch = chain[batch_start : batch_start + RECORDS_BATCH_WINDOWS]
        hashes = _hashes_by_window(db, organization_id, batch)
        for digest, actual in zip(batch, hashes, strict=True):
            window = WindowReport(
                digest["sequence"], _aware(digest["windowStart"]), _aware(digest["windowEnd"])
            )
            report.windows.append(window)
            _check_digest(digest, previous, signer, window, first_in_chain=previous is None)
            if window.window_end <= expired_before:
                if window.status != "failed":
                    window.status = "expired"
            else:
                _check_records(digest, actual, window)
            previous = digest
    if chain:
        sealed_until = _aware(chain[-1]["windowEnd"])
        report.unsealed_records = TenantCollection(db[COLLECTION], organization_id).count_documents(
            {"storedAt": {"$gte": sealed_until}}, limit=100_000
        )
    return report


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _check_digest(
    digest: dict, previous: dict | None, signer: Signer, window: WindowReport, first_in_chain: bool
) -> None:
    if digest_hash(digest) != digest.get("digestHash"):
        window.fail("digestEdited", "The digest's content does not match its hash: it was edited.")
    elif not signer.valid(digest["digestHash"], digest.get("signature")):
        window.fail(
            "badSignature",
            "The signature is not valid for this key "
            f"(digest signed with key {digest.get('keyId')}, checking with {signer.key_id}).",
        )
    if previous is None:
        if not first_in_chain or digest["sequence"] != 1 or digest.get("previousDigestHash"):
            window.fail("missingDigest", f"The digest before #{digest['sequence']} is missing.")
        return
    if digest["sequence"] != previous["sequence"] + 1:
        window.fail(
            "missingDigest",
            f"Digests #{previous['sequence'] + 1} to "
            f"#{digest['sequence'] - 1} are missing: the chain has a gap.",
        )
    elif digest.get("previousDigestHash") != previous.get("digestHash"):
        window.fail("brokenChain", "The link to the previous digest does not match its hash.")
    if _aware(digest["windowStart"]) != _aware(previous["windowEnd"]):
        window.fail(
            "missingDigest",
            f"No digest covers {iso(previous['windowEnd'])} to {iso(digest['windowStart'])}.",
        )


def _hashes_by_window(db: Database, organization_id: ObjectId, batch: list[dict]) -> list[dict]:
    """The {record id: hash} of each window of a batch, read with one range query."""
    starts = [_aware(d["windowStart"]) for d in batch]
    buckets: list[dict] = [{} for _ in batch]
    if not batch:
        return buckets
    for record in _records_in(db, organization_id, starts[0], _aware(batch[-1]["windowEnd"])):
        stored = _aware(record["storedAt"])
        index = bisect_right(starts, stored) - 1
        if index >= 0 and stored < _aware(batch[index]["windowEnd"]):
            buckets[index][str(record["_id"])] = record_hash(record)
    return buckets


def _check_records(digest: dict, actual: dict, window: WindowReport) -> None:
    sealed = dict(digest.get("records", []))
    for record_id, sealed_hash in sealed.items():
        if record_id not in actual:
            window.fail(
                "deleted",
                f"Record {record_id} was deleted (or moved out of the window).",
                record_id,
            )
        elif actual[record_id] != sealed_hash:
            window.fail("modified", f"Record {record_id} was modified after sealing.", record_id)
    for record_id in actual.keys() - sealed.keys():
        window.fail("inserted", f"Record {record_id} was inserted after sealing.", record_id)
    if _entries_hash(digest.get("records", [])) != digest.get("recordsHash"):
        window.fail("digestEdited", "The digest's record list does not match its records hash.")
