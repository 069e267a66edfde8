"""Tamper evidence: signed, chained digests of each organization's records (docs/integrity.md).

For every organization, time is cut into windows of ``AUDIT_SEAL_INTERVAL`` minutes by the
time records were stored (``storedAt``: a record replayed late from the spool falls in a
window still open, so it is covered, not lost). Once a window has been closed for
``AUDIT_SEAL_DELAY`` seconds it is sealed: a digest lists every record of the window as
(id, SHA-256 of its canonical form), hashes that list, links to the previous digest's
hash, and is signed with HMAC-SHA256 under ``AUDIT_SIGNING_KEY``, a key that is not in the
database. Empty windows are sealed too, so a missing digest is a visible gap.

Verification recomputes everything and names what differs: a record modified (its BSON
type included), deleted or inserted after sealing, a digest edited or missing, a broken
chain, a bad signature; with the anchor (``anchor.py``), also the newest digests or all of
them deleted, and records left unsealed in time that should have been sealed.

Since hash version 2 a digest does not list its records itself: the (id, hash, storedAt)
entries are kept in chunks of ``CHUNK_SIZE`` in ``audit_digest_chunks`` and the digest signs
the chunks' hashes, so a digest stays a few kilobytes whatever its window holds, and sealing
and verifying stream the records, holding one chunk at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from ...db import IndexSpec, TenantCollection
from ...ids import floor_to, iso
from ..store.repository import COLLECTION, index_mismatches
from . import merkle, timestamps
from .anchor import Anchor, replayed_entry
from .canonical import canonical_bytes, record_hash, record_hash_v2
from .merkle import Notary, TreeRefused
from .timestamps import Authority

log = logging.getLogger(__name__)

DIGESTS = "audit_digests"
CHUNKS = "audit_digest_chunks"
ALGORITHM = "HMAC-SHA256"
HASH_VERSION = 2
CHUNK_SIZE = 5000  # entries per chunk: about 600 KB, far below MongoDB's 16 MiB
MAX_WINDOWS_PER_RUN = 10_000
MAX_PROBLEMS_PER_WINDOW = 100
RECORDS_BATCH_WINDOWS = 24  # windows whose records verification reads with one query (v1)

INDEXES: list[IndexSpec] = [
    (
        [("organizationId", ASCENDING), ("sequence", ASCENDING)],
        {"name": "org_sequence_unique", "unique": True},
    ),
    (
        [("organizationId", ASCENDING), ("windowStart", ASCENDING)],
        {"name": "org_window_unique", "unique": True},
    ),
]
CHUNK_INDEXES: list[IndexSpec] = [
    (
        [("organizationId", ASCENDING), ("digestId", ASCENDING), ("index", ASCENDING)],
        {"name": "org_digest_index_unique", "unique": True},
    ),
    # the retention purge: an organization's chunks of windows past its bound
    ([("organizationId", ASCENDING), ("windowEnd", ASCENDING)], {"name": "org_window_end"}),
    # a record's place in its window (its leaf in the verifiable log): the first chunk whose
    # last record was stored at or after it
    (
        [("organizationId", ASCENDING), ("digestId", ASCENDING), ("lastMs", ASCENDING)],
        {"name": "org_digest_last"},
    ),
]


class SealRefused(Exception):
    """The chain in the database no longer reaches the anchored head: sealing would re-sign
    whatever replaced the missing digests, so it stops until a person looks."""


class Signer:
    """HMAC-SHA256 under a key kept outside the database."""

    def __init__(self, key: str):
        if not key:
            raise ValueError("AUDIT_SIGNING_KEY is empty")
        self._key = key.encode("utf-8")
        self.key_id = hashlib.sha256(b"key-id:" + self._key).hexdigest()[:12]

    def sign(self, digest_hash: str) -> str:
        return hmac.new(self._key, digest_hash.encode("ascii"), hashlib.sha256).hexdigest()

    def valid(self, digest_hash: str, signature: str | None) -> bool:
        return hmac.compare_digest(self.sign(digest_hash), signature or "")


CHUNKS_TTL_INDEX = "ttl_windowEnd"


@dataclass(frozen=True)
class SealPolicy:
    """How an installation seals and verifies: its windows, its key, its anchor.

    Built from the settings by ``sealing.policy(app)``; ``dataclasses.replace`` gives a
    variant (a shorter delay for ``flask seal --now``, another key for a migration target).
    """

    signer: Signer
    interval: timedelta
    delay: timedelta
    anchor: Anchor | None = None
    notary: Notary | None = None  # signs the verifiable log's checkpoints (merkle.py)
    timestamps: Authority | None = None  # an RFC 3161 authority stamps them (timestamps.py)


def ensure_digest_indexes(db: Database) -> list[str]:
    """The digests' and chunks' indexes (tests build just these).

    Chunks go with their window's records, by the retention purge of each organization
    (``retention``); the TTL index of earlier versions could not honour a legal hold, so
    it is dropped. Digests themselves are kept (a few kilobytes each): the chain stays whole.
    """
    names = [db[DIGESTS].create_index(keys, **options) for keys, options in INDEXES]
    names += [db[CHUNKS].create_index(keys, **options) for keys, options in CHUNK_INDEXES]
    drop_chunk_ttl(db)
    return names


def drop_chunk_ttl(db: Database) -> None:
    if CHUNKS_TTL_INDEX in db[CHUNKS].index_information():
        db[CHUNKS].drop_index(CHUNKS_TTL_INDEX)


def purge_window_chunks(db: Database, organization_id: ObjectId, cutoff: datetime) -> int:
    """Delete an organization's chunks of windows that ended before its purge's cut-off:
    ``verify`` reads the chunks of a window only while its records may exist."""
    chunks = TenantCollection(db[CHUNKS], organization_id)
    return chunks.delete_many({"windowEnd": {"$lt": cutoff}}).deleted_count


@dataclass(frozen=True)
class Expiry:
    """What retention may have removed, by bounds anchored outside the database."""

    stored_before: datetime  # every record stored before it is gone (a purge completed)
    progress: tuple[datetime, str] | None  # the (storedAt, _id) a purge batch deleted up to
    received_before: datetime  # what the TTL index of an earlier version removed (by _id)

    @property
    def windows_before(self) -> datetime:
        return max(self.stored_before, self.received_before)

    def excuses(self, record_id: str, stored_ms: int) -> bool:
        if stored_ms < _ms(self.stored_before) or _received_before(record_id, self.received_before):
            return True
        return self.progress is not None and (stored_ms, record_id) <= (
            _ms(self.progress[0]),
            self.progress[1],
        )


NOTHING_EXPIRED = datetime(1970, 1, 1, tzinfo=UTC)


def expired_before(policy: SealPolicy, organization_id: ObjectId) -> Expiry:
    """A sealed record's absence is retention, not deletion, only below a bound anchored
    outside the database: the organization's highest purge bound, or the installation's
    legacy bound (written once, at its first start with per-organization retention).
    Without an anchor nothing is excused: a moving ``now - retention`` would let someone who
    can write the database trim a log on hold by waiting."""
    return _expiry(policy.anchor, organization_id)


def _expiry(anchor: Anchor | None, organization_id: ObjectId) -> Expiry:
    if anchor is None:
        return Expiry(NOTHING_EXPIRED, None, NOTHING_EXPIRED)
    anchored = anchor.retention(organization_id)
    legacy = anchor.legacy_bound()
    return Expiry(
        anchored.purged_before or NOTHING_EXPIRED, anchored.progress, legacy or NOTHING_EXPIRED
    )


def _record_stream(db: Database, organization_id: ObjectId, start: datetime, end: datetime):
    """The window's records in (storedAt, _id) order, read in batches (index org_stored)."""
    window = {"storedAt": {"$gte": start, "$lt": end}}
    cursor = TenantCollection(db[COLLECTION], organization_id).find(window)
    return cursor.sort([("storedAt", ASCENDING), ("_id", ASCENDING)]).batch_size(1000)


