"""The verifiable log: each organization's records as the leaves of a Merkle tree.

RFC 9162 hashing (``audit_app/verifier.py`` has the hashes, the leaf encoding and the proof
checks, so the product and an outside auditor run the same few lines). Leaves are appended
by the sealer, a sealed window at a time, in ``(storedAt, _id)`` order: only records that a
digest has sealed, each checked against its digest entry first, so the tree and the digest
chain always agree on what a window holds.

Storage (C2SP tlog-tiles layout, height 8): the tile at level ``L``, index ``t`` holds the
hashes of the complete subtrees of height ``8L`` numbered ``256t`` to ``256t + 255``; level
0 holds leaf hashes. A tile is one document of ``audit_log_tiles`` (``_id``
``<organizationId>/<L>/<t>``, at most 8 KiB); only the right edge of the tree grows, and a
tile's stored prefix never changes (a write only ever makes a tile longer). Any hash of a
complete subtree is computed from one tile, so a proof at any tree size reads the few tiles
on its path with one query (``Tiles.fetch``).

Each seal that grows the tree signs a checkpoint (C2SP signed note: origin
``<AUDIT_LOG_ORIGIN>/<organizationId>``, tree size, base64 root hash) with Ed25519, stores
it in ``audit_checkpoints`` and appends it to the organization's anchor file, outside the
database.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from bson import ObjectId, json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from ...db import IndexSpec, TenantCollection
from ...ids import iso
from ...verifier import (
    ED25519,
    EMPTY_ROOT,
    NOTE_DASH,
    Checkpoint,
    VerifierKey,
    leaf_bytes,
    leaf_hash,
    node_hash,
    note_key_id,
)
from . import timestamps

log = logging.getLogger(__name__)

TILES = "audit_log_tiles"
TREES = "audit_log_trees"
CHECKPOINTS = "audit_checkpoints"
HEIGHT = 8
WIDTH = 1 << HEIGHT
HASH = 32
MAX_DIGESTS_PER_RUN = 1000
# the record that carries a new checkpoint to the organization's streams: a tree that grew by
# such records alone publishes its checkpoint without another one (no record per seal forever)
CHECKPOINT_ACTION = "auditLog.checkpointed"

TILE_INDEXES: list[IndexSpec] = []  # tiles are read by _id only
# the tree's state, read by every proof and seal: one document per organization, found on
# its index (not a scan of every organization's), and only one even when two sealers race
TREE_INDEXES: list[IndexSpec] = [
    ([("organizationId", ASCENDING)], {"name": "org_unique", "unique": True}),
]
CHECKPOINT_INDEXES: list[IndexSpec] = [
    (
        [("organizationId", ASCENDING), ("treeSize", ASCENDING)],
        {"name": "org_tree_size_unique", "unique": True},
    ),
]


class TreeRefused(Exception):
    """A sealed window's records no longer match its digest: the tree does not grow past it
    until verify has been run and the damage seen."""


# The leaf of a stored record ----------------------------------------------------------------


def canonical_extended_json(value):
    """The record in MongoDB's canonical Extended JSON, as the proof file carries it: what
    ``bson.json_util`` gives (a test holds them equal), walked without its per-value
    dispatch for the plain types."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is dict or isinstance(value, dict):
        return {key: canonical_extended_json(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [canonical_extended_json(item) for item in value]
    try:
        converted = json_util.default(value, CANONICAL_JSON_OPTIONS)
    except TypeError:
        return json.loads(json_util.dumps(value, json_options=CANONICAL_JSON_OPTIONS))
    return canonical_extended_json(converted) if converted is not value else converted


def record_leaf(record: dict) -> bytes:
    return leaf_bytes(canonical_extended_json(record))


# The checkpoint signer --------------------------------------------------------------------


class Notary:
    """Signs checkpoints with an Ed25519 key kept outside the database."""

    def __init__(self, origin: str, private_key: Ed25519PrivateKey):
        if not origin or any(c.isspace() or c == "+" for c in origin):
            raise ValueError("AUDIT_LOG_ORIGIN must be non-empty, without spaces or '+'")
        self.origin = origin
        self._key = private_key
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier_key = VerifierKey(origin, note_key_id(origin, public), public)

    @classmethod
    def from_settings(cls, origin: str, signing_key: str, note_key: str | None) -> Notary:
        """``AUDIT_CHECKPOINT_KEY`` (``PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>``), or
        a key derived from ``AUDIT_SIGNING_KEY`` (HKDF-SHA256), so no new secret is needed."""
        if note_key:
            parts = note_key.split("+", 4)  # base64 may hold "+" too
            if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
                raise ValueError("AUDIT_CHECKPOINT_KEY must be PRIVATE+KEY+<name>+<id>+<key>")
            raw = base64.b64decode(parts[4])
            if len(raw) != 33 or raw[0] != ED25519:
                raise ValueError("AUDIT_CHECKPOINT_KEY is not an Ed25519 note key")
            return cls(origin, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        seed = HKDF(
            algorithm=SHA256(), length=32, salt=None, info=b"audit-log checkpoint key v1"
        ).derive(signing_key.encode("utf-8"))
        return cls(origin, Ed25519PrivateKey.from_private_bytes(seed))

    def log_origin(self, organization_id: ObjectId) -> str:
        return f"{self.origin}/{ObjectId(organization_id)}"

    def sign(self, organization_id: ObjectId, size: int, root: bytes) -> str:
        text = f"{self.log_origin(organization_id)}\n{size}\n{base64.b64encode(root).decode()}\n"
        signature = self._key.sign(text.encode())
        encoded = base64.b64encode(self.verifier_key.key_id + signature).decode()
        return f"{text}\n{NOTE_DASH}{self.origin} {encoded}\n"


# Tiles ----------------------------------------------------------------------------------


def tile_id(organization_id: ObjectId, level: int, index: int) -> str:
    return f"{organization_id}/{level}/{index}"


class Tiles:
    """An organization's tiles: read a few at a time by id, written only longer."""

    def __init__(self, db: Database, organization_id: ObjectId):
        self.organization_id = ObjectId(organization_id)
        self.collection = TenantCollection(db[TILES], self.organization_id)
        self.reads = 0

    def fetch(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The tiles named, with one query."""
        ids = {tile_id(self.organization_id, level, index): (level, index) for level, index in keys}
        if not ids:
            return {}
        self.reads += 1
        found = {}
        for doc in self.collection.find({"_id": {"$in": sorted(ids)}}):
            key = ids.get(doc["_id"])
            if key is not None:
                found[key] = bytes(doc.get("hashes") or b"")
        return found

    def write(self, tiles: dict[tuple[int, int], bytes]) -> None:
        for (level, index), hashes in sorted(tiles.items()):
            width = len(hashes) // HASH
            # a tile only grows: one another sealer wrote at least as long stays (the same
            # hashes), and the upsert that finds it longer fails on its _id
            with contextlib.suppress(DuplicateKeyError):
                self.collection.update_one(
                    {"_id": tile_id(self.organization_id, level, index), "width": {"$lt": width}},
                    {"$set": {"level": level, "index": index, "width": width, "hashes": hashes}},
                    upsert=True,
                )


def reduce_tile(hashes: bytes) -> bytes:
    """The root of a complete subtree whose bottom row is ``hashes`` (a power of two)."""
    row = [hashes[i : i + HASH] for i in range(0, len(hashes), HASH)]
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


def _tile_of(level: int, index: int) -> tuple[int, int, int, int]:
    """(tile level, tile index, first position, how many entries) holding subtree
    (level, index): every complete subtree lies inside one tile."""
    tile_level, rest = divmod(level, HEIGHT)
    first = index << rest
    return tile_level, first >> HEIGHT, first & (WIDTH - 1), 1 << rest


class Hashes:
    """Complete-subtree hashes, from tiles fetched beforehand (``plan`` names them)."""

    def __init__(self, tiles: dict[tuple[int, int], bytes] | None = None):
        self.tiles = tiles
        self.wanted: set[tuple[int, int]] = set()

    def at(self, level: int, index: int) -> bytes:
        tile_level, tile_index, first, count = _tile_of(level, index)
        if self.tiles is None:  # planning: note the tile, any value will do
            self.wanted.add((tile_level, tile_index))
            return EMPTY_ROOT
        hashes = self.tiles.get((tile_level, tile_index), b"")
        part = hashes[first * HASH : (first + count) * HASH]
        if len(part) != count * HASH:
            raise LookupError(f"tile {tile_level}/{tile_index} is missing or too short")
        return reduce_tile(part)


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_root(h: Hashes, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for ``start`` aligned to the subtree (RFC 9162, section 2.1.1)."""
    n = end - start
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return h.at(level, start >> level)
    k = _split(n)
    return node_hash(subtree_root(h, start, start + k), subtree_root(h, start + k, end))


def _path(h: Hashes, m: int, start: int, end: int) -> list[bytes]:
    n = end - start
    if n == 1:
        return []
    k = _split(n)
    if m - start < k:
        return [*_path(h, m, start, start + k), subtree_root(h, start + k, end)]
    return [*_path(h, m, start + k, end), subtree_root(h, start, start + k)]


def _subproof(h: Hashes, m: int, start: int, end: int, whole: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if whole else [subtree_root(h, start, end)]
    k = _split(n)
    if m <= k:
        return [*_subproof(h, m, start, start + k, whole), subtree_root(h, start + k, end)]
    return [*_subproof(h, m - k, start + k, end, False), subtree_root(h, start, start + k)]


def _with_tiles(tiles: Tiles, compute: Callable[[Hashes], object]):
    planner = Hashes()
    compute(planner)
    return compute(Hashes(tiles.fetch(planner.wanted)))


def root(tiles: Tiles, size: int) -> bytes:
    if size == 0:
        return EMPTY_ROOT
    return _with_tiles(tiles, lambda h: subtree_root(h, 0, size))


def inclusion(tiles: Tiles, index: int, size: int) -> tuple[list[bytes], bytes]:
    """(RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size``, its root)."""
    return _with_tiles(tiles, lambda h: (_path(h, index, 0, size), subtree_root(h, 0, size)))


def consistency(tiles: Tiles, old: int, new: int) -> list[bytes]:
    """RFC 9162 consistency proof from the tree of size ``old`` to ``new``."""
    if old == 0 or old == new:
        return []
    return _with_tiles(tiles, lambda h: _subproof(h, old, 0, new, True))


def append(tiles: Tiles, size: int, leaf_hashes: Iterable[bytes]) -> int:
    """Add leaves after ``size``; write the tiles they touch; return the new size."""
    edge = []
    level = 0
    while size >> (HEIGHT * level):
        count = size >> (HEIGHT * level)
        if count & (WIDTH - 1):
            edge.append((level, count >> HEIGHT))
        level += 1
    loaded = tiles.fetch(edge)
    buffers = {key: bytearray(value) for key, value in loaded.items()}
    dirty: set[tuple[int, int]] = set()
    for value in leaf_hashes:
        level, index = 0, size
        while True:
            key = (level, index >> HEIGHT)
            buffer = buffers.setdefault(key, bytearray())
            if len(buffer) != (index & (WIDTH - 1)) * HASH:
                raise LookupError(f"tile {key[0]}/{key[1]} does not end where the tree does")
            buffer += value
            dirty.add(key)
            if index & (WIDTH - 1) != WIDTH - 1:
                break
            value = reduce_tile(bytes(buffer))
            level, index = level + 1, index >> HEIGHT
        size += 1
    tiles.write({key: bytes(buffers[key]) for key in dirty})
    return size


# Growing the tree from the sealed windows -------------------------------------------------


@dataclass
class TreeState:
    size: int
    sequence: int  # the last digest whose records are leaves
    root: bytes


def tree_state(db: Database, organization_id: ObjectId) -> TreeState:
    doc = TenantCollection(db[TREES], ObjectId(organization_id)).find_one({})
    if not doc:
        return TreeState(0, 0, EMPTY_ROOT)
    return TreeState(int(doc["size"]), int(doc["sequence"]), base64.b64decode(doc["rootHash"]))


def latest_checkpoint(db: Database, organization_id: ObjectId, size: int | None = None):
    checkpoints = TenantCollection(db[CHECKPOINTS], ObjectId(organization_id))
    if size is not None:
        return checkpoints.find_one({"treeSize": size})
    return checkpoints.find_one({}, sort=[("treeSize", DESCENDING)])


def extend(
    db: Database,
    organization_id: ObjectId,
    notary: Notary,
    now: datetime,
    anchor=None,
    stamp: Callable[[str], dict | None] | None = None,
    entries: Callable[[dict], Iterator[tuple[str, str]]] | None = None,
    records: Callable[[dict], Iterator[dict]] | None = None,
    hash_of: Callable[[dict, dict], str] | None = None,
) -> dict | None:
    """Append the records of every digest sealed since the tree last grew; sign a
    checkpoint when it grew. Returns the new checkpoint document, or None.

    ``entries(digest)`` yields the digest's sealed (record id, hash), ``records(digest)`` the
    window's records in (storedAt, _id) order, ``hash_of(digest, record)`` the record's hash
    as the digest has it: a record that differs from its entry stops the tree (TreeRefused).
    """
    from .digests import DIGESTS

    assert entries is not None and records is not None and hash_of is not None
    organization_id = ObjectId(organization_id)
    digests = TenantCollection(db[DIGESTS], organization_id)
    trees = TenantCollection(db[TREES], organization_id)
    tiles = Tiles(db, organization_id)
    state = tree_state(db, organization_id)
    size, sequence = state.size, state.sequence
    _check_signed_tree(db, organization_id, notary, tiles, anchor)
    grown = False
    news = [0]  # leaves that are not checkpoint records
    pending = digests.find({"sequence": {"$gt": sequence}}).sort("sequence", ASCENDING)
    for digest in pending.limit(MAX_DIGESTS_PER_RUN):
        if digest["sequence"] != sequence + 1:
            raise TreeRefused(
                f"digest #{sequence + 1} is missing: the tree stops at #{sequence}; run verify"
            )
        start = size
        recorded = digest.get("treeStart")
        if recorded is not None and recorded != start:
            raise TreeRefused(
                f"digest #{digest['sequence']} says its records start at leaf {recorded}, "
                f"but the tree holds {start}; run verify"
            )
        hashes = list(_window_leaves(digest, entries(digest), records(digest), hash_of, news))
        if hashes:
            size = append(tiles, size, hashes)
            grown = True
        if recorded is None:  # a digest sealed before the verifiable log existed
            digests.update_one({"_id": digest["_id"]}, {"$set": {"treeStart": start}})
        new_root = root(tiles, size)
        try:
            updated = trees.update_one(
                {"size": state.size, "sequence": sequence},
                {
                    "$set": {
                        "size": size,
                        "sequence": digest["sequence"],
                        "rootHash": base64.b64encode(new_root).decode(),
                        "updatedAt": now,
                    }
                },
                upsert=state.size == 0 and sequence == 0,
            )
        except DuplicateKeyError:  # another sealer made the first state first
            return None
        if updated.matched_count == 0 and updated.upserted_id is None:
            return None  # another sealer grew it first
        state = TreeState(size, digest["sequence"], new_root)
        sequence = digest["sequence"]
    if not grown:
        return None
    return publish(db, organization_id, notary, state, now, anchor, news[0], stamp)


def _check_signed_tree(db, organization_id: ObjectId, notary: Notary, tiles: Tiles, anchor):
    """The tree about to grow must still be the one signed last: whoever writes the tiles
    (and the tree's state) must not get a checkpoint signed over a leaf they rewrote. The
    last checkpoint is the anchor's (outside the database), else the newest stored one whose
    signature verifies."""
    from ...verifier import VerificationError, verified_checkpoint

    note = None
    if anchor is not None:
        anchored = anchor.checkpoints(organization_id, last=1)
        note = anchored[-1]["checkpoint"] if anchored else None
    if note is None:
        stored = latest_checkpoint(db, organization_id)
        note = stored.get("checkpoint") if stored else None
    if note is None:
        return
    try:
        signed = verified_checkpoint(note, notary.verifier_key, notary.log_origin(organization_id))
        held = root(tiles, signed.size)
    except VerificationError as error:
        raise TreeRefused(f"the last checkpoint does not verify ({error}); run verify") from None
    except LookupError as error:
        raise TreeRefused(
            f"the tiles of the tree last signed are gone ({error}); run verify"
        ) from None
    if held != signed.root:
        raise TreeRefused(
            f"the tiles no longer hold the tree of size {signed.size} that was signed last: "
            "they were rewritten, and no checkpoint is signed over them; run verify"
        )


def publish(
    db,
    organization_id,
    notary: Notary,
    state: TreeState,
    now,
    anchor=None,
    new_records=0,
    stamp: Callable[[str], dict | None] | None = None,
) -> dict:
    """Sign the checkpoint of the tree's state, have it timestamped (``stamp``, an RFC 3161
    authority: never more than its timeout, and unstamped if it fails), store it and
    append it to the anchor."""
    note = notary.sign(organization_id, state.size, state.root)
    timestamp = stamp(note) if stamp is not None else None
    document = {
        "_id": ObjectId(),
        "organizationId": ObjectId(organization_id),
        "treeSize": state.size,
        "rootHash": base64.b64encode(state.root).decode(),
        "checkpoint": note,
        "newRecords": new_records,
        "createdAt": now,
        **({"timestamp": timestamp} if timestamp else {}),
    }
    # a size published already (by another sealer) keeps its first checkpoint
    with contextlib.suppress(DuplicateKeyError):
        TenantCollection(db[CHECKPOINTS], ObjectId(organization_id)).insert_one(document)
    if anchor is not None:
        anchor.append_checkpoint(
            organization_id, state.size, document["rootHash"], note, timestamps.describe(timestamp)
        )
    return document


def _window_leaves(digest, sealed, records, hash_of, news) -> Iterator[bytes]:
    sealed = iter(sealed)
    for record in records:
        if record.get("action") != CHECKPOINT_ACTION:
            news[0] += 1
        expected = next(sealed, None)
        if expected is None or expected[0] != str(record["_id"]):
            raise TreeRefused(
                f"window #{digest['sequence']} holds record {record['_id']} that its digest "
                "does not list in that place; run verify"
            )
        if hash_of(digest, record) != expected[1]:
            raise TreeRefused(
                f"record {record['_id']} changed since window #{digest['sequence']} was "
                "sealed; run verify"
            )
        yield leaf_hash(record_leaf(record))
    if next(sealed, None) is not None:
        raise TreeRefused(
            f"a record of window #{digest['sequence']} is gone since it was sealed; run verify"
        )


def describe_checkpoint(document: dict | None) -> dict | None:
    if not document:
        return None
    checkpoint = Checkpoint.parse(document["checkpoint"].partition("\n\n")[0] + "\n")
    return {
        "treeSize": checkpoint.size,
        "rootHash": document["rootHash"],
        "checkpoint": document["checkpoint"],
        "createdAt": iso(document["createdAt"]),
        "timestamp": timestamps.describe(document.get("timestamp")),
    }
