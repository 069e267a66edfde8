"""A record's proof on the wire: the commands the real driver sends a (scripted) MongoDB to
serve ``GET /api/v1/audit-logs/<id>/proof``, at a thousand leaves and at a million.

The server (``tests/wire.py``) answers from documents built here: the tiles of a tree grown
with ``merkle.append`` on a mongomock database (the record's leaf hash at its index), the
window's digest with its ``treeStart``, one chunk with its ``lastMs``, the tree's state and
a checkpoint signed with the app's key. The test asserts every command the proof sends, and
that the proof the app builds from those answers verifies with ``audit_app.verifier``.
The embedded store is held to the same reads, counted at ``TenantCollection``, through which
every read of the log passes.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from datetime import UTC, datetime, timedelta

import bson
import mongomock
import pytest
from bson import ObjectId

from audit_app import verifier
from audit_app.audit.integrity import merkle, sealing
from audit_app.audit.integrity.digests import CHUNKS, DIGESTS
from audit_app.auth.tokens import issue_token
from audit_app.db import stores

from .factories import audit_record
from .wire import app_on, member_documents

PROOF_COLLECTIONS = {
    "audit_logs",
    DIGESTS,
    CHUNKS,
    merkle.TREES,
    merkle.CHECKPOINTS,
    merkle.TILES,
}
INDEX = 654_321
STORED = datetime(2026, 11, 20, 9, 30, 15, 123000, tzinfo=UTC)


def roundtrip(document: dict) -> dict:
    """The document as the server gives it back (BSON: whole milliseconds, naive UTC)."""
    return bson.decode(bson.encode(document))


PLACEHOLDER = ObjectId("000000000000000000000000")
EDGE = 1_000_000 & ~255  # the complete tiles of a million leaves: 999,936 leaves


def complete_tiles() -> list[dict]:
    """The tiles of the first 999,936 leaves of a million-leaf tree, grown with
    ``merkle.append`` once: every tile they fill is complete, so a log of any organization
    takes them (renamed) and appends its last partial tile itself."""
    db = mongomock.MongoClient().db
    seed = hashlib.sha256(b"a million").digest()
    merkle.append(
        merkle.Tiles(db, PLACEHOLDER),
        0,
        (hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(EDGE)),
    )
    return list(db[merkle.TILES].find({}))


def place(db, organization_id: ObjectId, index: int, value: bytes) -> None:
    """Put a leaf hash at ``index`` of complete tiles, and the hash of each complete tile
    it changes into the tile above, as ``merkle.append`` would have written them."""
    level = 0
    while True:
        key = merkle.tile_id(organization_id, level, index >> 8)
        hashes = bytearray(db[merkle.TILES].find_one({"_id": key})["hashes"])
        at = (index & 255) * 32
        hashes[at : at + 32] = value
        db[merkle.TILES].update_one({"_id": key}, {"$set": {"hashes": bytes(hashes)}})
        if len(hashes) != 256 * 32:
            return
        value = merkle.reduce_tile(bytes(hashes))
        level, index = level + 1, index >> 8


class Log:
    """An organization's verifiable log of ``size`` leaves, the record at ``index``, its
    tiles in ``db`` (``prefix``: the complete tiles to start from, made for PLACEHOLDER)."""

    def __init__(
        self,
        organization_id: ObjectId,
        size: int,
        index: int,
        position: int,
        db=None,
        prefix: list[dict] | None = None,
    ):
        self.organization_id = organization_id
        self.size, self.index = size, index
        self.record = roundtrip(audit_record(organization_id, storedAt=STORED, created_at=STORED))
        leaf = merkle.leaf_hash(merkle.record_leaf(self.record))
        seed = hashlib.sha256(str(size).encode()).digest()
        self.db = mongomock.MongoClient().db if db is None else db
        tiles = merkle.Tiles(self.db, organization_id)
        start = 0
        if prefix:
            renamed = str(PLACEHOLDER), str(organization_id)
            self.db[merkle.TILES].insert_many(
                [
                    {
                        **tile,
                        "_id": tile["_id"].replace(*renamed),
                        "organizationId": organization_id,
                    }
                    for tile in prefix
                ]
            )
            start = EDGE
        merkle.append(
            tiles,
            start,
            (
                leaf if i == index else hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
                for i in range(start, size)
            ),
        )
        if index < start:
            place(self.db, organization_id, index, leaf)
        self.root = merkle.root(tiles, size)
        stored_ms = int(STORED.timestamp() * 1000)
        self.digest = {
            "_id": ObjectId(),
            "organizationId": organization_id,
            "sequence": 7,
            "windowStart": STORED.replace(minute=0, second=0, microsecond=0),
            "windowEnd": STORED.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1),
            "hashVersion": 2,
            "chunks": ["unused here"],
            "count": position + 2,
            "treeStart": index - position,
        }
        self.chunk = {
            "_id": ObjectId(),
            "organizationId": organization_id,
            "digestId": self.digest["_id"],
            "index": 0,
            "lastMs": stored_ms + 5,
            "records": [[str(ObjectId()), "h", stored_ms - 1] for _ in range(position)]
            + [[str(self.record["_id"]), "h", stored_ms], [str(ObjectId()), "h", stored_ms + 5]],
        }
        self.tree = {
            "_id": ObjectId(),
            "organizationId": organization_id,
            "size": size,
            "sequence": 7,
            "rootHash": base64.b64encode(self.root).decode(),
        }

    def checkpoint(self, app) -> dict:
        with app.app_context():
            note = sealing.notary().sign(self.organization_id, self.size, self.root)
        return {
            "_id": ObjectId(),
            "organizationId": self.organization_id,
            "treeSize": self.size,
            "rootHash": base64.b64encode(self.root).decode(),
            "checkpoint": note,
            "newRecords": 1,
            "createdAt": datetime(2026, 11, 20, 10, 20),
        }

    def tiles_for(self, find: dict) -> list[dict]:
        return list(self.db[merkle.TILES].find(find["filter"]))


# one organization for the module: its million-leaf tree is grown once
DOCUMENTS, ORGANIZATION = member_documents(["viewAuditLog"])


@pytest.fixture(scope="module")
def prefix():
    return complete_tiles()


@pytest.fixture(scope="module")
def million(prefix):
    # a record deep in the tree, in complete tiles: leaf 654,321 of 1,000,000
    return Log(ORGANIZATION, 1_000_000, INDEX, 4321, prefix=prefix)


@pytest.fixture
def wired(server, tmp_path):
    documents, organization_id = DOCUMENTS, ORGANIZATION
    server.documents.update(documents)
    app = app_on(server.uri, tmp_path, AUDIT_LOG_ORIGIN="audit.wire")
    with app.app_context():
        token = issue_token(documents["accounts"][0], organization_id).token
    client = app.test_client()

    def get(path: str):
        return client.get(path, headers={"Authorization": f"Bearer {token}"})

    get.organization_id = organization_id
    get.app = app
    yield get
    for store in set(stores(app).values()):
        store.close()


def script(server, log: Log, checkpoint: dict) -> None:
    server.documents.update(
        {
            "audit_logs": [log.record],
            DIGESTS: [log.digest],
            CHUNKS: [log.chunk],
            merkle.TREES: [log.tree],
            merkle.CHECKPOINTS: [checkpoint],
            merkle.TILES: log.tiles_for,
        }
    )


def proof_commands(server) -> list[dict]:
    """What the proof sent to the log's collections (the request's own record is a write)."""
    return [
        doc
        for doc in list(server.requests)
        if next(iter(doc)) not in ("insert", "update", "endSessions")
        and doc[next(iter(doc))] in PROOF_COLLECTIONS
    ]


def serve_proof(server, wired, log: Log) -> tuple[dict, list[dict]]:
    checkpoint = log.checkpoint(wired.app)
    script(server, log, checkpoint)
    server.requests.clear()
    answer = wired(f"/api/v1/audit-logs/{log.record['_id']}/proof")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json(), proof_commands(server)


def expected_tiles(index: int, size: int) -> set[str]:
    """The tiles on leaf ``index``'s path in a tree of ``size`` (computed by the planner)."""
    planner = merkle.Hashes()
    merkle._path(planner, index, 0, size)
    merkle.subtree_root(planner, 0, size)
    return {f"{level}/{tile}" for level, tile in planner.wanted}