def _records_in(db: Database, organization_id: ObjectId, start: datetime, end: datetime):
    return list(_record_stream(db, organization_id, start, end))


def _ms(moment: datetime) -> int:
    return int(_aware(moment).timestamp() * 1000 + 0.5)


def _chunk_hash(entries: list) -> str:
    return hashlib.sha256("\n".join(f"{i}:{h}:{t}" for i, h, t in entries).encode()).hexdigest()


def _chunks_hash(chunk_hashes: list[str]) -> str:
    return hashlib.sha256("\n".join(chunk_hashes).encode()).hexdigest()


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
            "hashVersion",
            "chunks",
            "suspiciousTimes",
            "timeRules",
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
    policy: SealPolicy,
    until: datetime | None = None,
) -> int:
    """Seal every closed window of one organization; return how many digests were written.

    Windows are aligned to ``interval``; with ``until``, the last one may end early, at
    ``until`` (never later than ``now - delay``), and aligned windows resume from there.
    """
    interval, delay, signer, anchor = policy.interval, policy.delay, policy.signer, policy.anchor
    digests = TenantCollection(db[DIGESTS], organization_id)
    last = digests.find_one({}, sort=[("sequence", DESCENDING)])
    if anchor is not None:
        _check_reaches_anchor(digests, last, anchor.head(organization_id))
    start = last["windowEnd"] if last else floor_to(since, interval)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    previous = last["digestHash"] if last else None
    sequence = last["sequence"] + 1 if last else 1
    # where the window's records start among the leaves of the verifiable log (merkle.py):
    # every sealed record becomes a leaf, in order (bookkeeping, not signed: a wrong value
    # only makes a proof fail); unknown after a chain sealed before the log existed
    tree_start = _next_tree_start(last)
    backdated = anchor.backdated_until(organization_id) if anchor is not None else None
    evidence = TimeEvidence(db, organization_id, anchor)
    written = 0
    limit = now - delay if until is None else min(now - delay, until)
    # whole milliseconds, as BSON keeps dates: a window end read back must be the end its
    # records were selected by (else a record in the end's millisecond is in two windows)
    limit = limit.replace(microsecond=limit.microsecond - limit.microsecond % 1000)
    while written < MAX_WINDOWS_PER_RUN:
        end = floor_to(start, interval) + interval
        if end > limit:
            if until is None or start >= limit:
                break
            end = limit
        digest_id = ObjectId()
        count, chunk_hashes, suspicious = _write_chunks(
            db, organization_id, digest_id, start, end, backdated, evidence
        )
        digest = {
            "_id": digest_id,
            "organizationId": organization_id,
            "sequence": sequence,
            "windowStart": start,
            "windowEnd": end,
            "count": count,
            "hashVersion": HASH_VERSION,
            "chunks": chunk_hashes,
            "recordsHash": _chunks_hash(chunk_hashes),
            "previousDigestHash": previous,
            "algorithm": ALGORITHM,
            "keyId": signer.key_id,
            # records whose times no request explains: sealed all the same, and flagged
            # (its presence also says the window's times were checked when it was sealed)
            "suspiciousTimes": suspicious,
            # a wait in the spool, or an export's length, was believed only when confirmed
            # outside the record (the replay ledger, the export's first record)
            "timeRules": TIME_RULES,
        }
        digest["digestHash"] = digest_hash(digest)
        digest["signature"] = signer.sign(digest["digestHash"])
        digest["createdAt"] = now
        if tree_start is not None:
            digest["treeStart"] = tree_start
        try:
            digests.insert_one(digest)
        except DuplicateKeyError:  # another process sealed this window first
            TenantCollection(db[CHUNKS], organization_id).delete_many({"digestId": digest_id})
            return written
        if anchor is not None:
            anchor.append(organization_id, digest)
        if suspicious:
            log.warning(
                "Organization %s: %d record(s) with suspicious times sealed in window #%d "
                "(%s .. %s); verify names them",
                organization_id,
                suspicious,
                sequence,
                iso(start),
                iso(end),
            )
        previous, sequence, start = digest["digestHash"], sequence + 1, end
        tree_start = None if tree_start is None else tree_start + count
        written += 1
    return written


