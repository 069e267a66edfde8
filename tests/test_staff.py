"""The platform's support staff (PRODUCT.md "Platform staff"), tried as an attacker and as
the customer: staff credentials reach nothing but /staff and /api/v1/staff, an organization's
credentials never reach those, grants are checked on every request against the store, and
every staff access is in the organization's own log, its stream and its export."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from bson import ObjectId

from audit_app.audit.store.embedded import plan_sql
from audit_app.db import get_db
from audit_app.ids import utcnow
from audit_app.staff import service as staff_service

from .factories import PASSWORD, make_org, settled
from .test_web_session import csrf_from, login

STAFF_EMAIL = "support@platform.example"
JUSTIFICATION = "Customer ticket: their pathway updates fail with 409s"


# Helpers --------------------------------------------------------------------------------


def create_staff(app, email=STAFF_EMAIL, password=PASSWORD):
    result = app.test_cli_runner().invoke(
        args=["create-staff", "--email", email, "--password-stdin", "--json"], input=password + "\n"
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def staff_token(client, email=STAFF_EMAIL, password=PASSWORD):
    answer = client.post("/api/v1/staff/token", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["token"]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def grant(client, token, organization_id, justification=JUSTIFICATION, ticket="SUP-1234"):
    return client.post(
        "/api/v1/staff/grants",
        headers=bearer(token),
        json={
            "organizationId": str(organization_id),
            "justification": justification,
            "ticket": ticket,
        },
    )


def set_access(api, org, value):
    answer = api.patch("/api/v1/organization", as_=org.owner, json={"staffAccess": value})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["staffAccess"] == value


def staff_login(client, email=STAFF_EMAIL, password=PASSWORD):
    page = client.get("/staff/login")
    answer = client.post(
        "/staff/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": csrf_from(page.get_data(as_text=True)),
        },
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)
    cookie = client.get_cookie("staff_session", path="/staff")
    assert cookie is not None
    return cookie.value


def logs(api, org, **query):
    if "action" in query:
        query["q"] = f"action:{query.pop('action')}"
    answer = api.get("/api/v1/audit-logs", as_=org.admin, query_string={"limit": 200, **query})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["items"]


@pytest.fixture
def staff(app):
    return create_staff(app)


@pytest.fixture
def token(client, staff):
    return staff_token(client)


# Accounts and the CLI -------------------------------------------------------------------


def test_staff_accounts_by_cli_with_exit_codes(app, runner):
    made = create_staff(app)
    assert ObjectId.is_valid(made["staffId"]) and made["email"] == STAFF_EMAIL
    again = runner.invoke(
        args=["create-staff", "--email", STAFF_EMAIL, "--password-stdin", "--json"],
        input=PASSWORD + "\n",
    )
    assert again.exit_code == 1 and "exists already" in again.output
    bad = runner.invoke(
        args=["create-staff", "--email", "not-an-email", "--password-stdin", "--json"],
        input=PASSWORD + "\n",
    )
    assert bad.exit_code == 2 and json.loads(bad.output)["error"]["field"] == "--email"
    short = runner.invoke(
        args=["create-staff", "--email", "b@platform.example", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 2
    no_password = runner.invoke(args=["create-staff", "--email", "c@platform.example", "--json"])
    assert no_password.exit_code == 2  # no terminal to prompt at, nothing on stdin: nothing made
    listed = runner.invoke(args=["list-staff", "--json"])
    assert listed.exit_code == 0
    items = json.loads(listed.output)["items"]
    assert [i["email"] for i in items] == [STAFF_EMAIL]
    assert "passwordHash" not in listed.output
    with app.app_context():  # hashed as the app's users are (Argon2id), never in clear
        stored = get_db().staff_accounts.find_one({"email": STAFF_EMAIL})
        assert stored["passwordHash"].startswith("$argon2id$") and PASSWORD not in str(stored)
    missing = runner.invoke(args=["remove-staff", "--email", "nobody@platform.example", "--json"])
    assert missing.exit_code == 1
    usage = runner.invoke(args=["remove-staff"])
    assert usage.exit_code == 2


def test_a_staff_account_is_no_member_anywhere(client, api, org, staff):
    answer = client.post("/api/v1/auth/token", json={"email": STAFF_EMAIL, "password": PASSWORD})
    assert answer.status_code == 401
    page = client.get("/login")
    answer = client.post(
        "/login",
        data={
            "email": STAFF_EMAIL,
            "password": PASSWORD,
            "csrf_token": csrf_from(page.get_data(as_text=True)),
        },
    )
    assert answer.status_code == 401
    wrong = client.post("/api/v1/staff/token", json={"email": STAFF_EMAIL, "password": "wrong one"})
    assert wrong.status_code == 401
    # an organization's own person is not staff
    member = client.post(
        "/api/v1/staff/token", json={"email": org.owner.email, "password": PASSWORD}
    )
    assert member.status_code == 401


def test_the_staff_session_lives_staff_session_hours(make_app):
    app = make_app(STAFF_SESSION_HOURS=3)
    create_staff(app)
    client = app.test_client()
    staff_login(client)
    with app.app_context():
        session = get_db().staff_sessions.find_one({})
        assert session["expiresAt"] - session["createdAt"] == timedelta(hours=3)
        assert "token" not in session  # only its hash
    assert client.get("/staff").status_code == 200
    with app.app_context():  # the server's copy expired: the cookie means nothing
        get_db().staff_sessions.update_many({}, {"$set": {"expiresAt": utcnow()}})
    assert client.get("/staff").status_code == 302


# Credentials stay on their side ---------------------------------------------------------


def _concrete(rule, org):
    """A URL for the rule, each parameter an id of the organization (or a token)."""
    url = rule.rule
    for argument in rule.arguments:
        value = str(org.id) if argument == "organizationId" else str(ObjectId())
        if argument == "decision":
            value = "approve"
        url = re.sub(rf"<(?:[^:<>]+:)?{argument}>", value, url)
    return url


def _org_rules(app):
    skip = {"static"}
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in skip
        and not (rule.rule.startswith("/staff") or rule.rule.startswith("/api/v1/staff/"))
    ]


# endpoints anyone may call without a credential (they answer the same to a stranger)
PUBLIC = {
    "health.healthz",
    "health.readyz",
    "api.openapi.openapi_document",
    "web.session.login",
    "api.auth.create_token",
    "api.invitations.accept_invitation",
    "web.invitations.invitation_page",
    "web.invitations.accept",
}


def _state(app, org):
    """What an organization holds, to see that nothing changed."""
    with app.app_context():
        db = get_db()
        return {
            name: sorted(map(str, db[name].distinct("_id", {"organizationId": org.id})))
            for name in (
                "memberships",
                "roles",
                "workspaces",
                "api_keys",
                "invitations",
                "audit_streams",
            )
        } | {
            "org": {
                k: v for k, v in db.organizations.find_one({"_id": org.id}).items() if k != "counts"
            }
        }


def _routes_app():
    """An app to read the URL map from at collection (its store is never touched)."""
    from audit_app import create_app

    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "routes-app-secret-0123456789-0123456789-0123456789",
            "MONGO_URI": "mongomock://routes/db",
            "AUDIT_ENSURE_INDEXES_ON_START": False,
            "AUDIT_SEAL_IN_BACKGROUND": False,
            "AUDIT_REPLAY_INTERVAL": 0,
            "AUDIT_PURGE_INTERVAL": 0,
        }
    )


ROUTES = [
    (rule.endpoint, rule.rule, method)
    for rule in _org_rules(_routes_app())
    for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
]


@pytest.fixture
def staff_credentials(app, client, org, staff):
    """A staff token and a staff session cookie, holding a live grant for the organization."""
    token = staff_token(client)
    cookie = staff_login(client)
    assert grant(client, token, org.id).status_code == 201
    return token, cookie


@pytest.mark.parametrize("endpoint,rule,method", ROUTES, ids=[f"{m} {r}" for _, r, m in ROUTES])
def test_a_staff_credential_reaches_no_organization_endpoint_or_page(
    app, org, staff_credentials, endpoint, rule, method
):
    """The matrix over the URL map (a new route joins it by itself): a staff token and a
    staff session cookie (replayed on every path), while a live grant for the organization
    is held, at every organization endpoint and page: no data, no effect."""
    token, cookie = staff_credentials
    [matched] = [r for r in app.url_map.iter_rules() if r.rule == rule and r.endpoint == endpoint]
    url = _concrete(matched, org)
    before = _state(app, org)
    for how in ("token", "cookie"):
        fresh = app.test_client()
        headers = bearer(token) if how == "token" else {}
        if how == "cookie":
            fresh.set_cookie("staff_session", cookie, path="/")
        answer = fresh.open(url, method=method, headers=headers, json={})
        body = answer.get_data(as_text=True)
        context = f"{method} {url} with a staff {how}: {answer.status_code}"
        if endpoint in PUBLIC:  # what anyone gets: nothing of the organization
            assert org.name not in body and str(org.id) not in body.replace(url, ""), context
            continue
        assert answer.status_code in (302, 400, 401, 403, 404, 405, 415), context
        if answer.status_code == 302:
            assert "/login" in answer.headers["Location"], context
        assert org.name not in body, context
    assert _state(app, org) == before
    with app.app_context():  # nothing recorded as staff in its log but the grant itself
        records = get_db().audit_logs.find({"organizationId": org.id, "authType": "staff"})
        assert {r["action"] for r in records} == {"staff.grantRequested"}


def _staff_rules(app):
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/staff") or rule.rule.startswith("/api/v1/staff/")
    ]


@pytest.mark.parametrize("how", ["jwt", "apiKey", "session"])
def test_an_organization_credential_never_reaches_staff(app, client, api, org, staff, how):
    headers = {}
    if how == "jwt":
        headers = {"Authorization": f"Bearer {api.token(org.owner)}"}
    elif how == "apiKey":
        headers = {"X-API-Key": org.api_key}
    else:
        login(client, org.owner)
    for rule in _staff_rules(app):
        if rule.endpoint in ("staffPages.login", "api.staff.create_staff_token"):
            continue
        url = _concrete(rule, org)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            answer = client.open(url, method=method, headers=headers, json={})
            context = f"{method} {url} with an organization's {how}: {answer.status_code}"
            assert answer.status_code in (302, 400, 401), context
            if answer.status_code == 302:
                assert answer.headers["Location"].startswith("/staff/login"), context
            assert org.name not in answer.get_data(as_text=True), context


def test_a_forged_staff_token_is_refused(app, client, org, staff, token):
    import jwt as pyjwt

    from .conftest import TEST_SECRET

    claims = pyjwt.decode(token, options={"verify_signature": False})
    forged = pyjwt.encode(claims, TEST_SECRET, algorithm="HS256")  # the org tokens' key
    assert client.get("/api/v1/staff/grants", headers=bearer(forged)).status_code == 401
    # an organization's JWT claims, signed with the staff key, are no staff token either
    with app.test_request_context():
        key = staff_service._token_key()
    org_like = pyjwt.encode({**claims, "aud": "someone-else"}, key, algorithm="HS256")
    assert client.get("/api/v1/staff/grants", headers=bearer(org_like)).status_code == 401


# The lookup -----------------------------------------------------------------------------


def test_lookup_says_what_an_id_is_and_where_and_nothing_else(
    app, client, api, org, other_org, token
):
    answered = api.get("/api/v1/workspaces", as_=org.member)
    request_id = answered.headers["X-Request-Id"]
    settled(app)
    with app.app_context():
        record = get_db().audit_logs.find_one({"requestId": request_id})
        stream_id = ObjectId()  # a stream's document, as the lookup reads it (by _id)
        get_db().audit_streams.insert_one({"_id": stream_id, "organizationId": org.id})
    cases = {
        str(stream_id): "auditStream",
        str(org.member.account_id): "account",
        str(org.workspace["_id"]): "workspace",
        str(org.id): "organization",
        str(org.api_key_id): "apiKey",
        str(org.roles["admin"]["_id"]): "role",
        str(record["_id"]): "auditLog",
        request_id: "requestId",
    }
    for value, kind in cases.items():
        answer = client.get(
            "/api/v1/staff/lookup", headers=bearer(token), query_string={"id": value}
        )
        assert answer.status_code == 200, answer.get_json()
        found = answer.get_json()
        assert found["kind"] == kind, (value, found)
        assert found["organizations"] == [
            {"id": str(org.id), "name": "Acme", "staffAccess": "open"}
        ]
        assert set(found) == {"id", "kind", "kinds", "matches", "organizations"}
        assert "/api/v1/workspaces" not in json.dumps(found)  # no record content
    # an account in two organizations: both
    with app.app_context():
        from audit_app.organizations import service as access

        access.add_member_as_operator(
            other_org.id, org.admin.email, None, other_org.roles["member"]
        )
    both = client.get(
        "/api/v1/staff/lookup",
        headers=bearer(token),
        query_string={"id": str(org.admin.account_id)},
    ).get_json()
    assert {o["name"] for o in both["organizations"]} == {"Acme", "Globex"}
    unknown = client.get(
        "/api/v1/staff/lookup", headers=bearer(token), query_string={"id": str(ObjectId())}
    ).get_json()
    assert unknown["kind"] is None and unknown["organizations"] == []
    for bad in ("", "a b", "x" * 200, "$where"):
        answer = client.get("/api/v1/staff/lookup", headers=bearer(token), query_string={"id": bad})
        assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "id"
    assert client.get("/api/v1/staff/lookup", query_string={"id": str(org.id)}).status_code == 401


def test_lookups_are_rate_limited_and_in_the_staff_log(make_app):
    app = make_app(RATELIMIT_STAFF="3 per minute")
    create_staff(app)
    client = app.test_client()
    token = staff_token(client)
    codes = [
        client.get(
            "/api/v1/staff/lookup", headers=bearer(token), query_string={"id": str(ObjectId())}
        ).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    logged = app.test_cli_runner().invoke(args=["staff-log", "--json"])
    assert logged.exit_code == 0
    actions = [i["action"] for i in json.loads(logged.output)["items"]]
    assert actions.count("staff.lookup") == 3 and "staff.login" in actions


def test_lookup_on_the_embedded_store_uses_the_indexes(embedded):
    app = embedded()
    org = make_org(app, "Acme")
    create_staff(app)
    client = app.test_client()
    token = staff_token(client)
    request_id = client.get("/api/v1/workspaces", headers={"X-API-Key": org.api_key}).headers[
        "X-Request-Id"
    ]
    found = client.get(
        "/api/v1/staff/lookup", headers=bearer(token), query_string={"id": request_id}
    ).get_json()
    assert found["kind"] == "requestId" and found["organizations"][0]["name"] == "Acme"
    with app.app_context():
        settled(app)
        # the very query the lookup sends for each organization, as the embedded store plans
        # it: one seek of ``requestid_org`` past the last organization found, no sort
        planned = plan_sql(
            {"requestId": request_id, "organizationId": {"$gt": ObjectId("0" * 24)}},
            [("organizationId", 1)],
            "requestid_org",
        )
        assert planned is not None
        sql, parameters = planned
        connection = get_db().audit_logs.table.connection()
        plan = str(
            connection.execute("EXPLAIN QUERY PLAN " + sql + " LIMIT 1", parameters).fetchall()
        )
        assert "requestid_org" in plan and "TEMP B-TREE" not in plan, plan
    account = client.get(
        "/api/v1/staff/lookup",
        headers=bearer(token),
        query_string={"id": str(org.owner.account_id)},
    ).get_json()
    assert account["kind"] == "account"


# Grants ---------------------------------------------------------------------------------


def test_without_a_grant_nothing_is_read(client, api, org, token):
    for suffix in ("", "/histogram", "/export?format=csv", f"/{ObjectId()}"):
        answer = client.get(
            f"/api/v1/staff/organizations/{org.id}/audit-logs{suffix}", headers=bearer(token)
        )
        assert answer.status_code == 403, suffix
        assert answer.get_json()["error"]["code"] == "staff_grant_required"
    assert (
        client.get(
            "/api/v1/staff/organizations/not-an-id/audit-logs", headers=bearer(token)
        ).status_code
        == 404
    )


def test_an_open_organization_s_grant_reads_its_log_as_its_admin_would(client, api, org, token):
    api.get("/api/v1/workspaces", as_=org.member)
    answer = grant(client, token, org.id)
    assert answer.status_code == 201, answer.get_json()
    made = answer.get_json()
    assert made["state"] == "active" and ObjectId.is_valid(made["grantId"])
    assert set(made) >= {"grantId", "state", "expiresAt"}
    base = f"/api/v1/staff/organizations/{org.id}/audit-logs"
    page = client.get(base, headers=bearer(token), query_string={"q": str(org.member.account_id)})
    assert page.status_code == 200, page.get_json()
    items = page.get_json()["items"]
    assert items and all(i["accountId"] == str(org.member.account_id) for i in items)
    mine = api.get(
        "/api/v1/audit-logs", as_=org.admin, query_string={"q": str(org.member.account_id)}
    ).get_json()["items"]
    assert [i["id"] for i in items] == [i["id"] for i in mine]  # the same rule, one place
    detail = client.get(f"{base}/{items[0]['id']}", headers=bearer(token))
    assert detail.status_code == 200 and detail.get_json()["id"] == items[0]["id"]
    histogram = client.get(f"{base}/histogram", headers=bearer(token))
    assert histogram.status_code == 200 and histogram.get_json()["buckets"]
    exported = client.get(
        f"{base}/export", headers=bearer(token), query_string={"format": "ndjson"}
    )
    assert exported.status_code == 200 and str(org.member.account_id) in exported.get_data(
        as_text=True
    )
    bad = client.get(base, headers=bearer(token), query_string={"limit": "9999"})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "limit"
    for method in ("POST", "PATCH", "DELETE", "PUT"):  # read-only
        assert client.open(base, method=method, headers=bearer(token)).status_code == 405
    listed = client.get("/api/v1/staff/grants", headers=bearer(token)).get_json()["items"]
    assert [g["grantId"] for g in listed] == [made["grantId"]]
    assert listed[0]["justification"] == JUSTIFICATION and listed[0]["ticket"] == "SUP-1234"


@pytest.mark.parametrize("justification", ["too short", "", " " * 20, "x" * 501, None, 42])
def test_a_grant_needs_a_justification_of_10_to_500_characters(client, org, token, justification):
    answer = client.post(
        "/api/v1/staff/grants",
        headers=bearer(token),
        json={"organizationId": str(org.id), "justification": justification},
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == "justification"


def test_a_grant_request_s_other_input_is_checked(client, org, token):
    assert grant(client, token, ObjectId()).status_code == 404
    bad = client.post(
        "/api/v1/staff/grants",
        headers=bearer(token),
        json={"organizationId": "nope", "justification": JUSTIFICATION},
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "organizationId"
    long_ticket = grant(client, token, org.id, ticket="T" * 101)
    assert long_ticket.status_code == 400 and long_ticket.get_json()["error"]["field"] == "ticket"


def test_a_grant_for_one_organization_never_reads_another(app, client, api, org, other_org, token):
    """By id, by a cursor of the other organization, by export and histogram."""
    for _ in range(3):
        api.get("/api/v1/workspaces", as_=org.admin)
        api.get("/api/v1/workspaces", as_=other_org.admin)
    assert grant(client, token, org.id).status_code == 201
    other = f"/api/v1/staff/organizations/{other_org.id}/audit-logs"
    for suffix in ("", "/histogram", "/export?format=ndjson"):
        assert client.get(other + suffix, headers=bearer(token)).status_code == 403
    mine = f"/api/v1/staff/organizations/{org.id}/audit-logs"
    # a record of the other organization, asked for through the granted one
    settled(app)
    theirs = logs(api, other_org)[0]["id"]
    assert client.get(f"{mine}/{theirs}", headers=bearer(token)).status_code == 404
    # the other organization's own cursor (signed, bound to it) on the granted one
    cursor = api.get(
        "/api/v1/audit-logs", as_=other_org.admin, query_string={"limit": 1}
    ).get_json()["nextCursor"]
    answer = client.get(mine, headers=bearer(token), query_string={"limit": 1, "cursor": cursor})
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "cursor"
    # and a cursor of the granted one, once the grant exists for both, on the other
    assert grant(client, token, other_org.id).status_code == 201
    own = client.get(mine, headers=bearer(token), query_string={"limit": 1}).get_json()
    answer = client.get(
        other, headers=bearer(token), query_string={"limit": 1, "cursor": own["nextCursor"]}
    )
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "cursor"
    exported = client.get(
        other + "/export", headers=bearer(token), query_string={"format": "ndjson"}
    )
    assert str(org.id) not in exported.get_data(as_text=True)


def test_a_grant_expires_on_time_on_every_request(app, client, api, org, token, monkeypatch):
    assert grant(client, token, org.id).status_code == 201
    base = f"/api/v1/staff/organizations/{org.id}/audit-logs"
    assert client.get(base, headers=bearer(token)).status_code == 200
    start = utcnow()
    monkeypatch.setattr(staff_service, "utcnow", lambda: start + timedelta(minutes=59))
    assert client.get(base, headers=bearer(token)).status_code == 200
    monkeypatch.setattr(staff_service, "utcnow", lambda: start + timedelta(minutes=61))
    for suffix in ("", "/histogram", "/export?format=csv"):
        assert client.get(base + suffix, headers=bearer(token)).status_code == 403, suffix
    listed = client.get("/api/v1/staff/grants", headers=bearer(token)).get_json()["items"]
    assert listed[0]["state"] == "expired"


def test_the_grant_is_read_from_the_store_not_a_cache(app, client, org, token):
    """Another worker (or an operator) ends the grant: the next request knows."""
    made = grant(client, token, org.id).get_json()
    base = f"/api/v1/staff/organizations/{org.id}/audit-logs"
    assert client.get(base, headers=bearer(token)).status_code == 200
    with app.app_context():
        get_db().staff_grants.update_one(
            {"_id": ObjectId(made["grantId"])}, {"$set": {"expiresAt": utcnow()}}
        )
    assert client.get(base, headers=bearer(token)).status_code == 403


def test_staff_grant_minutes_sets_the_lifetime(make_app):
    app = make_app(STAFF_GRANT_MINUTES=5)
    org = make_org(app, "Acme")
    create_staff(app)
    client = app.test_client()
    token = staff_token(client)
    made = grant(client, token, org.id).get_json()
    with app.app_context():
        stored = get_db().staff_grants.find_one({"_id": ObjectId(made["grantId"])})
    assert stored["expiresAt"] - stored["createdAt"] == timedelta(minutes=5)


def test_none_refuses_every_grant_but_lookup_still_answers(client, api, org, token):
    set_access(api, org, "none")
    answer = grant(client, token, org.id)
    assert (
        answer.status_code == 403 and answer.get_json()["error"]["code"] == "staff_access_refused"
    )
    base = f"/api/v1/staff/organizations/{org.id}/audit-logs"
    assert client.get(base, headers=bearer(token)).status_code == 403
    found = client.get(
        "/api/v1/staff/lookup",
        headers=bearer(token),
        query_string={"id": str(org.workspace["_id"])},
    ).get_json()
    assert found["organizations"] == [{"id": str(org.id), "name": "Acme", "staffAccess": "none"}]
    # the refused request is in the organization's log, with its reason
    refused = logs(api, org, action="staff.grantRequested")
    assert refused and refused[0]["statusCode"] == 403 and refused[0]["authType"] == "staff"


def test_staff_access_is_the_organization_s_to_set(api, org):
    assert api.get("/api/v1/organization", as_=org.member).get_json()["staffAccess"] == "open"
    refused = api.patch("/api/v1/organization", as_=org.member, json={"staffAccess": "none"})
    assert refused.status_code == 403 and refused.get_json()["error"]["field"] == "staffAccess"
    bad = api.patch("/api/v1/organization", as_=org.owner, json={"staffAccess": "sometimes"})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "staffAccess"
    assert all(v in bad.get_json()["error"]["message"] for v in ("open", "approval", "none"))
    changed = api.patch("/api/v1/organization", as_=org.admin, json={"staffAccess": "approval"})
    assert changed.status_code == 200 and changed.get_json()["staffAccess"] == "approval"
    record = logs(api, org, action="organization.update")[0]
    assert {"field": "staffAccess", "from": "open", "to": "approval"} in record["changes"]


def test_the_settings_page_sets_staff_access(client, api, org):
    login(client, org.owner)
    page = client.get("/organization/settings").get_data(as_text=True)
    assert 'name="staffAccess" value="approval"' in page
    answer = client.post(
        "/organization/settings",
        data={
            "csrf_token": csrf_from(page),
            "name": "Acme",
            "staffAccess": "approval",
            "auditRetentionDays": str(
                api.get("/api/v1/organization", as_=org.owner).get_json()["auditRetentionDays"]
            ),
        },
    )
    assert answer.status_code == 302
    assert api.get("/api/v1/organization", as_=org.owner).get_json()["staffAccess"] == "approval"


def test_approval_waits_for_an_owner_or_admin_never_a_member(app, client, api, org, token):
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    assert made["state"] == "pending"
    base = f"/api/v1/staff/organizations/{org.id}/audit-logs"
    assert client.get(base, headers=bearer(token)).status_code == 403
    approve = f"/api/v1/staff-requests/{made['grantId']}/approve"
    # a Member, an API key (even an Admin's), and a staff token: refused
    assert api.post(approve, as_=org.member).status_code == 403
    assert api.post(approve, key=org.api_key).status_code == 403
    assert client.post(approve, headers=bearer(token)).status_code == 401
    assert api.get("/api/v1/staff-requests", as_=org.member).status_code == 403
    pending = api.get("/api/v1/staff-requests", as_=org.admin).get_json()["items"]
    assert [p["grantId"] for p in pending] == [made["grantId"]]
    assert pending[0]["justification"] == JUSTIFICATION and pending[0]["staffEmail"] == STAFF_EMAIL
    approved = api.post(approve, as_=org.admin)
    assert approved.status_code == 200 and approved.get_json()["state"] == "active"
    assert client.get(base, headers=bearer(token)).status_code == 200
    again = api.post(approve, as_=org.owner)
    assert again.status_code == 409
    # another organization's Admin cannot decide this organization's requests
    assert api.get("/api/v1/staff-requests", as_=org.admin).get_json()["items"] == []


def test_a_denied_or_expired_request_reads_nothing(app, client, api, org, token, monkeypatch):
    set_access(api, org, "approval")
    denied = grant(client, token, org.id).get_json()
    answer = api.post(f"/api/v1/staff-requests/{denied['grantId']}/deny", as_=org.owner)
    assert answer.status_code == 200 and answer.get_json()["state"] == "denied"
    base = f"/api/v1/staff/organizations/{org.id}/audit-logs"
    assert client.get(base, headers=bearer(token)).status_code == 403
    late = grant(client, token, org.id).get_json()
    start = utcnow()
    monkeypatch.setattr(staff_service, "utcnow", lambda: start + timedelta(hours=25))
    answer = api.post(f"/api/v1/staff-requests/{late['grantId']}/approve", as_=org.owner)
    assert answer.status_code == 409 and "expired" in answer.get_json()["error"]["message"]
    assert api.get("/api/v1/staff-requests", as_=org.owner).get_json()["items"] == []


def test_another_organization_s_admin_cannot_decide(client, api, org, other_org, token):
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    answer = api.post(f"/api/v1/staff-requests/{made['grantId']}/approve", as_=other_org.owner)
    assert answer.status_code == 404
    assert (
        client.get(
            f"/api/v1/staff/organizations/{org.id}/audit-logs", headers=bearer(token)
        ).status_code
        == 403
    )


def test_a_staff_member_cannot_approve_their_own_grant(app, client, api, org):
    """The same person, an Admin of the organization and on the platform's staff."""
    create_staff(app, email=org.admin.email)
    token = staff_token(client, email=org.admin.email)
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    answer = api.post(f"/api/v1/staff-requests/{made['grantId']}/approve", as_=org.admin)
    assert answer.status_code == 403 and "own" in answer.get_json()["error"]["message"]
    assert (
        api.post(f"/api/v1/staff-requests/{made['grantId']}/approve", as_=org.owner).status_code
        == 200
    )