def test_a_proof_reads_its_tiles_with_one_find_at_a_million_leaves(server, wired, million):
    log = million
    proof, sent = serve_proof(server, wired, log)
    key = verifier.VerifierKey.parse(proof["publicKey"])
    proved = verifier.verify_record_proof(proof, key)
    assert (proved.index, proved.checkpoint.size) == (INDEX, 1_000_000)
    assert proved.record_id == str(log.record["_id"])

    [tiles] = [doc for doc in sent if doc[next(iter(doc))] == merkle.TILES]
    assert next(iter(tiles)) == "find"
    org = wired.organization_id
    ids = tiles["filter"]["_id"]["$in"]
    assert tiles["filter"] == {"_id": {"$in": ids}, "organizationId": org}
    assert len(ids) <= 8 and len(ids) == len(set(ids))
    assert {i.removeprefix(f"{org}/") for i in ids} == expected_tiles(INDEX, 1_000_000)
    # level 0: the leaf's own tile; level 1: 256-leaf tiles up to the edge; level 2: the top
    assert f"{org}/0/{INDEX >> 8}" in ids and f"{org}/2/0" in ids


def test_the_whole_proof_is_the_same_few_commands_at_a_thousand_and_a_million_leaves(
    server, wired, million
):
    shapes = []
    for log in (Log(wired.organization_id, 1_000, 321, 21), million):
        proof, sent = serve_proof(server, wired, log)
        verifier.verify_record_proof(proof, verifier.VerifierKey.parse(proof["publicKey"]))
        assert len(sent) <= 7, sent
        shapes.append([(next(iter(doc)), doc[next(iter(doc))]) for doc in sent])
        org = wired.organization_id
        by = {doc[next(iter(doc))]: doc for doc in sent}
        record = by["audit_logs"]
        assert record["filter"] == {"_id": log.record["_id"], "organizationId": org}
        assert record["limit"] == 1
        digest = by[DIGESTS]
        assert digest["filter"] == {
            "windowStart": {"$lte": STORED.replace(tzinfo=None)},
            "organizationId": org,
        }
        assert digest["sort"] == {"windowStart": -1} and digest["limit"] == 1
        chunks = by[CHUNKS]
        assert chunks["filter"] == {
            "digestId": log.digest["_id"],
            "lastMs": {"$gte": int(STORED.timestamp() * 1000)},
            "organizationId": org,
        }
        assert chunks["sort"] == {"lastMs": 1} and chunks["limit"] == 3
        assert by[merkle.TREES]["filter"] == {"organizationId": org}
        assert by[merkle.TREES]["limit"] == 1
        checkpoint = by[merkle.CHECKPOINTS]
        assert checkpoint["filter"] == {"organizationId": org}
        assert checkpoint["sort"] == {"treeSize": -1} and checkpoint["limit"] == 1
        assert len(by[merkle.TILES]["filter"]["_id"]["$in"]) <= 8
    assert shapes[0] == shapes[1]  # the same commands whatever the tree's size
    assert len(shapes[0]) == 6


