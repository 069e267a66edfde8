"""Reading the verifiable log: checkpoints, a record's inclusion proof, consistency proofs.

One place for the API, the web view's "Download proof" and ``flask witness``'s server side.
A proof is served with a constant number of reads whatever the log's size: the record, its
window's digest, one chunk of the digest (``org_digest_last``), the tree's state, the
checkpoint, and the tiles on the proof's path in one query (merkle.py).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from flask import current_app
from pymongo import DESCENDING
from pymongo.database import Database

from ..db import Document, TenantCollection
from ..errors import ApiError, bad_request
from ..ids import floor_to, iso
from ..verifier import PROOF_FORMAT, format_tlog_proof
from .integrity import merkle
from .integrity.anchor import millis
from .integrity.digests import CHUNK_SIZE, CHUNKS, DIGESTS
from .integrity.sealing import anchor, notary
from .integrity.timestamps import describe as describe_timestamp
from .store.repository import find_record


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def public_key() -> str:
    return str(notary().verifier_key)


def log_origin(organization_id: ObjectId) -> str:
    return notary().log_origin(organization_id)


def checkpoint(db: Database[Document], organization_id: ObjectId) -> dict:
    """The latest checkpoint of the organization's log, with what verifies it."""
    latest = merkle.latest_checkpoint(db, organization_id)
    return {
        "origin": log_origin(organization_id),
        "publicKey": public_key(),
        **(
            merkle.describe_checkpoint(latest)
            or {
                "treeSize": 0,
                "rootHash": None,
                "checkpoint": None,
                "createdAt": None,
                "timestamp": None,
            }
        ),
    }


def _checkpoint_of_size(db, organization_id, size: int | None) -> dict:
    found = merkle.latest_checkpoint(db, organization_id, size)
    if found is None:
        if size is None:
            raise ApiError(
                409,
                "not_yet_in_log",
                "Nothing is in the verifiable log yet: records enter it when their window "
                "is sealed.",
            )
        raise ApiError(
            404,
            "not_found",
            f"No checkpoint of tree size {size}: a proof is given against a published "
            "checkpoint (GET /api/v1/audit-logs/checkpoint names the latest).",
            "treeSize",
        )
    return found


def record_proof(
    db: Database[Document], organization_id: ObjectId, record_id: ObjectId, size: int | None
) -> dict:
    """The record, in canonical Extended JSON, with its inclusion proof and checkpoint."""
    record = find_record(db, organization_id, record_id)
    if record is None:
        raise _missing(organization_id, record_id)
    index = leaf_index(db, organization_id, record)
    if index is None:
        raise _not_yet(record)
    found = _checkpoint_of_size(db, organization_id, size)
    tree_size = int(found["treeSize"])
    if index >= tree_size:
        if size is not None:
            raise ApiError(
                409,
                "not_in_tree",
                f"The record is leaf {index}, after the tree of size {tree_size}: ask for a "
                "later checkpoint.",
                "treeSize",
            )
        raise _not_yet(record)
    tiles = merkle.Tiles(db, organization_id)
    try:
        hashes, _ = merkle.inclusion(tiles, index, tree_size)
    except LookupError:
        raise _damaged(tree_size) from None
    note = found["checkpoint"]
    return {
        "format": PROOF_FORMAT,
        "origin": log_origin(organization_id),
        "publicKey": public_key(),
        "leafIndex": index,
        "treeSize": tree_size,
        "inclusionProof": [base64.b64encode(h).decode() for h in hashes],
        "checkpoint": note,
        "proof": format_tlog_proof(index, hashes, note),
        "record": merkle.canonical_extended_json(record),
        **({"timestamp": stamp} if (stamp := describe_timestamp(found.get("timestamp"))) else {}),
    }


def consistency(
    db: Database[Document], organization_id: ObjectId, old: int, new: int | None
) -> dict:
    state = merkle.tree_state(db, organization_id)
    if new is None:
        new = state.size
    if new > state.size:
        raise bad_request(f"The log holds {state.size} records; 'to' may not be more.", "to")
    if old > new:
        raise bad_request("'from' may not be more than 'to'.", "from")
    tiles = merkle.Tiles(db, organization_id)
    try:
        proof = merkle.consistency(tiles, old, new)
    except LookupError:
        raise _damaged(new) from None
    found = merkle.latest_checkpoint(db, organization_id, new)
    return {
        "origin": log_origin(organization_id),
        "from": old,
        "to": new,
        "proof": [base64.b64encode(h).decode() for h in proof],
        "checkpoint": found["checkpoint"] if found else None,
    }