def _next_tree_start(last: dict | None) -> int | None:
    if last is None:
        return 0
    start = last.get("treeStart")
    if isinstance(start, int) and not isinstance(start, bool):
        return start + int(last.get("count") or 0)
    return None


def _check_reaches_anchor(digests: TenantCollection, last: dict | None, head) -> None:
    if head is None:
        return
    sequence, anchored_hash = head
    if last is None or last["sequence"] < sequence:
        raise SealRefused(
            f"The anchor says digest #{sequence} was sealed, but the database ends at "
            f"#{last['sequence'] if last else 0}: digests were deleted. Not sealing; run verify."
        )
    at_head = digests.find_one({"sequence": sequence}, {"digestHash": 1})
    if at_head is None or at_head.get("digestHash") != anchored_hash:
        raise SealRefused(
            f"Digest #{sequence} in the database is not the one anchored. Not sealing; run verify."
        )


def _write_chunks(
    db: Database,
    organization_id: ObjectId,
    digest_id: ObjectId,
    start,
    end,
    backdated: datetime | None = None,
    evidence: TimeEvidence | None = None,
):
    """Hash the window's records, streamed, into chunks of entries; return (count, hashes,
    how many records have times no request explains)."""
    chunks = TenantCollection(db[CHUNKS], organization_id)
    hashes: list[str] = []
    buffer: list[list] = []
    count = suspicious = 0

    def flush():
        hashes.append(_chunk_hash(buffer))
        chunks.insert_one(
            {
                "_id": ObjectId(),
                "digestId": digest_id,
                "index": len(hashes) - 1,
                "windowEnd": end,
                "lastMs": buffer[-1][2],
                "records": buffer,
            }
        )

    for record in _record_stream(db, organization_id, start, end):
        buffer.append([str(record["_id"]), record_hash_v2(record), _ms(record["storedAt"])])
        count += 1
        if time_suspicion(record, backdated, evidence) is not None:
            suspicious += 1
        if len(buffer) == CHUNK_SIZE:
            flush()
            buffer = []
    if buffer:
        flush()
    return count, hashes, suspicious


def iter_digests(db: Database, organization_id: ObjectId):
    """An organization's digests in chain order, for export to write-once storage."""
    cursor = TenantCollection(db[DIGESTS], organization_id).find({}, {"_id": 0})
    yield from cursor.sort("sequence", ASCENDING).batch_size(100)


def seal_all(
    main_db: Database,
    audit_db: Database,
    now: datetime,
    policy: SealPolicy,
    only: ObjectId | None = None,
    until: datetime | None = None,
    on_checkpoint=None,
) -> dict:
    """Seal every organization (or one); return the digests written per organization.

    Then each organization's verifiable log grows by the windows just sealed; a new
    checkpoint is handed to ``on_checkpoint(organization_id, checkpoint)``.

    One organization's failure (a refused chain, a store error) is logged and reported as
    ``{"error": ...}`` for it; the others are sealed all the same.
    """
    query = {"_id": only} if only else {}
    written: dict = {}
    for organization in main_db.organizations.find(query, {"createdAt": 1}):
        key = str(organization["_id"])
        try:
            written[key] = seal_organization(
                audit_db, organization["_id"], organization["createdAt"], now, policy, until
            )
        except (SealRefused, PyMongoError, OSError) as error:
            log.error("Sealing organization %s failed: %s", key, error)
            written[key] = {"error": f"{type(error).__name__}: {error}"}
            continue
        try:
            checkpoint = grow_tree(audit_db, organization["_id"], now, policy)
        except (TreeRefused, PyMongoError, OSError, LookupError) as error:
            log.error("The verifiable log of organization %s did not grow: %s", key, error)
            continue
        if checkpoint is not None and on_checkpoint is not None:
            on_checkpoint(organization["_id"], checkpoint)
    return written


def grow_tree(
    db: Database, organization_id: ObjectId, now: datetime, policy: SealPolicy
) -> dict | None:
    """Append the records of the windows sealed since the last growth to the organization's
    Merkle tree (merkle.py), each checked against its digest first; return the new
    checkpoint, if the tree grew."""
    if policy.notary is None:
        return None
    return merkle.extend(
        db,
        organization_id,
        policy.notary,
        now,
        policy.anchor,
        stamp=policy.timestamps.stamp if policy.timestamps is not None else None,
        entries=lambda digest: _digest_entries(db, organization_id, digest),
        records=lambda digest: _record_stream(
            db, organization_id, digest["windowStart"], digest["windowEnd"]
        ),
        hash_of=_sealed_hash,
    )


def _digest_entries(db: Database, organization_id: ObjectId, digest: dict):
    """(record id, hash) of a digest's records, in its order (chunks, or inline in v1)."""
    if "chunks" not in digest:
        for entry in digest.get("records") or []:
            yield str(entry[0]), str(entry[1])
        return
    chunks = TenantCollection(db[CHUNKS], organization_id)
    for index, expected in enumerate(digest["chunks"]):
        chunk = chunks.find_one({"digestId": digest["_id"], "index": index})
        entries = chunk.get("records", []) if chunk else None
        if entries is None or _chunk_hash(entries) != expected:
            raise TreeRefused(
                f"chunk {index} of digest #{digest['sequence']} is missing or was edited; "
                "run verify"
            )
        for record_id, record_hash_, _ in entries:
            yield record_id, record_hash_


def _sealed_hash(digest: dict, record: dict) -> str:
    return record_hash_v2(record) if digest.get("hashVersion") == 2 else record_hash(record)