# The embedded store: the same reads, counted where every one passes (TenantCollection) ----


def test_the_embedded_store_serves_a_proof_with_the_same_few_reads(embedded, prefix, monkeypatch):
    from audit_app.db import TenantCollection, get_audit_db

    from .factories import Api, make_org

    app = embedded(AUDIT_LOG_ORIGIN="audit.embedded", AUDIT_SEAL_IN_BACKGROUND=False)
    api = Api(app.test_client())
    reads: list[tuple[str, str]] = []
    here = threading.get_ident()  # the test client answers in this thread; not a background one
    for method in ("find", "find_one", "count_documents"):
        original = getattr(TenantCollection, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            name = getattr(self.collection, "name", "?")
            if name in PROOF_COLLECTIONS and threading.get_ident() == here:
                reads.append((_method, name))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(TenantCollection, method, counted)
    shapes = []
    for name, size, index, position, tiles in (
        ("Thousand", 1_000, 321, 21, None),
        ("Million", 1_000_000, INDEX, 4321, prefix),
    ):
        org = make_org(app, name)
        token = api.token(org.owner)
        with app.app_context():
            db = get_audit_db()
            log = Log(org.id, size, index, position, db=db, prefix=tiles)
            db.audit_logs.insert_one(dict(log.record))
            db[DIGESTS].insert_one(log.digest)
            db[CHUNKS].insert_one(log.chunk)
            db[merkle.TREES].insert_one(log.tree)
            db[merkle.CHECKPOINTS].insert_one(log.checkpoint(app))
        reads.clear()
        answer = api.get(f"/api/v1/audit-logs/{log.record['_id']}/proof", token=token)
        assert answer.status_code == 200, answer.get_json()
        proof = answer.get_json()
        proved = verifier.verify_record_proof(proof, verifier.VerifierKey.parse(proof["publicKey"]))
        assert (proved.index, proved.checkpoint.size) == (index, size)
        assert reads == [
            ("find_one", "audit_logs"),
            ("find_one", DIGESTS),
            ("find_one", merkle.TREES),
            ("find", CHUNKS),
            ("find_one", merkle.CHECKPOINTS),
            ("find", merkle.TILES),
        ], reads
        shapes.append(list(reads))
    assert shapes[0] == shapes[1], shapes  # the same reads at a thousand leaves and a million


def test_verify_reads_the_served_timestamps_in_one_hinted_find(server, tmp_path):
    """verify compares the checked checkpoints' timestamps with the anchor's in one find on
    ``org_tree_size_unique``, stopped at as many documents as sizes it asks for."""
    import pymongo

    from audit_app.audit.integrity.digests import VerifyReport, _check_served_timestamps

    organization_id = ObjectId()
    anchored = [
        {"treeSize": size, "checkpoint": f"note {size}\n", "timestamp": {"token": f"t{size}"}}
        for size in (10, 20, 30)
    ]
    server.documents[merkle.CHECKPOINTS] = [
        {
            "_id": ObjectId(),
            "organizationId": organization_id,
            "treeSize": 10,
            "timestamp": {"token": "t10"},
        },
        {"_id": ObjectId(), "organizationId": organization_id, "treeSize": 20},  # stripped
    ]
    client = pymongo.MongoClient(server.uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    try:
        report = VerifyReport(started_at=datetime.now(UTC))
        _check_served_timestamps(report, client["auditdb"], organization_id, anchored)
    finally:
        client.close()
    [find] = server.sent("find", merkle.CHECKPOINTS)
    assert find["filter"] == {"organizationId": organization_id, "treeSize": {"$in": [10, 20, 30]}}
    assert find["hint"] == "org_tree_size_unique" and find["limit"] == 3
    assert [p["type"] for p in report.chain_problems] == ["timestampInvalid"]
    assert "tree size(s) 20" in report.chain_problems[0]["message"]
