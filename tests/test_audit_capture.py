"""What is recorded for each request, field by field (docs/audit-schema.md)."""

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from .test_web_session import csrf_from, login


def records(db, **filter_):
    return list(db.audit_logs.find(filter_).sort("createdAt", 1))


def only(db, **filter_):
    found = records(db, **filter_)
    assert len(found) == 1, found
    return found[0]


def test_every_field_of_a_jwt_request(api, org, db):
    ws = org.workspace["_id"]
    pathway = api.post(
        "/api/v1/pathways", as_=org.member, workspace=ws, json={"name": "p"}
    ).get_json()
    before = datetime.now(UTC)
    answer = api.patch(
        f"/api/v1/pathways/{pathway['id']}?notify=yes&tag=a&tag=b",
        as_=org.member,
        workspace=ws,
        json={"description": "new"},
        headers={
            "User-Agent": "pytest-agent/1.0",
            "X-Request-Id": "req-123",
            "X-Custom-Thing": "not in the allowlist",
        },
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert answer.status_code == 200
    record = only(db, method="PATCH")
    assert isinstance(record["_id"], ObjectId)
    assert record["organizationId"] == org.id
    assert record["accountId"] == org.member.account_id
    assert record["accountEmail"] == org.member.email
    assert record["apiKeyId"] is None
    assert record["workspaceId"] == ws
    assert record["authType"] == "jwt"
    assert record["resource"] == "pathways"
    assert record["path"] == f"/api/v1/pathways/{pathway['id']}"
    assert record["route"] == "/api/v1/pathways/<pathwayId>"
    assert record["statusCode"] == 200
    assert record["createdAt"].tzinfo is not None
    assert before - timedelta(seconds=1) <= record["createdAt"] <= datetime.now(UTC)
    assert record["createdAt"].microsecond % 1000 == 0
    assert isinstance(record["durationMs"], float) and record["durationMs"] >= 0
    assert record["ip"] == "203.0.113.9"
    assert record["userAgent"] == "pytest-agent/1.0"
    assert record["requestId"] == "req-123" == answer.headers["X-Request-Id"]
    details = record["request"]
    assert details["body"] == {"description": "new"} and details["bodyType"] == "json"
    assert details["query"] == {"notify": "yes", "tag": ["a", "b"]}
    assert details["params"] == {"pathwayId": pathway["id"]}
    assert details["headers"]["User-Agent"] == "pytest-agent/1.0"
    assert details["headers"]["X-Workspace-Id"] == str(ws)
    assert "X-Custom-Thing" not in details["headers"]
    assert not {"Authorization", "Cookie", "X-Api-Key"} & set(details["headers"])


def test_api_key_request_has_no_user_and_carries_the_key_and_its_workspace(api, org, db):
    created = api.post(
        "/api/v1/api-keys",
        as_=org.owner,
        json={"name": "bound", "workspaceId": str(org.workspace["_id"])},
    ).get_json()
    api.get("/api/v1/pathways", key=created["key"])
    record = only(db, authType="apiKey")
    assert record["accountId"] is None and record["accountEmail"] is None
    assert record["apiKeyId"] == ObjectId(created["id"])
    assert record["apiKeyName"] == "bound"
    assert record["workspaceId"] == org.workspace["_id"]
    assert record["organizationId"] == org.id


def test_unauthenticated_request_has_no_organization(api, org, db):
    assert api.get("/api/v1/workspaces").status_code == 401
    record = only(db, path="/api/v1/workspaces")
    assert record["authType"] == "none"
    assert record["organizationId"] is None and record["accountId"] is None
    assert record["statusCode"] == 401


def test_failed_login_for_a_known_account_is_attributed_to_its_organization(api, org, db):
    api.post("/api/v1/auth/token", json={"email": org.admin.email, "password": "wrong"})
    api.post("/api/v1/auth/token", json={"email": "ghost@nowhere.example", "password": "wrong"})
    known, unknown = records(db, path="/api/v1/auth/token")
    assert known["statusCode"] == 401 and known["organizationId"] == org.id
    assert known["accountId"] == org.admin.account_id and known["authType"] == "none"
    assert known["request"]["body"] == {"email": org.admin.email, "password": "[REDACTED]"}
    assert unknown["organizationId"] is None and unknown["accountId"] is None


def test_unknown_api_path_is_recorded_as_404(api, org, db):
    api.get("/api/v1/no/such/thing", as_=org.admin)
    record = only(db, path="/api/v1/no/such/thing")
    assert record["statusCode"] == 404
    assert record["resource"] == "unknown" and record["route"] is None
    assert record["organizationId"] == org.id


def test_an_unhandled_exception_is_recorded_as_500(api, org, db, monkeypatch):
    from audit_app.workspaces import repository

    monkeypatch.setattr(repository, "list_workspaces", lambda *a, **k: 1 / 0)
    answer = api.get("/api/v1/workspaces", as_=org.admin)
    assert answer.status_code == 500
    record = only(db, path="/api/v1/workspaces")
    assert record["statusCode"] == 500 and record["resource"] == "workspaces"
    assert record["requestId"] == answer.headers["X-Request-Id"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/static/app.css", "/login", "/"])
def test_health_static_and_plain_page_views_are_not_recorded(client, db, path):
    with client.get(path):
        pass
    assert db.audit_logs.count_documents({}) == 0


def test_state_changing_web_actions_are_recorded_with_session_auth(make_app, org, mongo):
    app = make_app(WTF_CSRF_ENABLED=True)
    db = mongo["audit_app"]
    client = app.test_client()
    login(client, org.owner)
    home = client.get("/").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_from(home)})
    logins = records(db, path="/login")
    assert [r["statusCode"] for r in logins] == [302]
    assert logins[0]["accountId"] == org.owner.account_id
    assert logins[0]["request"]["body"]["password"] == "[REDACTED]"
    assert logins[0]["request"]["body"]["csrf_token"] == "[REDACTED]"
    logout = only(db, path="/logout")
    assert logout["authType"] == "session" and logout["accountEmail"] == org.owner.email
    assert logout["organizationId"] == org.id and logout["resource"] == "session"


