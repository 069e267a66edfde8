"""Every request that reaches the app is recorded, whatever stops it, in the right log.

Refused by CSRF protection, by a rate limit, too large, of the wrong type, or made with a
credential that *was* valid (a revoked key, the JWT of a removed member, an expired or
superseded token): each is in its organization's log. So are the operator's commands and
how every export ended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from audit_app.db import stores

from .conftest import TEST_SECRET
from .factories import PASSWORD, audit_record, make_org
from .test_web_session import login

ROOT = Path(__file__).resolve().parent.parent


def test_web_posts_refused_by_csrf_protection_are_recorded(make_app, org, db):
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    login(client, org.owner)
    for _ in range(5):
        answer = client.post("/organization/roles", data={"name": "No token"})
        assert answer.status_code == 400
    records = list(db.audit_logs.find({"path": "/organization/roles", "method": "POST"}))
    assert len(records) == 5
    assert all(r["statusCode"] == 400 and r["accountId"] == org.owner.account_id for r in records)
    assert all(r["organizationId"] == org.id and r["authType"] == "session" for r in records)


def test_oversized_and_wrong_type_requests_are_recorded(make_app, api, org, db):
    app = make_app(MAX_CONTENT_LENGTH=2048)
    small = type(api)(app.test_client())
    too_large = small.post(
        "/api/v1/workspaces", as_=org.admin, data="x" * 5000, content_type="application/json"
    )
    wrong_type = small.post(
        "/api/v1/workspaces", as_=org.admin, data="name=x", content_type="text/plain"
    )
    assert (too_large.status_code, wrong_type.status_code) == (413, 415)
    statuses = {
        r["statusCode"]
        for r in db.audit_logs.find({"path": "/api/v1/workspaces", "organizationId": org.id})
    }
    assert {413, 415} <= statuses


def _only_record(db, **match):
    found = list(db.audit_logs.find(match))
    assert len(found) == 1, found
    return found[0]


def test_a_revoked_key_is_recorded_in_its_organization(api, db, org):
    key = api.post("/api/v1/api-keys", as_=org.owner, json={"name": "old"}).get_json()
    api.delete(f"/api/v1/api-keys/{key['id']}", as_=org.owner)
    answer = api.get("/api/v1/workspaces", key=key["key"], headers={"X-Request-Id": "revoked-1"})
    assert answer.status_code == 401
    record = _only_record(db, requestId="revoked-1")
    assert record["organizationId"] == org.id and record["statusCode"] == 401
    assert str(record["apiKeyId"]) == key["id"] and record["authType"] == "apiKey"
    assert record["apiKeyName"] == "old"


def test_a_removed_members_token_is_recorded_in_the_organization(api, db, org):
    token = api.token(org.admin)
    api.delete(f"/api/v1/members/{org.admin.account_id}", as_=org.owner)
    answer = api.get("/api/v1/members", token=token, headers={"X-Request-Id": "former-1"})
    assert answer.status_code == 401
    record = _only_record(db, requestId="former-1")
    assert record["organizationId"] == org.id and record["accountId"] == org.admin.account_id
    assert record["accountEmail"] == org.admin.email and record["authType"] == "jwt"


def test_an_expired_token_is_recorded_in_the_organization(api, db, org):
    past = datetime.now(UTC) - timedelta(hours=2)
    token = jwt.encode(
        {
            "sub": str(org.member.account_id),
            "org": str(org.id),
            "iat": past,
            "nbf": past,
            "exp": past + timedelta(hours=1),
        },
        TEST_SECRET,
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"sub": str(org.member.account_id), "org": str(org.id), "iat": past, "exp": past},
        "not-our-key-" * 4,
        algorithm="HS256",
    )
    api.get("/api/v1/members", token=token, headers={"X-Request-Id": "expired-1"})
    api.get("/api/v1/members", token=forged, headers={"X-Request-Id": "forged-1"})
    record = _only_record(db, requestId="expired-1")
    assert record["organizationId"] == org.id and record["accountId"] == org.member.account_id
    assert _only_record(db, requestId="forged-1")["organizationId"] is None  # not ours


def test_operator_commands_are_recorded_in_the_organization(runner, db, org):
    made = runner.invoke(
        args=["create-org", "Ops", "--owner-email", "ops@ops.example", "--owner-password", PASSWORD]
    )
    user = runner.invoke(
        args=[
            "create-user",
            "--organization",
            str(org.id),
            "--email",
            "new@acme.example",
            "--password",
            "operator-pw-1",
            "--role",
            "Admin",
        ]
    )
    key = runner.invoke(
        args=["create-api-key", "--organization", str(org.id), "--name", "ops", "--json"]
    )
    assert made.exit_code == user.exit_code == key.exit_code == 0, (made.output, user.output)
    secret = json.loads(key.output)["key"]
    cli = {r["route"]: r for r in db.audit_logs.find({"authType": "cli"})}
    assert set(cli) == {"create-org", "create-user", "create-api-key"}
    assert cli["create-user"]["organizationId"] == org.id
    assert cli["create-user"]["request"]["params"] == {"email": "new@acme.example", "role": "Admin"}
    assert cli["create-api-key"]["organizationId"] == org.id
    assert cli["create-org"]["organizationId"] != org.id
    everything = repr(list(db.audit_logs.find()))
    assert secret not in everything and "operator-pw-1" not in everything


def test_an_http_export_records_how_it_ended(api, db, org):
    db.audit_logs.insert_many(audit_record(org.id, path=f"/api/v1/x/{i}") for i in range(300))
    full = api.get("/api/v1/audit-logs/export?format=ndjson", as_=org.admin)
    assert len(full.get_data().splitlines()) >= 300
    cut = api.get("/api/v1/audit-logs/export?format=csv", as_=org.admin, buffered=False)
    first = next(iter(cut.response))  # the client reads the first block, then goes away
    cut.close()
    sent = first.count(b"\r\n") - 1  # rows in the block, without the header
    outcomes = [
        r["request"]["export"]
        for r in db.audit_logs.find({"request.export": {"$exists": True}}).sort("createdAt", 1)
    ]
    assert outcomes[0]["outcome"] == "completed" and outcomes[0]["rowsWritten"] >= 300
    assert outcomes[1]["outcome"] == "interrupted"
    assert 0 < sent <= outcomes[1]["rowsWritten"] < 300


@pytest.mark.slow
def test_a_cli_export_whose_reader_stops_early_is_recorded_as_interrupted(make_app, tmp_path):
    app = make_app(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(tmp_path / "store"))
    org = make_org(app, "Piped")
    audit_db = stores(app)["audit"].db
    audit_db.audit_logs.insert_many(
        audit_record(org.id, path="/api/v1/" + "p" * 200) for _ in range(3000)
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "MONGO_URI"},
        "EMBEDDED_STORE_DIR": str(tmp_path / "store"),
        "SECRET_KEY": TEST_SECRET,
        "AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
        "AUDIT_SEAL_IN_BACKGROUND": "false",
        "AUDIT_ENSURE_INDEXES_ON_START": "false",
    }
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "export"]
    command += ["--organization", str(org.id), "--format", "ndjson"]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.readline()  # `| head -1`
    process.stdout.close()
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.returncode == 1, stderr
    assert "Export interrupted" in stderr and "Traceback" not in stderr
    ended = audit_db.audit_logs.find_one({"request.export.outcome": "interrupted"})
    assert ended["authType"] == "cli" and 0 < ended["request"]["export"]["rowsWritten"] < 3000


def test_throttled_and_csrf_refused_logins_are_in_the_accounts_organization(make_app, org, db):
    app = make_app(RATELIMIT_LOGIN="2 per minute", WTF_CSRF_ENABLED=True)
    client = app.test_client()
    for _ in range(3):
        client.post("/api/v1/auth/token", json={"email": org.admin.email, "password": "x"})
    client.post("/login", data={"email": org.admin.email, "password": "x"})  # no CSRF token
    throttled = db.audit_logs.find_one({"statusCode": 429})
    refused = db.audit_logs.find_one({"path": "/login", "statusCode": 400})
    for record in (throttled, refused):
        assert record["organizationId"] == org.id and record["accountId"] == org.admin.account_id