@dataclass
class WindowReport:
    sequence: int
    window_start: datetime
    window_end: datetime
    status: str = "verified"  # verified, failed, expired
    problems: list[dict] = field(default_factory=list)

    def fail(self, kind: str, message: str, record_id: str | None = None) -> None:
        self.status = "failed"
        if len(self.problems) >= MAX_PROBLEMS_PER_WINDOW:
            if self.problems[-1]["type"] != "more":
                self.problems.append({"type": "more", "message": "More problems not listed."})
            return
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
    chain_problems: list[dict] = field(default_factory=list)
    # when the verification began: what it found holds from then (sealing.store_state)
    started_at: datetime | None = None

    def fail(self, kind: str, message: str) -> None:
        self.chain_problems.append({"type": kind, "message": message})

    @property
    def ok(self) -> bool:
        return not self.chain_problems and all(w.status != "failed" for w in self.windows)

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
            "chainProblems": self.chain_problems,
            "details": [w.as_dict() for w in self.windows],
        }


def verify_organization(
    db: Database,
    organization_id: ObjectId,
    now: datetime,
    policy: SealPolicy,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    last: int | None = None,
) -> VerifyReport:
    """Recompute the digests of one organization (all, a time range, or the ``last`` N).

    With the policy's ``anchor``, the chain must reach every anchored digest unchanged;
    records stored where a window should already be sealed (by the policy's interval and
    delay) but is not are reported too.
    """
    signer, anchor = policy.signer, policy.anchor
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
    report = VerifyReport(started_at=now)
    backdated = anchor.backdated_until(organization_id) if anchor is not None else None
    previous = None
    if chain and chain[0]["sequence"] > 1:
        previous = digests.find_one({"sequence": chain[0]["sequence"] - 1})
    expired = expired_before(policy, organization_id)
    evidence = TimeEvidence(db, organization_id, anchor, expired)
    malformed = [d for d in chain if not _well_formed(d)]
    for digest in malformed:  # a field of the wrong type: edited, and unreadable as a window
        report.fail("digestEdited", f"Digest #{digest.get('sequence')} has malformed fields.")
    chain = [d for d in chain if _well_formed(d)]
    for batch_start in range(0, len(chain), RECORDS_BATCH_WINDOWS):
        batch = chain[batch_start : batch_start + RECORDS_BATCH_WINDOWS]
        older = [d for d in batch if d.get("hashVersion", 1) == 1]
        hashes = dict(
            zip(map(id, older), _hashes_by_window(db, organization_id, older), strict=True)
        )
        for digest in batch:
            window = WindowReport(
                digest["sequence"], _aware(digest["windowStart"]), _aware(digest["windowEnd"])
            )
            report.windows.append(window)
            try:
                _check_digest(digest, previous, signer, window, first_in_chain=previous is None)
                _check_tree_start(digest, previous, window)
                if window.window_end <= expired.windows_before and id(digest) in hashes:
                    if window.status != "failed":  # an early digest: its window, as a whole
                        window.status = "expired"
                elif window.window_end <= expired.windows_before:
                    _check_purged_window(
                        db, organization_id, digest, window, expired, backdated, evidence
                    )
                elif id(digest) in hashes:
                    _check_records(digest, hashes[id(digest)], window)
                else:
                    _check_chunked_records(
                        db, organization_id, digest, window, expired, backdated, evidence
                    )
            except (TypeError, ValueError, KeyError, AttributeError) as error:
                # whatever was edited into a digest or a chunk cannot stop verification
                window.fail("digestEdited", f"The digest or its chunks were edited ({error}).")
            previous = digest
    sealed_until = _aware(chain[-1]["windowEnd"]) if chain else None
    records = TenantCollection(db[COLLECTION], organization_id)
    _check_outside_windows(report, records, chain, now)
    if start is None and end is None and last is None:  # a full pass: the stored copies too
        edited = index_mismatches(db, organization_id)
        if edited:
            report.fail(
                "modified",
                f"{len(edited)} record(s) have stored index fields that disagree with the "
                f"sealed record, so searches miss or misfile them: {', '.join(edited[:10])}.",
            )
    # (nothing sealed yet: every record waits; a count stopped at 100,000 either way)
    waiting = {} if sealed_until is None else {"storedAt": {"$gte": sealed_until}}
    report.unsealed_records = records.count_documents(waiting, limit=100_000)
    if anchor is not None:
        _check_anchor(report, digests, chain, anchor.entries(organization_id), start, end, last)
    if end is None:
        interval = policy.interval
        due = now - policy.delay - interval - max(timedelta(minutes=1), interval / 4)
        tail = {"$lt": due} if sealed_until is None else {"$gte": sealed_until, "$lt": due}
        late = records.count_documents({"storedAt": tail}, limit=100_000)
        if late and (last is None or sealed_until is not None):
            report.fail(
                "unsealed",
                f"{late} record(s) stored before {iso(due)} are in windows that should have "
                "been sealed but are not (sealing stopped, or its digests were deleted).",
            )
    if anchor is not None and policy.notary is not None:
        roots = policy.timestamps.roots if policy.timestamps is not None else ()
        _check_checkpoints(report, db, organization_id, anchor, policy.notary, last, roots)
    if start is None and end is None and last is None:  # a full pass: every tile
        _check_tiles(report, db, organization_id)
    return report


MAX_CHECKPOINTS_CHECKED = 1000
RECENT_CHECKPOINTS = 24


def _check_checkpoints(
    report, db, organization_id, anchor: Anchor, notary: Notary, last, roots=()
) -> None:
    """Each checkpoint anchored outside the database (the newest ones) must be signed by the
    installation's key and be the root of the tree the database holds at its size: so the
    tree still extends every checkpoint published, and its tiles were not rewritten. A
    checkpoint's RFC 3161 timestamp must be of that checkpoint (and, with the authority's
    roots set, signed by it)."""
    from ...verifier import VerificationError, verified_checkpoint

    anchored = anchor.checkpoints(
        organization_id, last=RECENT_CHECKPOINTS if last else MAX_CHECKPOINTS_CHECKED
    )
    tiles = merkle.Tiles(db, organization_id)
    origin = notary.log_origin(organization_id)
    if anchored:
        _check_served_state(report, db, organization_id, anchored[-1])
        _check_served_timestamps(report, db, organization_id, anchored)
    for entry in anchored:
        size = int(entry["treeSize"])
        try:
            checkpoint = verified_checkpoint(entry["checkpoint"], notary.verifier_key, origin)
        except VerificationError as error:
            report.fail("checkpointForged", f"The anchored checkpoint of size {size}: {error}.")
            continue
        _check_timestamp(report, entry, size, roots)
        try:
            held = merkle.root(tiles, checkpoint.size)
        except LookupError:
            report.fail(
                "logTruncated",
                f"The verifiable log no longer holds the tree of size {checkpoint.size} that "
                "was published: its tiles were deleted.",
            )
            continue
        if held != checkpoint.root:
            report.fail(
                "logRewritten",
                f"The verifiable log's tree of size {checkpoint.size} is not the one that was "
                "published (its tiles were rewritten): proofs against it fail.",
            )