@pytest.mark.parametrize(
    "given,kept",
    [("abc-123_X.y:z", True), ("x" * 129, False), ("has space", False), ("<script>", False)],
)
def test_request_id_kept_when_sane(api, org, db, given, kept):
    answer = api.get("/api/v1/organization", as_=org.admin, headers={"X-Request-Id": given})
    returned = answer.headers["X-Request-Id"]
    assert (returned == given) is kept
    assert only(db, path="/api/v1/organization")["requestId"] == returned


def test_header_allowlist_is_configurable_but_credentials_never_stored(make_app, org, mongo):
    app = make_app(AUDIT_HEADER_ALLOWLIST=("X-Custom", "Authorization", "Cookie", "X-API-Key"))
    from .factories import Api

    api = Api(app.test_client())
    api.get(
        "/api/v1/organization",
        key=org.api_key,
        headers={"X-Custom": "kept", "Cookie": "session=abc"},
    )
    record = only(mongo["audit_app"], path="/api/v1/organization")
    assert record["request"]["headers"] == {"X-Custom": "kept"}
    assert org.api_key not in json.dumps(record, default=str)


@pytest.mark.parametrize("proxies,expected", [(0, "10.0.0.1"), (1, "198.51.100.7")])
def test_client_ip_honours_forwarded_for_only_behind_trusted_proxies(
    make_app, org, mongo, proxies, expected
):
    app = make_app(TRUSTED_PROXY_COUNT=proxies)
    app.test_client().get(
        "/api/v1/organization",
        headers={"X-Forwarded-For": "198.51.100.7"},
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert only(mongo["audit_app"], path="/api/v1/organization")["ip"] == expected


def test_query_secrets_are_redacted(api, org, db):
    api.get("/api/v1/organization?access_token=abc&page=2&api-key=zzz", as_=org.admin)
    query = only(db, path="/api/v1/organization")["request"]["query"]
    assert query == {"access_token": "[REDACTED]", "page": "2", "api-key": "[REDACTED]"}


def test_disabled_auditing_records_nothing_and_says_so(make_app, org, mongo, caplog):
    caplog.set_level(logging.WARNING)
    app = make_app(AUDIT_ENABLED=False)
    app.test_client().get("/api/v1/organization")
    assert mongo["audit_app"].audit_logs.count_documents({}) == 0
    assert any("NOT BEING RECORDED" in r.message for r in caplog.records)


def test_a_bug_in_building_details_still_stores_a_minimal_record(api, org, db, monkeypatch):
    from audit_app.audit.capture import hooks as capture

    def broken(*args, **kwargs):
        raise ValueError("bug")

    monkeypatch.setattr(capture, "build_record", broken)
    assert api.get("/api/v1/organization", as_=org.admin).status_code == 200
    record = only(db, path="/api/v1/organization")
    assert record["request"] == {"detailsError": True}
    assert record["accountId"] == org.admin.account_id and record["statusCode"] == 200


def test_query_indexes_and_no_ttl_index(app, db):
    info = db.audit_logs.index_information()
    assert not [name for name, index in info.items() if "expireAfterSeconds" in index]
    assert info["org_newest"]["key"][:3] == [("organizationId", 1), ("createdAt", -1), ("_id", -1)]
    for name, field in (
        ("org_account_newest", "accountId"),
        ("org_workspace_newest", "workspaceId"),
        ("org_apikey_newest", "apiKeyId"),
        ("org_status_newest", "statusCode"),
        ("org_method_newest", "method"),
        ("org_authtype_newest", "authType"),
        ("org_resource_newest", "resource"),
    ):
        assert info[name]["key"] == [
            ("organizationId", 1),
            (field, 1),
            ("createdAt", -1),
            ("_id", -1),
        ]


def test_an_index_nothing_queries_any_more_is_dropped(make_app, mongo):
    """Each index costs every insert: the route index of earlier versions goes."""
    make_app()
    mongo["audit_app"].audit_logs.create_index(
        [("organizationId", 1), ("route", 1), ("createdAt", -1), ("_id", -1)],
        name="org_route_newest",
    )
    make_app()
    assert "org_route_newest" not in mongo["audit_app"].audit_logs.index_information()


def test_the_ttl_indexes_of_an_earlier_version_are_dropped_at_start(make_app, mongo):
    """A TTL index cannot honour a legal hold: the records' and the chunks' go."""
    db = mongo["audit_app"]
    db.audit_logs.create_index([("createdAt", 1)], name="ttl_createdAt", expireAfterSeconds=86400)
    db.audit_digest_chunks.create_index(
        [("windowEnd", 1)], name="ttl_windowEnd", expireAfterSeconds=86400
    )
    make_app()
    assert "ttl_createdAt" not in db.audit_logs.index_information()
    assert "ttl_windowEnd" not in db.audit_digest_chunks.index_information()
