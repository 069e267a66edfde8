"""Benchmark: the embedded store's platform collections at 10,000 members, workspaces, keys.

The audit log has its SQLite table (``bench/scale.py``); organizations, members, roles,
workspaces and keys stay in litemongo, whose engine evaluates queries in Python. This
fills one organization with N workspaces, N API keys and N members (bulk, through the
repositories' collections), then times, in-process through the app (median of 11):
an authenticated API request (the key lookup), the workspace list, the member list and
the API key list.

Usage: python -m bench.platform [--count 10000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from bson import ObjectId

from audit_app import create_app
from audit_app.api_keys import repository as api_keys
from audit_app.db import get_db
from audit_app.ids import utcnow
from audit_app.organizations import service as access

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
            db.memberships.insert_many(
                {"organizationId": org, "accountId": i, "roleId": role, "createdAt": now}
                for i in ids
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
            ("workspace list (500)", "/api/v1/workspaces"),
            ("member list (500)", "/api/v1/members"),
            ("API key list (500)", "/api/v1/api-keys"),
            ("one workspace", f"/api/v1/workspaces/{ObjectId()}"),
        ):
            client.get(path, headers=headers)
            times = []
            for _ in range(11):
                started = time.perf_counter()
                answer = client.get(path, headers=headers)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code in (200, 404), (path, answer.status_code)
            print(f"  {name:<22} median {statistics.median(times):8.1f} ms")


if __name__ == "__main__":
    main()
