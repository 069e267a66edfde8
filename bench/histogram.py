"""Benchmark: the activity chart of an organization's unfiltered month, three ways.

Fills a fresh embedded store with one organization's records spread over 30 days (bulk,
with the hourly counts the writer would have kept), then times, in one run and side by
side, ``GET /api/v1/audit-logs/histogram?interval=day`` over the month:

- ``counters``: the default (a walk capped at ``AUDIT_HISTOGRAM_MAX_RECORDS``, then the
  counts kept at write time): whole;
- ``capped walk``: the same with a filter that matches every record (``authType=jwt``), so
  the counts cannot serve it: partial past the cap;
- ``whole walk``: the filtered view with the cap raised to the record count: whole, at
  the cost the counts avoid.

Usage: python -m bench.histogram [--sizes 100000,300000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from audit_app import create_app
from audit_app.audit.counters import HOUR, HourlyTally
from audit_app.db import get_audit_db, get_db
from audit_app.ids import floor_to
from audit_app.organizations import service as access

SPAN = timedelta(days=30)


def _fill(app, organization_id: ObjectId, size: int) -> None:
    end = datetime.now(UTC) - timedelta(minutes=5)
    start = end - SPAN
    counts: Counter[tuple[datetime, str]] = Counter()
    with app.app_context():
        audit = get_audit_db()
        batch = []
        for index in range(size):
            at = start + SPAN * (index / size)
            status = (200, 201, 404, 500)[index % 4]
            batch.append(
                {
                    "_id": ObjectId(),
                    "organizationId": organization_id,
                    "authType": "jwt",
                    "method": "GET",
                    "path": "/api/v1/pathways",
                    "resource": "pathways",
                    "statusCode": status,
                    "createdAt": at,
                    "storedAt": at,
                    "request": {},
                }
            )
            counts[(floor_to(at, HOUR), f"{status // 100}xx")] += 1
            if len(batch) == 10_000:
                audit.audit_logs.insert_many(batch)
                batch = []
        if batch:
            audit.audit_logs.insert_many(batch)
        tally = HourlyTally()  # the counts the writer would have kept, added the same way
        for (hour, family), count in counts.items():
            for _ in range(count):
                tally.add(
                    {
                        "organizationId": organization_id,
                        "createdAt": hour,
                        "statusCode": int(family[0]) * 100,
                    }
                )
        tally.flush(audit)


def _time(client, headers, params, repeat: int) -> tuple[float, dict]:
    took, answer = [], {}
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get("/api/v1/audit-logs/histogram", query_string=params, headers=headers)
        took.append((time.perf_counter() - started) * 1000)
        answer = response.get_json()
        assert response.status_code == 200, answer
    return statistics.median(took), answer


def measure(size: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = {
            "SECRET_KEY": "histogram-bench-secret-key-0123456789-0123456789",
            "EMBEDDED_STORE_DIR": f"{folder}/store",
            "INSTANCE_PATH": folder,
            "AUDIT_SPOOL_DIR": f"{folder}/spool",
            "AUDIT_SEAL_IN_BACKGROUND": False,
            "AUDIT_PURGE_INTERVAL": 0,
            "AUDIT_REPLAY_INTERVAL": 0,
            "AUDIT_STREAM_INTERVAL": 0,
            "PASSWORD_HASH_PROFILE": "fast",
            "RATELIMIT_ENABLED": False,
        }
        app = create_app(config)
        with app.app_context():
            made = access.create_organization("Bench", "owner@bench.example", "bench-password")
            organization_id = made["organization"]["_id"]
            long_ago = datetime.now(UTC) - SPAN - timedelta(days=1)
            get_db().organizations.update_one(
                {"_id": organization_id}, {"$set": {"createdAt": long_ago}}
            )
            # as on an installation that counted all along (the records are filled in bulk)
            get_db().app_upgrades.update_one(
                {"_id": "counters-since"}, {"$set": {"at": long_ago - timedelta(days=1)}}
            )
        started = time.perf_counter()
        _fill(app, organization_id, size)
        filled = time.perf_counter() - started
        client = app.test_client()
        token = client.post(
            "/api/v1/auth/token",
            json={"email": "owner@bench.example", "password": "bench-password"},
        ).get_json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        month = {"interval": "day", "from": (datetime.now(UTC) - SPAN).isoformat()}
        rows = [
            ("counters", app, month),
            ("capped walk", app, {**month, "authType": "jwt"}),
        ]
        whole = create_app({**config, "AUDIT_HISTOGRAM_MAX_RECORDS": size + 1})
        rows.append(("whole walk", whole, {**month, "authType": "jwt"}))
        print(f"\n{size:,} records over 30 days (filled in {filled:.0f} s), median of {repeat}:")
        base = None
        for name, served_by, params in rows:
            median, answer = _time(served_by.test_client(), headers, params, repeat)
            counted = sum(bucket["count"] for bucket in answer["buckets"])
            base = base or median
            print(
                f"  {name:12} {median:9.1f} ms  x{median / base:7.1f}  counted {counted:,} "
                f"partial={answer['partial']} source={answer['source']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        measure(size, args.repeat)


if __name__ == "__main__":
    main()