def _check_timestamp(report, entry: dict, size: int, roots) -> None:
    stamp = entry.get("timestamp")
    if stamp is None:
        return
    try:
        token = stamp.get("token") if isinstance(stamp, dict) else None
        if not isinstance(token, str):
            raise timestamps.TimestampError("it holds no token")
        timestamps.check(timestamps.decode(token), entry["checkpoint"], roots)
    except timestamps.TimestampError as error:
        report.fail(
            "timestampInvalid",
            f"The RFC 3161 timestamp of the anchored checkpoint of size {size} does not hold: "
            f"{error}.",
        )


def _check_served_timestamps(report, db, organization_id, anchored: list[dict]) -> None:
    """The timestamps the API and proof files serve (``audit_checkpoints``) must be the
    ones anchored: none removed (the proof would lose its date), replaced or added. One
    query for the checked checkpoints' sizes, on ``org_tree_size_unique``."""
    sizes = [int(entry["treeSize"]) for entry in anchored]
    stored = {
        document.get("treeSize"): document
        for document in TenantCollection(db[merkle.CHECKPOINTS], organization_id)
        .find({"treeSize": {"$in": sizes}}, {"treeSize": 1, "timestamp.token": 1})
        .hint("org_tree_size_unique")
        .limit(len(sizes))
    }
    odd = []
    for entry, size in zip(anchored, sizes, strict=True):
        if size not in stored:
            continue  # a checkpoint gone: checkpointMissing names the newest
        kept = entry.get("timestamp")
        served = stored[size].get("timestamp")
        token = kept.get("token") if isinstance(kept, dict) else None
        served_token = served.get("token") if isinstance(served, dict) else None
        if token != served_token:
            odd.append(size)
    if odd:
        report.fail(
            "timestampInvalid",
            f"{len(odd)} checkpoint(s) served from the database carry another RFC 3161 "
            "timestamp than the one anchored (removed, replaced or added), tree size(s) "
            f"{', '.join(map(str, odd[:10]))}: their proofs' dates are not the authority's.",
        )


MAX_TILE_PROBLEMS = 10


def _check_tiles(report, db, organization_id) -> None:
    """Each complete tile must hash to its entry in the tile above. A root is computed from
    the tile above (never from the complete tile itself, which only proofs read), so a leaf
    rewritten there changes no checkpoint's root, yet fails the proofs of its neighbours.
    One query per tile above: it reads the (at most 256) tiles below it by id."""
    tiles = merkle.Tiles(db, organization_id)
    collection = TenantCollection(db[merkle.TILES], organization_id)
    found = 0
    level = 1
    while found < MAX_TILE_PROBLEMS:
        prefix = f"{organization_id}/{level}/"
        parents = collection.find(
            {"_id": {"$gte": prefix, "$lt": prefix[:-1] + "0"}}, {"index": 1, "hashes": 1}
        )
        seen = False
        for parent in parents:
            seen = True
            entries = bytes(parent.get("hashes") or b"")
            first = int(parent["index"]) * merkle.WIDTH
            count = len(entries) // merkle.HASH
            below = tiles.fetch([(level - 1, first + j) for j in range(count)])
            for j in range(count):
                child = below.get((level - 1, first + j))
                entry = entries[j * merkle.HASH : (j + 1) * merkle.HASH]
                if child is None or len(child) != merkle.WIDTH * merkle.HASH:
                    report.fail(
                        "logTruncated",
                        f"Tile {level - 1}/{first + j} of the verifiable log is gone or cut "
                        "short: the proofs of its records cannot be given.",
                    )
                elif merkle.reduce_tile(child) != entry:
                    report.fail(
                        "logRewritten",
                        f"Tile {level - 1}/{first + j} of the verifiable log no longer hashes "
                        "to its entry in the tile above (its leaves were rewritten): the "
                        "proofs of its records fail.",
                    )
                else:
                    continue
                found += 1
                if found >= MAX_TILE_PROBLEMS:
                    return
        if not seen:
            return
        level += 1


def _check_served_state(report, db, organization_id, newest: dict) -> None:
    """What proofs are served from must still hold the newest checkpoint anchored: the
    checkpoint itself (else the records after the one before read as not in the log yet),
    and a tree state at least that large (else the same)."""
    size = int(newest["treeSize"])
    stored = merkle.latest_checkpoint(db, organization_id, size)
    if stored is None or stored.get("checkpoint") != newest["checkpoint"]:
        report.fail(
            "checkpointMissing",
            f"The checkpoint of tree size {size} anchored outside the database is not the one "
            "the database serves (deleted or replaced): proofs against it are not given.",
        )
    state = merkle.tree_state(db, organization_id)
    digests = TenantCollection(db[DIGESTS], organization_id)
    digest = digests.find_one({"sequence": state.sequence}) if state.sequence else None
    if digest is not None and isinstance(digest.get("treeStart"), int):
        ends = digest["treeStart"] + int(digest.get("count") or 0)
    else:  # no digest in the tree yet: empty; a digest gone: the chain's own checks name it
        ends = 0 if not state.sequence else state.size
    if state.size < size or ends != state.size:
        report.fail(
            "treeBehind",
            f"The verifiable log's state (tree size {state.size}, up to digest "
            f"#{state.sequence}) is not the tree of size {size} that was published: its "
            "records read as not in the log yet.",
        )


