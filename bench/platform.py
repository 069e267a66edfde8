"""Benchmark: the embedded store's platform lists at 10,000 members, workspaces and keys.

The platform collections stay in litemongo, whose engine evaluates queries in Python; each
list of the API walks its index kept as a sorted SQLite table beside the documents
(``audit_app/sorted_store.py``). This fills one organization with N workspaces, N API keys,
N members, N/10 roles and N/10 pending invitations (bulk, through the collections), then
times in-process through the app (median of 11), side by side for each list: its first page
and a later page (by ``nextCursor``) through the API, and the same first page as litemongo
answers it without the sorted index (the earlier way: the sort in Python). The goal: every
page <= 50 ms.

Usage: python -m bench.platform [--count 10000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta

from bson import ObjectId

from audit_app import create_app
from audit_app.api_keys import repository as api_keys
from audit_app.db import get_db
from audit_app.ids import utcnow
from audit_app.organizations import repository as orgs
from audit_app.organizations import service as access
from audit_app.pagination import prefix_range
from audit_app.workspaces import repository as workspace_repository

SECRET = "bench-secret-key-0123456789-0123456789-0123456789"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "SECRET_KEY": SECRET,
                "MONGO_URI": None,
                "EMBEDDED_STORE_DIR": f"{tmp}/store",
                "AUDIT_SPOOL_DIR": f"{tmp}/spool",
                "INSTANCE_PATH": tmp,
                "AUDIT_REPLAY_INTERVAL": 0,
                "AUDIT_SEAL_IN_BACKGROUND": False,
                "PASSWORD_HASH_PROFILE": "fast",
                "RATELIMIT_ENABLED": False,
            }
        )
        with app.app_context():
            db = get_db()
            made = access.create_organization("Big", "owner@big.example", "bench-password")
            org = made["organization"]["_id"]
            role = made["roles"]["admin"]["_id"]
            now = utcnow()
            began = time.perf_counter()
            db.workspaces.insert_many(
                {"organizationId": org, "name": f"w{i}", "nameLower": f"w{i}", "createdAt": now}
                for i in range(args.count)
            )
            db.accounts.insert_many(
                {
                    "email": f"m{i}@big.example",
                    "emailLower": f"m{i}@big.example",
                    "passwordHash": "x",
                    "createdAt": now,
                }
                for i in range(args.count)
            )
            ids = [
                a["_id"]
                for a in db.accounts.find({"emailLower": {"$ne": "owner@big.example"}}, {"_id": 1})
            ]
            emails = {
                a["_id"]: a["emailLower"]
                for a in db.accounts.find({"_id": {"$in": ids}}, {"emailLower": 1})
            }
            db.memberships.insert_many(
                {
                    "organizationId": org,
                    "accountId": i,
                    "emailLower": emails[i],
                    "roleId": role,
                    "createdAt": now,
                }
                for i in ids
            )
            db.roles.insert_many(
                {
                    "organizationId": org,
                    "key": None,
                    "name": f"r{i}",
                    "nameLower": f"r{i}",
                    "builtIn": False,
                    "permissions": [],
                    "createdAt": now,
                }
                for i in range(args.count // 10)
            )
            db.invitations.insert_many(
                {
                    "organizationId": org,
                    "email": f"i{i}@big.example",
                    "emailLower": f"i{i}@big.example",
                    "roleId": role,
                    "tokenHash": f"bench-{i}",
                    "createdAt": now,
                    "expiresAt": now + timedelta(days=7, seconds=i),
                    "acceptedAt": None,
                    "revokedAt": None,
                }
                for i in range(args.count // 10)
            )
            for i in range(args.count - 1):
                api_keys.create_api_key(
                    db, org, name=f"k{i}", role_id=role, workspace_id=None, created_by=None
                )
            _, secret = api_keys.create_api_key(
                db, org, name="bench", role_id=role, workspace_id=None, created_by=None
            )
            print(f"filled {args.count:,} of each in {time.perf_counter() - began:.0f} s")
        client = app.test_client()
        headers = {"X-API-Key": secret}
        for name, path in (
            ("authenticated request", "/api/v1/organization"),
            ("one workspace", f"/api/v1/workspaces/{ObjectId()}"),
        ):
            print(f"  {name:<28} median {_median(client, path, headers):8.1f} ms")
        print(f"  {'list (limit 50)':<28} {'first page':>11} {'next page':>11} {'no index':>11}")
        slowest = 0.0
        for name, path, listing in LISTS:
            first = _median(client, path, headers)
            answer = client.get(path, headers=headers).get_json()
            assert len(answer["items"]) == 50 and answer["nextCursor"], (path, answer)
            joiner = "&" if "?" in path else "?"
            later = _median(client, f"{path}{joiner}cursor={answer['nextCursor']}", headers)
            with app.app_context():
                unsorted = _litemongo_median(app, org, listing, path)
            slowest = max(slowest, first, later)
            print(f"  {name:<28} {first:8.1f} ms {later:8.1f} ms {unsorted:8.1f} ms")
        verdict = "met" if slowest <= GOAL_MS else "MISSED"
        print(f"goal: every page <= {GOAL_MS:.0f} ms: {verdict} (slowest {slowest:.1f} ms)")


GOAL_MS = 50.0
LISTS = (
    ("workspaces", "/api/v1/workspaces", workspace_repository.WORKSPACES),
    ("members", "/api/v1/members", orgs.MEMBERS),
    ("members, email=m12", "/api/v1/members?email=m12", orgs.MEMBERS),
    ("API keys", "/api/v1/api-keys", api_keys.API_KEYS),
    ("roles", "/api/v1/roles", orgs.ROLES),
    ("invitations", "/api/v1/invitations", orgs.INVITATIONS),
)


def _median(client, path: str, headers: dict[str, str]) -> float:
    client.get(path, headers=headers)
    times = []
    for _ in range(11):
        started = time.perf_counter()
        answer = client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code in (200, 404), (path, answer.status_code)
    return statistics.median(times)


def _litemongo_median(app, org, listing, path: str) -> float:
    """The same first page as litemongo answers it alone (no hint: its Python sort)."""
    collection = get_db()[listing.collection]
    selector = {"organizationId": org}
    if "email=" in path:
        selector["emailLower"] = prefix_range(path.rsplit("=", 1)[1])
    if listing is orgs.INVITATIONS:
        selector.update(acceptedAt=None, revokedAt=None, expiresAt={"$gt": utcnow()})
    times = []
    for _ in range(5):
        started = time.perf_counter()
        list(collection.find(selector).sort(listing.sort()).limit(51))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    main()
