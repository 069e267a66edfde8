"""Benchmark: exporting 50k and 200k audit records from the embedded store.

For each size, in a fresh subprocess (so peak memory figures do not mix), it fills a new
embedded store, streams ``GET /api/v1/audit-logs/export`` through the app, and prints:
rows per second; the resident memory before the export, and when the first record row
left (by then the embedded store's engine, mongomock's, has materialised the whole sorted
result: that difference is what the store holds); how much it grew from there while every
other row was streamed (what the app itself accumulates: flat when it holds one record at
a time); and the peak. docs/performance.md has the figures.

Usage: python bench/export.py [--sizes 50000,200000] [--format csv|ndjson]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SECRET = "bench-secret-key-0123456789-0123456789-0123456789"


def rss_mib() -> float:
    """Current resident memory of this process, from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fill(app, organization_id, count: int) -> None:
    from bson import ObjectId

    from audit_app.db import get_audit_db

    start = datetime(2026, 1, 1, tzinfo=UTC)
    with app.app_context():
        collection = get_audit_db().audit_logs
        batch = []
        for index in range(count):
            batch.append(
                {
                    "_id": ObjectId(),
                    "organizationId": organization_id,
                    "accountId": ObjectId(),
                    "accountEmail": "person@example.com",
                    "apiKeyId": None,
                    "apiKeyName": None,
                    "workspaceId": ObjectId(),
                    "authType": "jwt",
                    "resource": "pathways",
                    "method": "POST",
                    "path": f"/api/v1/pathways/{index}",
                    "route": "/api/v1/pathways/<pathwayId>",
                    "statusCode": 201,
                    "createdAt": start + timedelta(seconds=index),
                    "durationMs": 3.2,
                    "ip": "203.0.113.5",
                    "userAgent": "bench/1.0",
                    "requestId": f"r{index}",
                    "request": {
                        "query": {},
                        "params": {"pathwayId": str(index)},
                        "headers": {},
                        "bodyType": "json",
                        "bodySize": 120,
                        "body": {"name": "Onboarding", "steps": [{"title": "Read"}]},
                    },
                }
            )
            if len(batch) == 5000:
                collection.insert_many(batch)
                batch = []
        if batch:
            collection.insert_many(batch)


def one(count: int, fmt: str) -> dict:
    from audit_app import create_app
    from audit_app.api_keys import repository as api_keys
    from audit_app.db import get_db
    from audit_app.organizations import service as access

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "SECRET_KEY": SECRET,
                "MONGO_URI": None,
                "EMBEDDED_STORE_DIR": f"{tmp}/store",
                "AUDIT_SPOOL_DIR": f"{tmp}/spool",
                "AUDIT_REPLAY_INTERVAL": 0,
                "PASSWORD_HASH_PROFILE": "fast",
                "INSTANCE_PATH": tmp,
            }
        )
        with app.app_context():
            made = access.create_organization("Bench", "b@bench.example", "benchpassword")
            _, key = api_keys.create_api_key(
                get_db(),
                made["organization"]["_id"],
                name="k",
                role_id=made["roles"]["admin"]["_id"],
                workspace_id=None,
                created_by=None,
            )
        fill(app, made["organization"]["_id"], count)
        client = app.test_client()
        rss_before = rss_mib()
        started = time.perf_counter()
        answer = client.get(
            f"/api/v1/audit-logs/export?format={fmt}", headers={"X-API-Key": key}, buffered=False
        )
        first_byte = rss_first = None
        rows, size = 0, 0
        for chunk in answer.response:
            rows += chunk.count(b"\n")
            size += len(chunk)
            if first_byte is None and rows >= 2:  # the header, then the first record
                first_byte = time.perf_counter() - started
                rss_first = rss_mib()
        elapsed = time.perf_counter() - started
        rss_end = rss_mib()
        answer.close()
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data_rows = rows - 1 if fmt == "csv" else rows
    return {
        "records": count,
        "rows": data_rows,
        "seconds": round(elapsed, 2),
        "rowsPerSecond": round(data_rows / elapsed),
        "firstByteSeconds": round(first_byte, 2),
        "megabytes": round(size / 2**20, 1),
        "rssBeforeMiB": round(rss_before),
        "rssAtFirstByteMiB": round(rss_first),
        "rssGrowthWhileStreamingMiB": round(rss_end - rss_first, 1),
        "peakRssMiB": round(rss_peak / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--format", default="csv", choices=["csv", "ndjson"])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.format)))
        return
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        output = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--format", args.format],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(output.stdout.strip().splitlines()[-1]))
    print(f"Export as {args.format} from the embedded store, each size in a fresh process:")
    print(
        f"{'records':>9} {'rows/s':>7} {'1st row s':>10} {'MiB out':>8} {'RSS before':>10} "
        f"{'RSS 1st row':>12} {'growth while streaming':>23} {'peak RSS':>9}  (MiB)"
    )
    for r in results:
        print(
            f"{r['records']:>9} {r['rowsPerSecond']:>7} {r['firstByteSeconds']:>10} "
            f"{r['megabytes']:>8} {r['rssBeforeMiB']:>10} {r['rssAtFirstByteMiB']:>12} "
            f"{r['rssGrowthWhileStreamingMiB']:>23} {r['peakRssMiB']:>9}"
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"ratio {b['records']}/{a['records']} records: rows/s "
            f"{b['rowsPerSecond'] / a['rowsPerSecond']:.2f}, growth while streaming "
            f"{b['rssGrowthWhileStreamingMiB']} vs {a['rssGrowthWhileStreamingMiB']} MiB, "
            f"peak RSS {b['peakRssMiB'] / a['peakRssMiB']:.2f}"
        )


if __name__ == "__main__":
    main()
