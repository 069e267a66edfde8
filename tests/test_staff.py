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


def test_a_staff_credential_reaches_no_organization_endpoint_or_page(app, client, org, staff):
    """The matrix over the URL map: a staff token and a staff session cookie (replayed on
    every path) at every organization endpoint and page, every method: no data, no effect."""
    token = staff_token(client)
    cookie = staff_login(client)
    grant(client, token, org.id)  # even holding a live grant for the organization
    before = _state(app, org)
    checked = 0
    for rule in _org_rules(app):
        url = _concrete(rule, org)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for how in ("token", "cookie"):
                fresh = app.test_client()
                headers = bearer(token) if how == "token" else {}
                if how == "cookie":
                    fresh.set_cookie("staff_session", cookie, path="/")
                answer = fresh.open(url, method=method, headers=headers, json={})
                body = answer.get_data(as_text=True)
                checked += 1
                context = f"{method} {url} with a staff {how}: {answer.status_code}"
                if rule.endpoint in PUBLIC:
                    assert org.name not in body and str(org.id) not in body.replace(url, ""), (
                        context
                    )
                    continue
                assert answer.status_code in (302, 400, 401, 403, 404, 405, 415), context
                if answer.status_code == 302:
                    assert "/login" in answer.headers["Location"], context
                assert org.name not in body, context
    assert checked > 100
    assert _state(app, org) == before
    with app.app_context():  # nothing recorded as staff but the grant itself
        records = list(get_db().audit_logs.find({"organizationId": org.id, "authType": "staff"}))
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
    cases = {
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
        # the very query the lookup sends, as the embedded store plans it: one index walk
        planned = plan_sql(
            {"requestId": request_id}, [("createdAt", -1), ("_id", -1)], "requestid_newest"
        )
        assert planned is not None
        sql, parameters = planned
        connection = get_db().audit_logs.table.connection()
        plan = str(
            connection.execute("EXPLAIN QUERY PLAN " + sql + " LIMIT 21", parameters).fetchall()
        )
        assert "requestid_newest" in plan and "TEMP B-TREE" not in plan, plan
    account = client.get(
        "/api/v1/staff/lookup",
        headers=bearer(token),
        query_string={"id": str(org.owner.account_id)},
    ).get_json()
    assert account["kind"] == "account"
