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

Since #25 the embedded store counts a filtered view in SQL (``bucket_counts``): the same
filtered rows are timed with that, and as before #25 (``before``: the walk that decodes each
record, no trigram index), side by side; and more filters: a status class, a path text that matches
every record and one that matches none, a pasted id (four walks).

``--store DIR`` keeps each size's store in ``DIR/<size>`` and reuses it.

Usage: python -m bench.histogram [--sizes 100000,300000] [--repeat 7] [--store DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from audit_app import create_app
from audit_app.audit.store import embedded
from audit_app.audit.store.counters import HOUR, HourlyTally
from audit_app.audit.store.embedded import AuditLogCollection
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


@contextlib.contextmanager
def _before(on: bool):
    """The embedded store as it was before #25: no SQL counts (the walk decodes each
    record), no trigram index (a path search walks every key it must)."""
    kept, search = AuditLogCollection.bucket_counts, embedded.plan_search
    if on:
        del AuditLogCollection.bucket_counts
        embedded.plan_search = lambda *args: None
    try:
        yield
    finally:
        AuditLogCollection.bucket_counts, embedded.plan_search = kept, search


def _time(client, headers, params, repeat: int) -> tuple[float, dict]:
    took, answer = [], {}
    # one request first, untimed: the pages it reads come from the disk once (a cold read of
    # the 20,000 records of a filter at a million took 0.6-2.8 s on this machine)
    client.get("/api/v1/audit-logs/histogram", query_string=params, headers=headers)
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get("/api/v1/audit-logs/histogram", query_string=params, headers=headers)
        took.append((time.perf_counter() - started) * 1000)
        answer = response.get_json()
        if response.status_code == 503:  # past AUDIT_QUERY_TIMEOUT_MS: said, not hidden
            return statistics.median(took), {"error": answer["error"]["code"]}
        assert response.status_code == 200, answer
    return statistics.median(took), answer


def measure(size: int, repeat: int, store: str | None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = f"{store}/{size}" if store else scratch
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
        noted = f"{folder}/bench.json"
        if os.path.exists(noted):
            with open(noted) as kept:
                filled = json.load(kept)["filled"]
            print(f"\nreusing {folder}", end="")
        else:
            with app.app_context():
                made = access.create_organization("Bench", "owner@bench.example", "bench-password")
                organization_id = made["organization"]["_id"]
                long_ago = datetime.now(UTC) - SPAN - timedelta(days=1)
                get_db().organizations.update_one(
                    {"_id": organization_id}, {"$set": {"createdAt": long_ago}}
                )
                # as on an installation that counted all along (records are filled in bulk)
                get_db().app_upgrades.update_one(
                    {"_id": "counters-since"}, {"$set": {"at": long_ago - timedelta(days=1)}}
                )
            started = time.perf_counter()
            _fill(app, organization_id, size)
            filled = time.perf_counter() - started
            if store:
                with open(noted, "w") as kept:
                    json.dump({"filled": filled}, kept)
        client = app.test_client()
        token = client.post(
            "/api/v1/auth/token",
            json={"email": "owner@bench.example", "password": "bench-password"},
        ).get_json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        month = {"interval": "day", "from": (datetime.now(UTC) - SPAN).isoformat()}
        # every record counted (a reused store holds the runs' own requests too), with the
        # time to do it: past the default 5 s budget at a million
        whole = create_app(
            {**config, "AUDIT_HISTOGRAM_MAX_RECORDS": 2 * size, "AUDIT_QUERY_TIMEOUT_MS": 600_000}
        )
        rows = [
            ("counters", app, month, False),
            ("capped walk", app, {**month, "authType": "jwt"}, False),
            ("  before", app, {**month, "authType": "jwt"}, True),
            ("status 4xx", app, {**month, "statusCode": "4xx"}, False),
            ("  before", app, {**month, "statusCode": "4xx"}, True),
            ("path, all", app, {**month, "q": "pathways"}, False),
            ("  before", app, {**month, "q": "pathways"}, True),
            ("path, none", app, {**month, "q": "no-such-path"}, False),
            ("  before", app, {**month, "q": "no-such-path"}, True),
            ("id search", app, {**month, "q": str(ObjectId())}, False),
            ("whole walk", whole, {**month, "authType": "jwt"}, False),
        ]
        print(f"\n{size:,} records over 30 days (filled in {filled:.0f} s), median of {repeat}:")
        base = None
        for name, served_by, params, before in rows:
            with _before(before):
                median, answer = _time(served_by.test_client(), headers, params, repeat)
            base = base or median
            if "error" in answer:
                print(f"  {name:12} {median:9.1f} ms  x{median / base:7.1f}  503 {answer['error']}")
                continue
            counted = sum(bucket["count"] for bucket in answer["buckets"])
            print(
                f"  {name:12} {median:9.1f} ms  x{median / base:7.1f}  counted {counted:,} "
                f"partial={answer['partial']} source={answer['source']}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--store", help="keep each size's store under this folder, and reuse it")
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        measure(size, args.repeat, args.store)


if __name__ == "__main__":
    main()
