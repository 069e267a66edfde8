"""Benchmark: what the verifiable log costs the sealer, and what a proof costs at scale.

In one run, on a fresh embedded store:

- ``seal``: one organization's records (``--records``, stored over the last hour) sealed
  into digests, timed, then the same windows appended to the Merkle tree (``grow``: the
  records read again, each checked against its digest entry, encoded as canonical JSON and
  hashed, tiles written), timed; printed per record and as a ratio to sealing;
- ``proof``: tiles for ``--leaves`` leaves (built directly), then inclusion proofs of
  random leaves timed (median), and how many queries and tiles each read.

Usage: python -m bench.verifiable_log [--records 20000] [--leaves 1000000] [--repeat 50]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from audit_app import create_app
from audit_app.audit.integrity import digests, merkle, sealing
from audit_app.db import get_audit_db, get_db
from audit_app.organizations import service as access


def _fill(app, organization_id: ObjectId, count: int) -> None:
    end = datetime.now(UTC) - timedelta(minutes=5)
    start = end - timedelta(hours=1)
    with app.app_context():
        audit = get_audit_db()
        batch = []
        for index in range(count):
            at = start + (end - start) * (index / count)
            batch.append(
                {
                    "_id": ObjectId(),
                    "organizationId": organization_id,
                    "createdAt": at,
                    "storedAt": at,
                    "action": "workspace.list",
                    "method": "GET",
                    "path": "/api/v1/workspaces",
                    "statusCode": 200,
                    "durationMs": 1.25,
                    "authType": "jwt",
                    "request": {"query": {"limit": "25"}, "headers": {"user-agent": "bench"}},
                    "response": {},
                    "targets": [],
                }
            )
            if len(batch) == 1000:
                audit.audit_logs.insert_many(batch)
                batch = []
        if batch:
            audit.audit_logs.insert_many(batch)


def bench_seal(records: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "SECRET_KEY": "bench-" + "x" * 40,
                "INSTANCE_PATH": folder,
                "EMBEDDED_STORE_DIR": f"{folder}/store",
                "AUDIT_SEAL_IN_BACKGROUND": False,
                "AUDIT_SEAL_INTERVAL": 5,
                "AUDIT_SEAL_DELAY": 0,
                "PASSWORD_HASH_PROFILE": "fast",
            }
        )
        with app.app_context():
            made = access.create_organization("Bench", "owner@bench.example", "bench-pass-123")
            organization_id = made["organization"]["_id"]
            org = get_db().organizations.find_one({"_id": organization_id})
            get_db().organizations.update_one(
                {"_id": organization_id},
                {"$set": {"createdAt": org["createdAt"] - timedelta(hours=2)}},
            )
        _fill(app, organization_id, records)
        with app.app_context():
            policy = sealing.policy(app)
            now = datetime.now(UTC)
            db = get_audit_db()
            organization = get_db().organizations.find_one({"_id": organization_id})
            started = time.perf_counter()
            written = digests.seal_organization(
                db, organization_id, organization["createdAt"], now, policy
            )
            sealed = time.perf_counter() - started
            started = time.perf_counter()
            checkpoint = digests.grow_tree(db, organization_id, now, policy)
            grown = time.perf_counter() - started
    assert checkpoint is not None and checkpoint["treeSize"] >= records, checkpoint
    return {
        "records": records,
        "windows": written,
        "sealSeconds": round(sealed, 3),
        "growSeconds": round(grown, 3),
        "sealMicrosPerRecord": round(sealed / records * 1e6, 1),
        "growMicrosPerRecord": round(grown / records * 1e6, 1),
        "growOverSeal": round(grown / sealed, 2),
    }


def bench_proof(leaves: int, repeat: int) -> dict:
    """Tiles in the embedded store's audit database (litemongo: one SQLite file, a hash
    index on ``_id``), as a proof reads them there."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "SECRET_KEY": "bench-" + "x" * 40,
                "INSTANCE_PATH": folder,
                "EMBEDDED_STORE_DIR": f"{folder}/store",
                "AUDIT_SEAL_IN_BACKGROUND": False,
                "PASSWORD_HASH_PROFILE": "fast",
            }
        )
        with app.app_context():
            return _bench_proof(get_audit_db(), leaves, repeat)


def _bench_proof(db, leaves: int, repeat: int) -> dict:
    tiles = merkle.Tiles(db, ObjectId())
    seed = hashlib.sha256(b"bench").digest()
    started = time.perf_counter()
    merkle.append(
        tiles,
        0,
        (hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(leaves)),
    )
    built = time.perf_counter() - started
    rng = random.Random(7)
    times, reads = [], []
    for _ in range(repeat):
        index = rng.randrange(leaves)
        tiles.reads = 0
        started = time.perf_counter()
        merkle.inclusion(tiles, index, leaves)
        times.append(time.perf_counter() - started)
        reads.append(tiles.reads)
    planner = merkle.Hashes()
    merkle._path(planner, leaves // 3, 0, leaves)
    merkle.subtree_root(planner, 0, leaves)
    return {
        "leaves": leaves,
        "buildSeconds": round(built, 1),
        "proofMillisMedian": round(statistics.median(times) * 1000, 2),
        "queriesPerProof": max(reads),
        "tilesPerProof": len(planner.wanted),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print("seal", bench_seal(args.records))
    print("proof", bench_proof(args.leaves, args.repeat))


if __name__ == "__main__":
    main()