def _well_formed(digest: dict) -> bool:
    return (
        isinstance(digest.get("sequence"), int)
        and isinstance(digest.get("windowStart"), datetime)
        and isinstance(digest.get("windowEnd"), datetime)
    )


FUTURE_SKEW = timedelta(minutes=5)

# What a record's times may say (docs/integrity.md, "Times no request explains"). A record
# is built when its request has been answered and stored at once; ``createdAt`` is when the
# request came in. A record the store refused waits in the spool, which notes when
# (``spooledAt``), and gets its ``storedAt`` when replayed, however long the outage was.
CLOCK_SKEW = timedelta(minutes=2)  # between the hosts' clocks (they stamp each time)
STORE_LAG = timedelta(minutes=5)  # receiving -> storing (or spooling): a request's length
EXPORT_LAG = timedelta(days=1)  # what an export's second record may add: its stream's length
EXPORT_STARTED = "auditLog.export"  # an export's first record, written when it starts
EXPORT_ENDED = "auditLog.exportEnded"  # written when the export's stream ends
# the rules a digest's window was sealed with (``timeRules``): 2, a wait in the spool and
# an export's length are believed only when confirmed outside the record
TIME_RULES = 2


EXPORT_START_CANDIDATES = 20  # records of one request id at one moment worth reading


class TimeEvidence:
    """What, outside a record, confirms what its times claim; for one organization.

    - A wait in the spool (``spooledAt``): the anchor's replay ledger holds the record's
      id with the same times (``Anchor.anchor_replayed``, written before it was inserted).
      Without an anchor nothing is confirmed (as nothing is excused by retention).
    - An export's length (``auditLog.exportEnded``, by its ``durationMs``): the record is
      the one the app writes when an export's stream ends (``capture.record_export_outcome``)
      and the export's first record, written when it started, is in the organization with
      the same ``requestId``, ``createdAt``, ``method`` and ``path``, and is itself not
      suspicious; or it is gone with retention (stored before an anchored purge bound).

    Reads the ledger file of one minute at a time (records come in ``storedAt`` order),
    and only for records that claim a wait the normal bound does not cover; looks an
    export's start up (one indexed query) only for an end the normal bound does not cover.
    """

    def __init__(
        self,
        db: Database,
        organization_id: ObjectId,
        anchor: Anchor | None,
        expiry: Expiry | None = None,
    ):
        self._records = TenantCollection(db[COLLECTION], organization_id)
        self._organization_id = organization_id
        self._anchor = anchor
        self._known_expiry = expiry  # None: read from the anchor when first needed
        self._minute: datetime | None = None
        self._replayed: frozenset[tuple] = frozenset()

    @property
    def _expiry(self) -> Expiry:
        if self._known_expiry is None:
            self._known_expiry = _expiry(self._anchor, self._organization_id)
        return self._known_expiry

    def replayed(self, record: dict) -> bool:
        if self._anchor is None:
            return False
        try:
            entry = replayed_entry(record)
        except (KeyError, TypeError, AttributeError):
            return False
        minute = _aware(record["storedAt"]).replace(second=0, microsecond=0)
        if minute != self._minute:
            try:
                self._replayed = self._anchor.replayed(self._organization_id, minute)
            except OSError as error:  # unreadable: nothing is confirmed by it
                log.error("Could not read the replay ledger of %s: %s", minute, error)
                self._replayed = frozenset()
            self._minute = minute
        key = (entry["id"], entry["createdAt"], entry["spooledAt"], entry["storedAt"])
        return key in self._replayed

    def export_started(self, record: dict, backdated: datetime | None) -> bool:
        request_id, method, path = record.get("requestId"), record.get("method"), record.get("path")
        created = record.get("createdAt")
        if not (
            isinstance(request_id, str)
            and isinstance(method, str)
            and isinstance(path, str)
            and isinstance(created, datetime)
        ):
            return False
        # a walk of the request id's index at that moment (a request writes a record or
        # two), the rest told apart here: on both stores an index walk, never a scan
        candidates = (
            self._records.find(
                {"requestId": request_id, "createdAt": {"$gte": created, "$lte": created}}
            )
            .sort([("createdAt", -1), ("_id", -1)])
            .hint("org_requestid_newest")
            .limit(EXPORT_START_CANDIDATES)
        )
        first = next(
            (
                candidate
                for candidate in candidates
                if candidate.get("action") == EXPORT_STARTED
                and candidate.get("method") == method
                and candidate.get("path") == path
                and candidate["_id"] != record.get("_id")
            ),
            None,
        )
        if first is None:  # gone with retention, if stored before what it has removed
            stored_by = _aware(created) + STORE_LAG
            progress = self._expiry.progress
            bound = max(
                self._expiry.stored_before,
                progress[0] if progress is not None else NOTHING_EXPIRED,
                self._expiry.received_before,
            )
            return stored_by < _aware(bound)
        stored, ended = first.get("storedAt"), record.get("storedAt")
        if not isinstance(stored, datetime) or not isinstance(ended, datetime):
            return False
        if _aware(stored) > _aware(ended):
            return False  # written after the export's end: not its start
        return time_suspicion(first, backdated, self) is None


