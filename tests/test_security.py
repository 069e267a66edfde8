"""Attacks, each with a test that fails if its defence is removed (docs/security.md)."""

import json
import re
import subprocess
import sys

import pytest
from bson import ObjectId

from audit_app.openapi import api_views

from .factories import audit_record
from .test_openapi import document_app
from .test_web_session import csrf_from, login

# Rate limits ------------------------------------------------------------------------------


@pytest.fixture
def limited(make_app):
    return make_app(RATELIMIT_LOGIN="3 per minute")


def test_token_endpoint_is_rate_limited_per_address(limited, org, mongo):
    client = limited.test_client()
    answers = [
        client.post("/api/v1/auth/token", json={"email": f"x{i}@acme.example", "password": "nope"})
        for i in range(4)
    ]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert answers[-1].get_json()["error"]["code"] == "too_many_requests"
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert mongo["audit_app"].audit_logs.count_documents({"statusCode": 429}) == 1


def test_token_endpoint_is_rate_limited_per_email_across_addresses(limited, org):
    client = limited.test_client()
    codes = [
        client.post(
            "/api/v1/auth/token",
            json={"email": org.owner.email, "password": "nope"},
            environ_base={"REMOTE_ADDR": f"198.51.100.{i}"},
        ).status_code
        for i in range(4)
    ]
    assert codes == [401, 401, 401, 429]


def test_web_login_is_rate_limited(make_app, org):
    app = make_app(RATELIMIT_LOGIN="2 per minute", WTF_CSRF_ENABLED=True)
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    codes = [
        client.post(
            "/login", data={"email": org.owner.email, "password": "bad", "csrf_token": token}
        ).status_code
        for _ in range(3)
    ]
    assert codes == [401, 401, 429]
    limited = client.post("/login", data={"csrf_token": token})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert re.search(r"Too many attempts; try again in \d+ seconds", limited.get_data(as_text=True))
    assert client.get("/login").status_code == 200  # viewing the form is not limited


def test_sqlite_rate_limit_counters_are_shared_between_processes(tmp_path):
    from audit_app.ratelimit import SQLiteStorage

    uri = f"sqlite:///{tmp_path}/limits.sqlite"
    script = (
        "import sys; from audit_app.ratelimit import SQLiteStorage; s = SQLiteStorage(sys.argv[1]);"
        "[s.incr('k', 60) for _ in range(200)]"
    )
    children = [subprocess.Popen([sys.executable, "-c", script, uri]) for _ in range(2)]
    storage = SQLiteStorage(uri)
    for _ in range(200):
        storage.incr("k", 60)
    assert all(child.wait(timeout=60) == 0 for child in children)
    assert storage.get("k") == 600
    storage.clear("k")
    assert storage.get("k") == 0


def test_sqlite_counter_window_expires(tmp_path):
    from audit_app.ratelimit import SQLiteStorage

    storage = SQLiteStorage(f"sqlite:///{tmp_path}/l.sqlite")
    assert storage.incr("k", -1) == 1  # a window that is already over
    assert storage.incr("k", 60) == 1  # starts again
    assert storage.incr("k", 60) == 2 and storage.check()


# Response headers -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/api/v1/organization", "/healthz", "/no-such-page"])
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    csp = headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in csp
        and "unsafe-inline" not in csp
        and "frame-ancestors 'none'" in csp
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


def test_pages_have_no_inline_script():
    from pathlib import Path

    for template in (Path(__file__).resolve().parent.parent / "templates").rglob("*.html"):
        text = template.read_text()
        assert "<script>" not in text and " on" + "click=" not in text and "style=" not in text, (
            template
        )


# NoSQL operator injection ----------------------------------------------------------------------