def leaf_index(db: Database[Document], organization_id: ObjectId, record: dict) -> int | None:
    """The record's leaf in the tree, or None when its window is not in the tree yet."""
    stored = record.get("storedAt")
    if not isinstance(stored, datetime):
        return None
    stored = _aware(stored)
    digests = TenantCollection(db[DIGESTS], organization_id)
    digest = digests.find_one({"windowStart": {"$lte": stored}}, sort=[("windowStart", DESCENDING)])
    if digest is None or _aware(digest["windowEnd"]) <= stored:
        return None
    start = digest.get("treeStart")
    if not isinstance(start, int) or isinstance(start, bool):
        return None
    if merkle.tree_state(db, organization_id).sequence < digest["sequence"]:
        return None
    position = _position(db, organization_id, digest, str(record["_id"]), millis(stored))
    return None if position is None else start + position


def _position(db, organization_id, digest: dict, record_id: str, stored_ms: int) -> int | None:
    if "chunks" not in digest:  # hash version 1: the digest lists its records
        for position, entry in enumerate(digest.get("records") or []):
            if str(entry[0]) == record_id:
                return position
        return None
    chunks = TenantCollection(db[CHUNKS], organization_id)
    # the first chunks whose last record was stored at or after this one (index
    # org_digest_last); chunks sealed before that field existed are read in order
    near = chunks.find({"digestId": digest["_id"], "lastMs": {"$gte": stored_ms}})
    for chunk in near.sort("lastMs", 1).limit(3):
        found = _in_chunk(chunk, record_id)
        if found is not None:
            return found
    for chunk in chunks.find({"digestId": digest["_id"], "lastMs": {"$exists": False}}):
        found = _in_chunk(chunk, record_id)
        if found is not None:
            return found
    return None


def _in_chunk(chunk: dict, record_id: str) -> int | None:
    for position, entry in enumerate(chunk.get("records") or []):
        if entry and entry[0] == record_id:
            return int(chunk["index"]) * CHUNK_SIZE + position
    return None


def _not_yet(record: dict) -> ApiError:
    config = current_app.config
    interval = timedelta(minutes=config["AUDIT_SEAL_INTERVAL"])
    delay = timedelta(seconds=config["AUDIT_SEAL_DELAY"])
    stored = record.get("storedAt")
    when = None
    if isinstance(stored, datetime):
        # its window closes, waits the delay, and the next seal (every interval / 4) takes it
        when = floor_to(_aware(stored), interval) + interval + delay + interval / 4
    return ApiError(
        409,
        "not_yet_in_log",
        "The record is not in the verifiable log yet: it enters it when its window is "
        f"sealed{f', by about {iso(when)}' if when else ''}.",
        extra={"availableAfter": iso(when) if when else None},
    )


def _damaged(size: int) -> ApiError:
    """The tiles a proof needs are not in the database (deleted, or a checkpoint names a
    tree the log never held): the installation's damage, which ``flask verify`` names."""
    return ApiError(
        503,
        "log_unavailable",
        f"The verifiable log cannot give this proof: the tree of size {size} is not whole in "
        "the database. The installation's operator should run flask verify.",
    )


def _missing(organization_id: ObjectId, record_id: ObjectId) -> ApiError:
    retention = anchor().retention(organization_id)
    purged_before = retention.purged_before
    if purged_before is not None and record_id.generation_time < _aware(purged_before):
        # an id of that age names no record that can still exist; whether one existed, the
        # store can no longer tell (the purge keeps leaf hashes, not ids)
        return ApiError(
            410,
            "purged",
            "No record with this id can be in the log any more: every record stored before "
            f"{iso(purged_before)} is gone, deleted by the organization's retention. If this "
            "one existed, its leaf stays in the tree, so the other proofs still verify.",
            extra={"purgedBefore": iso(purged_before)},
        )
    return ApiError(404, "not_found", "Audit log record not found.", "auditLogId")