def time_suspicion(
    record: dict, backdated: datetime | None = None, evidence: TimeEvidence | None = None
) -> str | None:
    """Why a record's times are not those of a real request, or None if they are.

    Someone who can write the database can insert a record into the window still open,
    with any ``createdAt``: dated last month it lists among last month's records, dated
    ahead it tops the list, and sealing would sign it as genuine. So a ``createdAt`` after
    ``storedAt`` (beyond clock skew), or older than storing, or spooling, explains, is
    named. ``backdated``: records stored up to then may be dated back (the demo's generated
    traffic; anchored outside the database when the demo is seeded).

    ``evidence``: what confirms, outside the record, a wait in the spool or an export's
    length (sealing and ``verify`` always give it). Without it, the record's own claims
    are taken as they are: only their shape is checked.
    """
    created, stored = record.get("createdAt"), record.get("storedAt")
    if not isinstance(stored, datetime):
        return None  # no window covers it: reported as inserted on its own
    stored = _aware(stored)
    if not isinstance(created, datetime):
        return "Its createdAt is not a date."
    created = _aware(created)
    if created > stored + CLOCK_SKEW:
        return f"Received at {iso(created)}, after it was stored ({iso(stored)})."
    reference, what, unconfirmed = stored, "stored", ""
    if "spooledAt" in record:
        spooled = record["spooledAt"]
        if not isinstance(spooled, datetime):
            return "Its spooledAt is not a date."
        spooled = _aware(spooled)
        if spooled > stored + CLOCK_SKEW:
            return f"Spooled at {iso(spooled)}, after it was stored ({iso(stored)})."
        if created > spooled + CLOCK_SKEW:
            return f"Received at {iso(created)}, after it was spooled ({iso(spooled)})."
        if evidence is None or (stored - created > STORE_LAG and evidence.replayed(record)):
            reference, what = spooled, "spooled"
        elif stored - created > STORE_LAG:  # (within it, storing alone explains the record)
            unconfirmed = (
                f" It says it waited in the spool from {iso(spooled)}, which the replay "
                "ledger does not confirm."
            )
    allowed = STORE_LAG
    if reference - created > allowed:
        length = _export_length(record)
        if length and (evidence is None or evidence.export_started(record, backdated)):
            allowed += length
        elif length:
            unconfirmed += (
                " It says it ended an export, which no record of the export's start confirms."
            )
    if reference - created > allowed:
        if backdated is not None and stored <= _aware(backdated):
            return None
        return (
            f"Received at {iso(created)}, {_span(reference - created)} before it was {what} "
            f"({iso(reference)}); a request explains at most {_span(allowed)}.{unconfirmed}"
        )
    return None


def _export_length(record: dict) -> timedelta:
    """How long an export's stream ran, by its second record (up to ``EXPORT_LAG``)."""
    duration = record.get("durationMs")
    if record.get("action") != EXPORT_ENDED or isinstance(duration, bool):
        return timedelta(0)
    if not isinstance(duration, int | float) or not math.isfinite(duration) or duration < 0:
        return timedelta(0)
    return timedelta(milliseconds=min(duration, EXPORT_LAG.total_seconds() * 1000))