VALID_BODIES = {
    "/auth/password": {
        "currentPassword": "correct horse battery",
        "newPassword": "another-good-pass",
    },
    "/auth/token": {"email": "owner@acme.example", "password": "correct horse battery"},
    "/organization": {"name": "x"},
    "/workspaces": {"name": "injected"},
    "/workspaces/{workspaceId}": {"name": "y"},
    "/pathways": {"name": "p"},
    "/pathways/{pathwayId}": {"name": "p"},
    "/members": {"email": "n@acme.example", "roleId": "{role}"},
    "/invitations/accept": {"token": "inv_not-a-real-one", "password": "12345678"},
    "/members/{accountId}": {"roleId": "{role}"},
    "/roles": {"name": "R"},
    "/roles/{roleId}": {"name": "S"},
    "/api-keys": {"name": "k"},
    "/audit-streams": {"name": "s", "destination": {"type": "webhook", "url": "https://x.example"}},
    "/audit-streams/{streamId}": {"name": "t"},
    "/staff/token": {"email": "support@platform.example", "password": "correct horse battery"},
    "/staff/grants": {"organizationId": "{organization}", "justification": "A ticket to look at"},
}
INJECTIONS = [
    (method, path, name)
    for path, method, view in api_views(document_app())
    if view.openapi.body is not None
    for name in view.openapi.body().load_fields
]


@pytest.mark.parametrize(
    "payload", [{"$ne": None}, {"$gt": ""}, ["$where"]], ids=["ne", "gt", "array"]
)
@pytest.mark.parametrize(
    "method,path,field", INJECTIONS, ids=[f"{m} {p} {f}" for m, p, f in INJECTIONS]
)
def test_operator_objects_in_any_json_field_are_a_400(api, org, method, path, field, payload):
    ids = {
        "workspaceId": org.workspace["_id"],
        "accountId": org.member.account_id,
        "roleId": org.roles["member"]["_id"],
        "pathwayId": ObjectId(),
        "role": org.roles["member"]["_id"],
        "streamId": ObjectId(),
    }
    url = "/api/v1" + path.format(**{k: str(v) for k, v in ids.items()})
    body = {
        k: (v.format(role=ids["role"], organization=org.id) if isinstance(v, str) else v)
        for k, v in VALID_BODIES[path].items()
    }
    if field in ("steps",) and isinstance(payload, list):
        payload = ["$where"]
    body[field] = payload
    auth = {} if path in ("/auth/token", "/staff/token") else {"as_": org.owner}
    if path.startswith("/staff/") and path != "/staff/token":  # the staff's own token
        auth = {"token": _staff_token(api)}
    answer = api.call(method.upper(), url, json=body, workspace=org.workspace["_id"], **auth)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"]["field"].split(".")[0] == field


def _staff_token(api) -> str:
    app = api.client.application
    made = app.test_cli_runner().invoke(
        args=["create-staff", "--email", "support@platform.example", "--password-stdin"],
        input="correct horse battery\n",
    )
    assert made.exit_code == 0, made.output
    answer = api.client.post(
        "/api/v1/staff/token",
        json={"email": "support@platform.example", "password": "correct horse battery"},
    )
    return answer.get_json()["token"]


@pytest.mark.parametrize(
    "data",
    [
        {"email[$ne]": "x", "password[$ne]": "x"},
        {"email": "owner@acme.example", "password[$gt]": ""},
    ],
)
def test_operator_keys_in_the_login_form_do_not_log_in(make_app, org, data):
    client = make_app(WTF_CSRF_ENABLED=True).test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={**data, "csrf_token": token})
    assert answer.status_code in (400, 401)
    assert "The form expired" not in answer.get_data(as_text=True)
    assert client.get("/").headers["Location"].startswith("/login")


# CSRF on every form ----------------------------------------------------------------------------


def web_post_routes(app):
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods and not rule.rule.startswith("/api/"):
            yield rule