def test_the_staff_requests_page_approves(client, api, org, token):
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    login(client, org.member)
    assert client.get("/organization/staff-requests").status_code == 403
    client.post("/logout")
    login(client, org.admin)
    page = client.get("/organization/staff-requests")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and JUSTIFICATION in html and STAFF_EMAIL in html
    answer = client.post(
        f"/organization/staff-requests/{made['grantId']}/approve",
        data={"csrf_token": csrf_from(html)},
    )
    assert answer.status_code == 302
    assert (
        client.get(
            f"/api/v1/staff/organizations/{org.id}/audit-logs", headers=bearer(token)
        ).status_code
        == 200
    )


def test_a_removed_staff_account_is_dead_at_once(app, client, api, org, token):
    cookie = staff_login(client)
    made = grant(client, token, org.id).get_json()
    base = f"/api/v1/staff/organizations/{org.id}/audit-logs"
    assert client.get(base, headers=bearer(token)).status_code == 200
    result = app.test_cli_runner().invoke(args=["remove-staff", "--email", STAFF_EMAIL, "--json"])
    assert result.exit_code == 0, result.output
    removed = json.loads(result.output)
    assert removed["sessionsEnded"] == 1 and removed["grantsEnded"] == 1
    assert client.get(base, headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/staff/grants", headers=bearer(token)).status_code == 401
    fresh = app.test_client()
    fresh.set_cookie("staff_session", cookie, path="/staff")
    assert fresh.get("/staff").status_code == 302
    with app.app_context():
        assert (
            get_db().staff_grants.find_one({"_id": ObjectId(made["grantId"])})["state"] == "revoked"
        )
    # made again with the same email: a new account, none of the old grants
    create_staff(app)
    token = staff_token(client)
    assert client.get(base, headers=bearer(token)).status_code == 403


# What the customer sees -----------------------------------------------------------------


def test_every_staff_access_is_in_the_organization_s_own_log(app, client, api, org, token):
    api.get("/api/v1/workspaces", as_=org.member)
    made = grant(client, token, org.id).get_json()
    base = f"/api/v1/staff/organizations/{org.id}/audit-logs"
    listed = client.get(base, headers=bearer(token), query_string={"q": "action:workspace.list"})
    record_id = listed.get_json()["items"][0]["id"]
    client.get(f"{base}/{record_id}", headers=bearer(token))
    client.get(f"{base}/histogram", headers=bearer(token))
    client.get(f"{base}/export", headers=bearer(token), query_string={"format": "csv"}).get_data()
    settled(app)
    staff_records = logs(api, org, authType="staff")
    actions = sorted(r["action"] for r in staff_records)
    assert actions == sorted(
        [
            "staff.grantRequested",
            "staff.access",
            "staff.access",
            "staff.access",
            "staff.access",
            "auditLog.exportEnded",
        ]
    )
    for record in staff_records:
        assert record["accountEmail"] == STAFF_EMAIL and record["accountId"] is None
        assert record["organizationId"] == str(org.id)
    for record in (r for r in staff_records if r["action"].startswith("staff.")):
        detail = api.get(f"/api/v1/audit-logs/{record['id']}", as_=org.admin).get_json()
        assert detail["request"]["staffGrant"]["justification"] == JUSTIFICATION
        assert detail["request"]["staffGrant"]["ticket"] == "SUP-1234"
        assert {"type": "staffGrant", "id": made["grantId"], "name": STAFF_EMAIL} in detail[
            "targets"
        ]
    viewed = [r for r in staff_records if r["path"].endswith(record_id)]
    assert {"type": "auditLog", "id": record_id, "name": None} in viewed[0]["targets"]
    searched = [r for r in staff_records if r["action"] == "staff.access" and r["path"] == base]
    assert api.get(f"/api/v1/audit-logs/{searched[0]['id']}", as_=org.admin).get_json()["request"][
        "query"
    ] == {"q": "action:workspace.list"}
    # the organization's export carries them, justification included
    exported = api.get(
        "/api/v1/audit-logs/export",
        as_=org.admin,
        query_string={"format": "ndjson", "authType": "staff"},
    ).get_data(as_text=True)
    rows = [json.loads(line) for line in exported.splitlines() if line.strip()]
    assert any(
        r.get("request", {}).get("staffGrant", {}).get("justification") == JUSTIFICATION
        for r in rows
    )
    as_csv = api.get(
        "/api/v1/audit-logs/export",
        as_=org.admin,
        query_string={"format": "csv", "authType": "staff"},
    ).get_data(as_text=True)
    assert JUSTIFICATION in as_csv and STAFF_EMAIL in as_csv
    # and the web list's "Platform staff" chip filters them
    login(client, org.admin)
    page = client.get("/organization/audit-logs").get_data(as_text=True)
    assert 'id="staff-chip"' in page and "authType=staff" in page
    chip = client.get("/organization/audit-logs?authType=staff").get_data(as_text=True)
    assert STAFF_EMAIL in chip and "Platform staff" in chip


def test_approvals_and_denials_are_recorded(app, client, api, org, token):
    set_access(api, org, "approval")
    one = grant(client, token, org.id).get_json()
    two = grant(client, token, org.id, justification="A second look at the same ticket").get_json()
    api.post(f"/api/v1/staff-requests/{one['grantId']}/approve", as_=org.admin)
    api.post(f"/api/v1/staff-requests/{two['grantId']}/deny", as_=org.owner)
    settled(app)
    approved = logs(api, org, action="staff.grantApproved")[0]
    denied = logs(api, org, action="staff.grantDenied")[0]
    assert approved["accountEmail"] == org.admin.email and denied["accountEmail"] == org.owner.email
    detail = api.get(f"/api/v1/audit-logs/{approved['id']}", as_=org.admin).get_json()
    assert detail["request"]["staffGrant"]["staffEmail"] == STAFF_EMAIL
    assert detail["request"]["staffGrant"]["state"] == "active"
    logged = app.test_cli_runner().invoke(args=["staff-log", "--json", "--email", STAFF_EMAIL])
    actions = [i["action"] for i in json.loads(logged.output)["items"]]
    assert {"staff.grantRequested", "staff.grantApproved", "staff.grantDenied"} <= set(actions)


def test_a_stream_delivers_the_staff_access(make_app, receiver):
    from datetime import UTC, datetime

    from audit_app.streams import delivery

    app = make_app(AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)
    org = make_org(app, "Acme")
    create_staff(app)
    client = app.test_client()
    from .factories import Api

    api = Api(client)
    stream = api.post(
        "/api/v1/audit-streams",
        as_=org.admin,
        json={"name": "SIEM", "destination": {"type": "webhook", "url": receiver.url}},
    )
    assert stream.status_code == 201, stream.get_json()
    receiver.secret = stream.get_json()["secret"]
    token = staff_token(client)
    grant(client, token, org.id)
    client.get(f"/api/v1/staff/organizations/{org.id}/audit-logs", headers=bearer(token))
    with app.app_context():
        get_db().audit_streams.update_many({}, {"$set": {"nextAttemptAt": datetime.now(UTC)}})
    delivery.deliver_due(app, "test")
    events = receiver.events()
    staff_events = [e for e in events if e.get("authType") == "staff"]
    assert {e["action"] for e in staff_events} == {"staff.grantRequested", "staff.access"}
    assert all(e["accountEmail"] == STAFF_EMAIL for e in staff_events)
    assert any(
        (e.get("request") or {}).get("staffGrant", {}).get("justification") == JUSTIFICATION
        for e in staff_events
    )


def test_the_staff_flow_on_the_embedded_store_walks_its_indexes(embedded):
    """Every list of the staff's collections is a walk of its sorted index there."""
    from audit_app import sorted_store

    app = embedded()
    org = make_org(app, "Acme")
    create_staff(app)
    client = app.test_client()
    from .factories import Api

    api = Api(client)
    token = staff_token(client)
    fallbacks = sorted_store.FALLBACKS[0]
    assert grant(client, token, org.id).status_code == 201
    base = f"/api/v1/staff/organizations/{org.id}/audit-logs"
    assert client.get(base, headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/staff/grants", headers=bearer(token)).status_code == 200
    set_access(api, org, "approval")
    pending = grant(client, token, org.id).get_json()
    listed = api.get("/api/v1/staff-requests", as_=org.admin).get_json()["items"]
    assert [p["grantId"] for p in listed] == [pending["grantId"]]
    logged = app.test_cli_runner().invoke(args=["staff-log", "--json"])
    assert logged.exit_code == 0 and json.loads(logged.output)["items"]
    assert app.test_cli_runner().invoke(args=["list-staff", "--json"]).exit_code == 0
    walked = {index for index, _, _ in sorted_store.WALKS}
    assert {"staff_org_expiry", "staff_newest", "org_state_newest", "newest", "oldest"} <= walked
    assert sorted_store.FALLBACKS[0] == fallbacks


def test_a_secret_pasted_into_a_justification_is_never_stored(app, client, api, org, token):
    secret = org.api_key
    answer = grant(client, token, org.id, justification=f"The customer sent their key {secret}")
    assert answer.status_code == 201
    settled(app)
    with app.app_context():
        assert secret not in str(list(get_db().staff_grants.find({})))
        assert secret not in str(list(get_db().audit_logs.find({})))
        assert secret not in str(list(get_db().staff_log.find({})))


def test_the_staff_sign_in_goes_only_to_staff_pages(app, client, staff):
    page = client.get("/staff/login?next=//evil.example/x").get_data(as_text=True)
    answer = client.post(
        "/staff/login",
        data={
            "email": STAFF_EMAIL,
            "password": PASSWORD,
            "next": "//evil.example/x",
            "csrf_token": csrf_from(page),
        },
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/staff"
    for target in ("/organization/audit-logs", "https://evil.example/"):
        again = client.post(
            "/staff/login",
            data={
                "email": STAFF_EMAIL,
                "password": PASSWORD,
                "next": target,
                "csrf_token": csrf_from(page),
            },
        )
        assert again.headers["Location"] == "/staff"
    cookie = client.get_cookie("staff_session", path="/staff")
    assert cookie.http_only and cookie.path == "/staff" and cookie.same_site == "Strict"


def test_a_custom_role_with_manage_organization_does_not_decide(client, api, org, token):
    role = api.post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "Org manager", "permissions": ["manageOrganization", "viewAuditLog"]},
    ).get_json()
    api.patch(
        f"/api/v1/members/{org.member.account_id}", as_=org.owner, json={"roleId": role["id"]}
    )
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    answer = api.post(f"/api/v1/staff-requests/{made['grantId']}/approve", as_=org.member)
    assert answer.status_code == 403


def test_the_staff_requests_page_is_in_the_navigation_of_owners_and_admins_only(client, org):
    for person, shown in ((org.member, False), (org.admin, True), (org.owner, True)):
        login(client, person)
        home = client.get("/").get_data(as_text=True)
        assert ('href="/organization/staff-requests"' in home) is shown, person.email
        client.post("/logout")


def test_everything_one_staff_credential_did_is_one_filter(app, client, api, org, token):
    grant(client, token, org.id)
    client.get(f"/api/v1/staff/organizations/{org.id}/audit-logs", headers=bearer(token))
    settled(app)
    records = logs(api, org, authType="staff")
    credential = records[0]["credentialId"]
    assert credential.startswith("stft_") and token not in str(records)
    same = logs(api, org, q=f"credential:{credential}")
    assert {r["id"] for r in same} == {r["id"] for r in records}


def test_the_staff_pages_start_from_the_pasted_id_s_timeline(app, client, api, org, staff):
    staff_login(client)
    answered = api.get("/api/v1/workspaces", as_=org.member)
    request_id = answered.headers["X-Request-Id"]
    page = client.get("/staff", query_string={"id": request_id}).get_data(as_text=True)
    assert "requestId" in page and "Acme" in page
    answer = client.post(
        "/staff/grants",
        data={
            "csrf_token": csrf_from(page),
            "organizationId": str(org.id),
            "justification": JUSTIFICATION,
            "id": request_id,
        },
    )
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith(f"q=requestId:{request_id}")
    listed = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "/api/v1/workspaces" in listed and JUSTIFICATION in listed
    settled(app)
    [viewed] = [r for r in logs(api, org, authType="staff") if r["method"] == "GET"]
    assert viewed["action"] == "staff.access" and viewed["credentialId"].startswith("stfs_")
    assert viewed["path"] == f"/staff/organizations/{org.id}/audit-logs"
    # and a pasted workspace id: every record in, by or to it
    workspace = str(org.workspace["_id"])
    answer = client.post(
        "/staff/grants",
        data={
            "csrf_token": csrf_from(page),
            "organizationId": str(org.id),
            "justification": JUSTIFICATION,
            "id": workspace,
        },
    )
    assert answer.headers["Location"].endswith(f"q={workspace}")


def test_the_staff_list_page_filters_pages_and_charts(app, client, api, org, staff):
    for _ in range(4):
        api.get("/api/v1/workspaces", as_=org.member)
        api.get(f"/api/v1/workspaces/{ObjectId()}", as_=org.member)
    staff_login(client)
    token = staff_token(client)
    grant(client, token, org.id)
    base = f"/staff/organizations/{org.id}/audit-logs"
    page = client.get(base, query_string={"statusCode": "4xx", "limit": "2"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="activity"' in html
    assert html.count("View Details") == 2 and 'id="older"' in html
    older = re.search(r'id="older" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert "statusCode=4xx" in older and "cursor=" in older
    assert client.get(older).status_code == 200
    bad = client.get(base, query_string={"statusCode": "abc"})
    assert bad.status_code == 400 and "statusCode" in bad.get_data(as_text=True)
    assert client.post(base).status_code == 405


def test_staff_sign_in_is_rate_limited_per_address_and_email(make_app):
    app = make_app(RATELIMIT_LOGIN="2 per minute")
    create_staff(app)
    client = app.test_client()
    codes = [
        client.post(
            "/api/v1/staff/token", json={"email": STAFF_EMAIL, "password": "wrong password"}
        ).status_code
        for _ in range(3)
    ]
    assert codes == [401, 401, 429]
    other = client.post(
        "/api/v1/staff/token",
        json={"email": STAFF_EMAIL, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert other.status_code == 429  # the same email from elsewhere: its own counter