def _span(gap: timedelta) -> str:
    seconds = int(gap.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    if seconds >= 120:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


def _check_outside_windows(report, records: TenantCollection, chain: list, now) -> None:
    """Records no window can cover: without a stored time, before the chain, in the future."""
    odd = records.count_documents({"storedAt": {"$not": {"$type": "date"}}}, limit=1000)
    if odd:
        report.fail(
            "inserted",
            f"{odd} record(s) have no storedAt date: no window covers them (inserted by hand).",
        )
    future = records.count_documents({"storedAt": {"$gt": now + FUTURE_SKEW}}, limit=1000)
    if future:
        report.fail("inserted", f"{future} record(s) are stored in the future (inserted by hand).")
    if chain and chain[0]["sequence"] == 1:
        before = records.count_documents(
            {"storedAt": {"$lt": _aware(chain[0]["windowStart"])}}, limit=1000
        )
        if before:
            report.fail(
                "inserted",
                f"{before} record(s) are stored before the chain's first window (inserted).",
            )


def _check_anchor(report, digests, chain, anchored: dict, start, end, last) -> None:
    """Every anchored digest must still be in the database, unchanged."""
    if not anchored:
        return
    if start is not None or end is not None or last is not None:
        if not chain:
            head = max(anchored)
            anchored = {head: anchored[head]}
        else:  # a part of the chain: its anchored digests, and the anchored head
            first, final = chain[0]["sequence"], max(anchored)
            anchored = {seq: h for seq, h in anchored.items() if seq >= first or seq == final}
    stored = {
        d["sequence"]: d.get("digestHash")
        for d in digests.find(
            {"sequence": {"$in": sorted(anchored)}}, {"sequence": 1, "digestHash": 1}
        )
    }
    head = max(anchored)
    if not stored and not chain:
        report.fail(
            "allDigestsDeleted",
            f"The anchor holds {len(anchored)} digest(s) up to #{head}, the database none: "
            "every digest was deleted.",
        )
        return
    missing = sorted(seq for seq in anchored if seq not in stored)
    if head in missing:
        newest = max(stored) if stored else 0
        report.fail(
            "newestDigestsDeleted",
            f"The anchor's newest digest is #{head}; the database's is #{newest}: the newest "
            "digests were deleted.",
        )
    elif missing:
        report.fail("missingDigest", f"Anchored digests {missing[:10]} are missing.")
    changed = sorted(seq for seq, h in stored.items() if h != anchored[seq])
    if changed:
        report.fail(
            "replacedDigest",
            f"Digests {changed[:10]} are not the ones anchored: they were replaced.",
        )


def _sealed_entries(db: Database, organization_id: ObjectId, digest: dict, window):
    """The (storedAt ms, id, hash) entries of a chunked digest, one chunk in memory."""
    chunks = TenantCollection(db[CHUNKS], organization_id)
    for index, expected in enumerate(digest.get("chunks", [])):
        chunk = chunks.find_one({"digestId": digest["_id"], "index": index})
        entries = chunk.get("records", []) if chunk else []
        if chunk is None or _chunk_hash(entries) != expected:
            window.fail(
                "digestEdited",
                f"Chunk {index} of the digest's record list is missing or was edited.",
            )
        elif "lastMs" in chunk and entries and chunk["lastMs"] != entries[-1][2]:
            # not hashed (an index key): a wrong one hides its records from their proofs
            window.fail(
                "digestEdited",
                f"Chunk {index}'s lastMs is not its last record's time: the proofs of its "
                "records cannot find them.",
            )
        for entry in entries:
            if not (
                isinstance(entry, list)
                and len(entry) == 3
                and isinstance(entry[0], str)
                and isinstance(entry[1], str)
                and isinstance(entry[2], int)  # an int64 reads back as bson.Int64
                and not isinstance(entry[2], bool)
            ):
                window.fail("digestEdited", f"Chunk {index} holds a malformed entry.")
                continue
            record_id, record_hash_, stored_ms = entry
            yield (int(stored_ms), record_id), record_hash_


def _check_purged_window(
    db,
    organization_id,
    digest,
    window,
    expired: Expiry,
    backdated: datetime | None = None,
    evidence: TimeEvidence | None = None,
) -> None:
    """A window the purge has gone past. While its chunks remain, its records are checked
    as any window's (a record the purge has not reached yet, or one kept by a hold, is no
    less sealed); once they are gone, nothing of it should remain: a record found there was
    put there."""
    chunks = TenantCollection(db[CHUNKS], organization_id)
    if not digest.get("chunks") or chunks.find_one({"digestId": digest["_id"], "index": 0}):
        _check_chunked_records(db, organization_id, digest, window, expired, backdated, evidence)
    else:
        _check_nothing_left(db, organization_id, window)
    if window.status != "failed":
        window.status = "expired"


def _check_nothing_left(db, organization_id, window) -> None:
    found = [
        str(record["_id"])
        for record in _record_stream(
            db, organization_id, window.window_start, window.window_end
        ).limit(MAX_PROBLEMS_PER_WINDOW)
    ]
    for record_id in found:
        window.fail(
            "inserted", f"Record {record_id} is in a window retention has purged.", record_id
        )


def _check_chunked_records(
    db,
    organization_id,
    digest,
    window,
    expired: Expiry,
    backdated: datetime | None = None,
    evidence: TimeEvidence | None = None,
) -> None:
    """Merge the sealed entries with the window's records, both in (storedAt, _id) order;
    in windows sealed with their times checked, name each record, as sealed, whose times
    no request explains (sealed all the same: flagged, not hidden), by the rules the
    window was sealed with (``timeRules``: claims confirmed outside the record, or not)."""
    if _chunks_hash(digest.get("chunks", [])) != digest.get("recordsHash"):
        window.fail("digestEdited", "The digest's chunk list does not match its records hash.")
    sealed = _sealed_entries(db, organization_id, digest, window)
    times_checked = "suspiciousTimes" in digest
    if digest.get("timeRules") != TIME_RULES:
        evidence = None  # sealed before claims were confirmed: judged as it was sealed
    actual = (
        ((_ms(r["storedAt"]), str(r["_id"])), record_hash_v2(r), r)
        for r in _record_stream(db, organization_id, window.window_start, window.window_end)
    )
    missing: dict[str, str] = {}
    # removed by retention: stored before the purge bound (the purge deletes by storing
    # time), or received before the legacy bound (the TTL index of earlier versions)
    purged: set[str] = set()
    extra: set[str] = set()
    s, a = next(sealed, None), next(actual, None)
    while s is not None or a is not None:
        if a is None or (s is not None and s[0] < a[0]):
            assert s is not None  # (a is None, so s is not: the loop runs while either is)
            missing[s[0][1]] = s[1]
            if expired.excuses(s[0][1], s[0][0]):
                purged.add(s[0][1])
            s = next(sealed, None)
        elif s is None or a[0] < s[0]:
            extra.add(a[0][1])
            a = next(actual, None)
        else:
            if s[1] != a[1]:
                window.fail("modified", f"Record {s[0][1]} was modified after sealing.", s[0][1])
            elif times_checked and (why := time_suspicion(a[2], backdated, evidence)) is not None:
                window.fail("suspiciousTime", f"Record {s[0][1]}: {why}", s[0][1])
            s, a = next(sealed, None), next(actual, None)
        if len(missing) + len(extra) > 10 * MAX_PROBLEMS_PER_WINDOW:
            window.fail("more", "Too many differences to list: the window was rewritten.")
            break
    for record_id in sorted(missing.keys() & extra):
        window.fail("modified", f"Record {record_id} was modified after sealing.", record_id)
    for record_id in sorted(missing.keys() - extra - purged):
        window.fail(
            "deleted", f"Record {record_id} was deleted (or moved out of the window).", record_id
        )
    for record_id in sorted(extra - missing.keys()):
        window.fail("inserted", f"Record {record_id} was inserted after sealing.", record_id)


def _received_before(record_id: str, moment: datetime) -> bool:
    """The app makes a record's id when the request comes in: the id tells when it was."""
    return ObjectId.is_valid(record_id) and ObjectId(record_id).generation_time < moment


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _check_tree_start(digest: dict, previous: dict | None, window: WindowReport) -> None:
    """``treeStart`` (where the window's records start among the verifiable log's leaves)
    is bookkeeping outside the signed digest: it must follow on from the window before, or
    every proof of the window's records is served for the wrong leaf."""
    start = digest.get("treeStart")
    if start is None:
        # only a chain sealed before the verifiable log existed lacks it, from its start
        if previous is not None and previous.get("treeStart") is not None:
            window.fail(
                "treeStartMoved",
                "The digest's treeStart is gone, though the window before has one: its "
                "records read as not in the verifiable log.",
            )
        return
    if digest.get("sequence") == 1:
        expected = 0
    elif previous is not None and previous.get("treeStart") is not None:
        expected = previous["treeStart"] + int(previous.get("count") or 0)
    else:
        return
    if start != expected:
        window.fail(
            "treeStartMoved",
            f"The digest says its records start at leaf {start} of the verifiable log, "
            f"but the windows before end at leaf {expected}: their proofs are served for the "
            "wrong leaves.",
        )


def _check_digest(
    digest: dict, previous: dict | None, signer: Signer, window: WindowReport, first_in_chain: bool
) -> None:
    if digest_hash(digest) != digest.get("digestHash"):
        window.fail("digestEdited", "The digest's content does not match its hash: it was edited.")
    elif not signer.valid(digest["digestHash"], digest.get("signature") or ""):
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