def test_every_web_form_needs_a_csrf_token(make_app, org):
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    login(client, org.owner)
    # and signed in as platform staff, for the staff's own forms
    made = app.test_cli_runner().invoke(
        args=["create-staff", "--email", "support@platform.example", "--password-stdin"],
        input="correct horse battery\n",
    )
    assert made.exit_code == 0, made.output
    signed_in = client.post(
        "/staff/login",
        data={
            "email": "support@platform.example",
            "password": "correct horse battery",
            "csrf_token": csrf_from(client.get("/staff/login").get_data(as_text=True)),
        },
    )
    assert signed_in.status_code == 302
    routes = list(web_post_routes(app))
    assert len(routes) >= 10
    for rule in routes:
        url = rule.rule
        for argument in rule.arguments:
            url = url.replace(f"<{argument}>", str(org.roles["member"]["_id"]))
        answer = client.post(url, data={"name": "x", "permissions": ["viewAuditLog"]})
        assert answer.status_code == 400, (url, answer.status_code)


# Tenancy of the pages ----------------------------------------------------------------------------


def test_pages_answer_404_for_another_organizations_ids(make_app, org, other_org, mongo):
    app = make_app(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    login(client, org.owner)
    theirs = audit_record(other_org.id)
    mongo["audit_app"].audit_logs.insert_one(theirs)
    token = csrf_from(client.get("/organization/roles").get_data(as_text=True))
    assert client.get(f"/organization/audit-logs/{theirs['_id']}").status_code == 404
    cases = [
        (
            f"/organization/roles/{other_org.roles['member']['_id']}",
            {"permissions": ["viewAuditLog"]},
        ),
        (f"/organization/roles/{other_org.roles['member']['_id']}/delete", {}),
        (
            f"/organization/members/{other_org.member.account_id}",
            {"roleId": str(org.roles["owner"]["_id"])},
        ),
        (f"/organization/members/{other_org.member.account_id}/remove", {}),
        (f"/organization/api-keys/{other_org.api_key_id}/revoke", {}),
    ]
    for url, data in cases:
        answer = client.post(url, data={**data, "csrf_token": token})
        assert answer.status_code == 404, url
    db = mongo["audit_app"]
    assert (
        "viewAuditLog"
        not in db.roles.find_one({"_id": other_org.roles["member"]["_id"]})["permissions"]
    )
    assert db.memberships.find_one(
        {"accountId": other_org.member.account_id, "organizationId": other_org.id}
    )
    assert db.api_keys.find_one({"_id": other_org.api_key_id})["revokedAt"] is None


# API keys -------------------------------------------------------------------------------------


def test_api_key_hashes_are_compared_in_constant_time(api, org, monkeypatch):
    import hmac

    from audit_app.api_keys import repository

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(repository.hmac, "compare_digest", spy)
    assert api.get("/api/v1/organization", key=org.api_key).status_code == 200
    assert api.get("/api/v1/organization", key=org.api_key[:-2] + "zz").status_code == 401
    assert len(calls) == 2


def test_error_messages_do_not_say_whether_an_account_exists(api, org):
    known = api.post(
        "/api/v1/auth/token", json={"email": org.owner.email, "password": "wrong"}
    ).get_json()
    unknown = api.post(
        "/api/v1/auth/token", json={"email": "ghost@acme.example", "password": "wrong"}
    ).get_json()
    for body in (known, unknown):  # each request has its own id, whoever it names
        assert body["error"].pop("requestId")
    assert known == unknown


def test_session_cookie_not_secure_in_development_but_configurable(make_app, org):
    app = make_app()
    assert (
        app.config["SESSION_COOKIE_SECURE"] is False
        and app.config["SESSION_COOKIE_HTTPONLY"] is True
    )


def test_audit_records_never_hold_credentials(api, org, db):
    token = api.token(org.owner)
    api.get("/api/v1/organization", token=token, headers={"Cookie": "session=stolen"})
    api.get("/api/v1/organization", key=org.api_key)
    stored = json.dumps(list(db.audit_logs.find({}, {"_id": 0})), default=str)
    assert token not in stored and org.api_key not in stored and "stolen" not in stored
    assert org.owner.password not in stored
