"""Adversarial review of issue #27 (platform support staff): each test asserts the safe
behaviour, judged by the effect (data returned, state changed, what the logs hold), so it
fails where a hole exists. Helpers come from ``test_staff``."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from bson import ObjectId

from audit_app.db import get_db
from audit_app.ids import utcnow
from audit_app.staff import service as staff_service

from .factories import PASSWORD, Api, make_org, settled
from .test_staff import (
    JUSTIFICATION,
    STAFF_EMAIL,
    bearer,
    create_staff,
    grant,
    logs,
    set_access,
    staff_login,
    staff_token,
)
from .test_web_session import csrf_from, login

READS = ("", "/histogram", "/export?format=ndjson")


def _api_base(org_id):
    return f"/api/v1/staff/organizations/{org_id}/audit-logs"


def _web_base(org_id):
    return f"/staff/organizations/{org_id}/audit-logs"


def _a_record_id(app, api, org):
    api.get("/api/v1/workspaces", as_=org.member)
    settled(app)
    return logs(api, org)[0]["id"]


def _grant_state(app, grant_id):
    with app.app_context():
        return get_db().staff_grants.find_one({"_id": ObjectId(grant_id)})["state"]


def _staff_log(app):
    with app.app_context():
        return list(get_db().staff_log.find({}))


@pytest.fixture
def token(client, app):
    create_staff(app)
    return staff_token(client)


# (7) The organization's setting ---------------------------------------------------------


def test_switching_to_none_ends_an_active_grant_at_once(app, client, api, org, token):
    """The customer says "no platform staff read our log": a grant made while it was
    ``open`` must not go on reading for the rest of its hour."""
    record_id = _a_record_id(app, api, org)
    assert grant(client, token, org.id).status_code == 201
    base = _api_base(org.id)
    assert client.get(base, headers=bearer(token)).status_code == 200
    set_access(api, org, "none")
    for suffix in (*READS, f"/{record_id}"):
        answer = client.get(base + suffix, headers=bearer(token))
        body = answer.get_data(as_text=True)
        assert answer.status_code == 403, f"{suffix}: {answer.status_code} under staffAccess none"
        assert record_id not in body and "/api/v1/workspaces" not in body, suffix


def test_switching_to_none_ends_the_staff_web_pages_too(app, client, api, org):
    create_staff(app)
    staff_login(client)
    token = staff_token(client)
    record_id = _a_record_id(app, api, org)
    assert grant(client, token, org.id).status_code == 201
    set_access(api, org, "none")
    for suffix in ("", f"/{record_id}", "/export?format=csv"):
        answer = client.get(_web_base(org.id) + suffix)
        assert answer.status_code == 403, f"{suffix}: {answer.status_code} under staffAccess none"
        assert "/api/v1/workspaces" not in answer.get_data(as_text=True), suffix


def test_a_pending_request_cannot_be_approved_into_access_while_staff_access_is_none(
    app, client, api, org, token
):
    """A request made under ``approval``, then the organization says ``none``: approving the
    old request (an Admin who did not see the change) must not open the log."""
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    set_access(api, org, "none")
    api.post(f"/api/v1/staff-requests/{made['grantId']}/approve", as_=org.admin)
    assert client.get(_api_base(org.id), headers=bearer(token)).status_code == 403


def test_approval_back_to_open_does_not_activate_pending_requests(app, client, api, org, token):
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    assert made["state"] == "pending"
    set_access(api, org, "open")
    assert client.get(_api_base(org.id), headers=bearer(token)).status_code == 403
    assert _grant_state(app, made["grantId"]) == "pending"


def test_a_member_or_a_custom_role_without_manage_organization_cannot_change_it(
    app, client, api, org
):
    role = api.post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "Auditor", "permissions": ["viewAuditLog", "manageMembers"]},
    ).get_json()
    assert (
        api.patch(
            f"/api/v1/members/{org.member.account_id}", as_=org.owner, json={"roleId": role["id"]}
        ).status_code
        == 200
    )
    answer = api.patch("/api/v1/organization", as_=org.member, json={"staffAccess": "open"})
    assert answer.status_code == 403
    set_access(api, org, "none")
    # the web settings page, as the custom-role member
    login(client, org.member)
    token = csrf_from(client.get("/").get_data(as_text=True))
    client.post(
        "/organization/settings",
        data={"csrf_token": token, "name": "Acme", "staffAccess": "open"},
    )
    assert api.get("/api/v1/organization", as_=org.owner).get_json()["staffAccess"] == "none"


# (1) A staff member without a live grant, on the web pages ------------------------------


def test_pending_denied_and_expired_grants_read_nothing_on_the_web_pages(
    app, client, api, org, monkeypatch
):
    create_staff(app)
    staff_login(client)
    token = staff_token(client)
    record_id = _a_record_id(app, api, org)
    pages = ("", f"/{record_id}", "/export?format=csv")

    def nothing_read(context):
        for suffix in pages:
            answer = client.get(_web_base(org.id) + suffix)
            assert answer.status_code in (302, 403, 404), (context, suffix, answer.status_code)
            assert "/api/v1/workspaces" not in answer.get_data(as_text=True), (context, suffix)

    nothing_read("no grant")
    set_access(api, org, "approval")
    pending = grant(client, token, org.id).get_json()
    nothing_read("pending")
    api.post(f"/api/v1/staff-requests/{pending['grantId']}/deny", as_=org.owner)
    nothing_read("denied")
    set_access(api, org, "open")
    assert grant(client, token, org.id).status_code == 201
    assert client.get(_web_base(org.id)).status_code == 200
    start = utcnow()
    monkeypatch.setattr(staff_service, "utcnow", lambda: start + timedelta(minutes=61))
    nothing_read("expired")


def test_a_grant_for_one_organization_reads_nothing_of_another_on_the_web_pages(
    app, client, api, org, other_org
):
    create_staff(app)
    staff_login(client)
    token = staff_token(client)
    theirs = _a_record_id(app, api, other_org)
    assert grant(client, token, org.id).status_code == 201
    for suffix in ("", f"/{theirs}", "/export?format=csv"):
        answer = client.get(_web_base(other_org.id) + suffix)
        assert answer.status_code == 403, suffix
        assert "Globex" not in answer.get_data(as_text=True), suffix
    # B's record id through A's granted path: not found, and nothing of B in the page
    answer = client.get(f"{_web_base(org.id)}/{theirs}")
    assert answer.status_code == 404
    assert str(other_org.id) not in answer.get_data(as_text=True)
    # a cursor of B's admin on A's web list: refused, no records of B
    cursor = api.get(
        "/api/v1/audit-logs", as_=other_org.admin, query_string={"limit": 1}
    ).get_json()["nextCursor"]
    if cursor:
        answer = client.get(_web_base(org.id), query_string={"cursor": cursor, "limit": 1})
        assert answer.status_code == 400 and str(other_org.id) not in answer.get_data(True)


# (2) An organization's credentials at the staff endpoints ---------------------------------


def test_a_custom_role_and_a_member_s_session_get_nothing_from_staff(app, client, api, org):
    create_staff(app)
    role = api.post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "Support lead", "permissions": ["viewAuditLog", "manageOrganization"]},
    ).get_json()
    api.patch(
        f"/api/v1/members/{org.member.account_id}", as_=org.owner, json={"roleId": role["id"]}
    )
    jwt_headers = bearer(api.token(org.member))
    lookup = client.get(
        "/api/v1/staff/lookup", headers=jwt_headers, query_string={"id": str(org.id)}
    )
    assert lookup.status_code == 401 and "Acme" not in lookup.get_data(as_text=True)
    made = client.post(
        "/api/v1/staff/grants",
        headers=jwt_headers,
        json={"organizationId": str(org.id), "justification": JUSTIFICATION},
    )
    assert made.status_code == 401
    login(client, org.owner)
    page = client.get("/staff", query_string={"id": str(org.id)})
    assert page.status_code == 302 and page.headers["Location"].startswith("/staff/login")
    posted = client.post(
        "/staff/grants",
        data={
            "csrf_token": csrf_from(client.get("/organization/settings").get_data(True)),
            "organizationId": str(org.id),
            "justification": JUSTIFICATION,
        },
    )
    assert posted.status_code in (302, 400, 401)
    with app.app_context():
        assert get_db().staff_grants.count_documents({}) == 0
        assert not [e for e in get_db().staff_log.find({}) if e["action"] != "staff.create"]


def test_an_admin_cannot_decide_another_organization_s_request_on_the_page(
    app, client, api, org, other_org, token
):
    set_access(api, other_org, "approval")
    made = grant(client, token, other_org.id).get_json()
    login(client, org.admin)
    html = client.get("/organization/staff-requests").get_data(as_text=True)
    assert made["grantId"] not in html and "Globex" not in html
    answer = client.post(
        f"/organization/staff-requests/{made['grantId']}/approve",
        data={"csrf_token": csrf_from(html)},
    )
    assert answer.status_code == 404
    assert _grant_state(app, made["grantId"]) == "pending"


# (3) One person, an Owner of the organization and on the platform's staff ---------------


def test_an_owner_who_is_also_staff_cannot_approve_their_own_request_on_the_page(
    app, client, api, org
):
    create_staff(app, email=org.owner.email, password="a different staff password")
    token = staff_token(client, email=org.owner.email, password="a different staff password")
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    login(client, org.owner)
    html = client.get("/organization/staff-requests").get_data(as_text=True)
    client.post(
        f"/organization/staff-requests/{made['grantId']}/approve",
        data={"csrf_token": csrf_from(html)},
    )
    assert _grant_state(app, made["grantId"]) == "pending"
    assert client.get(_api_base(org.id), headers=bearer(token)).status_code == 403
    # with the email in another case (the same person): still their own
    api2 = Api(app.test_client())
    answer = api2.post(f"/api/v1/staff-requests/{made['grantId']}/deny", as_=org.owner)
    assert answer.status_code == 403 and _grant_state(app, made["grantId"]) == "pending"


def test_the_two_passwords_of_one_email_never_cross(app, client, api, org):
    create_staff(app, email=org.owner.email, password="a different staff password")
    # the Owner's own password is no staff password, the staff password no Owner's
    assert (
        client.post(
            "/api/v1/staff/token", json={"email": org.owner.email, "password": PASSWORD}
        ).status_code
        == 401
    )
    assert (
        client.post(
            "/api/v1/auth/token",
            json={"email": org.owner.email, "password": "a different staff password"},
        ).status_code
        == 401
    )
    # the Owner's organization JWT at the staff API: not the staff member
    assert (
        client.get("/api/v1/staff/grants", headers=bearer(api.token(org.owner))).status_code == 401
    )


# (4) Removed accounts, replayed cookies, CSRF, rate limits ------------------------------


def test_a_staff_cookie_is_dead_after_sign_out(app, client):
    create_staff(app)
    cookie = staff_login(client)
    page = client.get("/staff").get_data(as_text=True)
    client.post("/staff/logout", data={"csrf_token": csrf_from(page)})
    fresh = app.test_client()
    fresh.set_cookie("staff_session", cookie, path="/staff")
    assert fresh.get("/staff").status_code == 302


def test_the_staff_grant_form_needs_its_csrf_token(app, client, org):
    create_staff(app)
    staff_login(client)
    answer = client.post(
        "/staff/grants", data={"organizationId": str(org.id), "justification": JUSTIFICATION}
    )
    assert answer.status_code in (302, 400)
    with app.app_context():
        assert get_db().staff_grants.count_documents({}) == 0


def test_the_staff_limit_is_per_staff_member_not_per_address(make_app):
    app = make_app(RATELIMIT_STAFF="3 per minute")
    create_staff(app)
    client = app.test_client()
    token = staff_token(client)
    codes = [
        client.get(
            "/api/v1/staff/lookup",
            headers=bearer(token),
            query_string={"id": str(ObjectId())},
            environ_base={"REMOTE_ADDR": f"203.0.113.{n}"},
        ).status_code
        for n in range(1, 6)
    ]
    assert codes.count(429) >= 2, codes


def test_the_staff_lookup_budget_is_one_for_the_api_and_the_page(make_app):
    """Lookups are limited per staff member: the page's search box is the same lookup."""
    app = make_app(RATELIMIT_STAFF="3 per minute")
    create_staff(app)
    client = app.test_client()
    token = staff_token(client)
    staff_login(client)
    for _ in range(3):
        client.get(
            "/api/v1/staff/lookup", headers=bearer(token), query_string={"id": str(ObjectId())}
        )
    client.get("/staff", query_string={"id": str(ObjectId())})
    client.get("/staff", query_string={"id": str(ObjectId())})
    lookups = [e for e in _staff_log(app) if e["action"] == "staff.lookup"]
    assert len(lookups) <= 3, f"{len(lookups)} lookups under a limit of 3 per minute"


def test_grant_requests_are_limited_across_the_api_and_the_page(make_app):
    app = make_app(RATELIMIT_STAFF="3 per minute")
    org = make_org(app, "Acme")
    create_staff(app)
    client = app.test_client()
    token = staff_token(client)
    staff_login(client)
    for _ in range(3):
        grant(client, token, org.id)
    page = client.get("/staff").get_data(as_text=True)
    for _ in range(2):
        client.post(
            "/staff/grants",
            data={
                "csrf_token": csrf_from(page) if "csrf_token" in page else "",
                "organizationId": str(org.id),
                "justification": JUSTIFICATION,
            },
        )
    with app.app_context():
        made = get_db().staff_grants.count_documents({})
    assert made <= 3, f"{made} grants under a limit of 3 per minute"


# (5) Transparency ----------------------------------------------------------------------


def test_head_requests_under_a_grant_are_recorded_or_read_nothing(app, client, api, org, token):
    record_id = _a_record_id(app, api, org)
    assert grant(client, token, org.id).status_code == 201
    base = _api_base(org.id)
    before = len([r for r in logs(api, org, authType="staff") if r["action"] == "staff.access"])
    for suffix in ("", f"/{record_id}", "/export?format=ndjson", "/histogram"):
        client.open(base + suffix, method="HEAD", headers=bearer(token))
    settled(app)
    after = [r for r in logs(api, org, authType="staff") if r["action"] == "staff.access"]
    assert len(after) - before == 4, [r["method"] for r in after]


def test_staff_reads_on_the_embedded_store_journal_reach_the_organization_s_log(embedded):
    app = embedded()
    org = make_org(app, "Acme")
    create_staff(app)
    client = app.test_client()
    api = Api(client)
    token = staff_token(client)
    assert grant(client, token, org.id).status_code == 201
    base = _api_base(org.id)
    client.get(base, headers=bearer(token))
    client.get(base + "/export", headers=bearer(token), query_string={"format": "csv"}).get_data()
    client.get(base, headers=bearer(token), query_string={"statusCode": "abc"})  # a 400
    client.get(f"{base}/{ObjectId()}", headers=bearer(token))  # a 404
    # the organization's admin reads at once (no settle): every access is there
    staff = [r for r in logs(api, org, authType="staff") if r["action"] == "staff.access"]
    assert sorted(r["statusCode"] for r in staff) == [200, 200, 400, 404]


def test_an_export_cut_short_is_still_in_the_organization_s_log(
    app, client, api, org, token, monkeypatch
):
    from audit_app.audit import service as audit_service

    for _ in range(3):
        api.get("/api/v1/workspaces", as_=org.member)
    assert grant(client, token, org.id).status_code == 201
    real = audit_service.export_records

    def failing(organization_id, query):
        for n, record in enumerate(real(organization_id, query)):
            if n == 1:
                raise RuntimeError("the store went away mid-stream")
            yield record

    monkeypatch.setattr(audit_service, "export_records", failing)
    answer = client.get(
        _api_base(org.id) + "/export", headers=bearer(token), query_string={"format": "ndjson"}
    )
    with contextlib.suppress(RuntimeError):
        answer.get_data()
    monkeypatch.setattr(audit_service, "export_records", real)
    settled(app)
    actions = [r["action"] for r in logs(api, org, authType="staff")]
    assert "staff.access" in actions
    ended = [r for r in logs(api, org, authType="staff") if r["action"] == "auditLog.exportEnded"]
    assert ended and ended[0]["outcome"] == "failure"


def test_markup_in_a_justification_is_text_in_the_admin_s_views(app, client, api, org, token):
    payload = '<script>alert(1)</script><img src=x onerror="alert(2)"> need the log'
    set_access(api, org, "approval")
    made = grant(client, token, org.id, justification=payload, ticket="<b>T-1</b>")
    assert made.status_code == 201
    login(client, org.admin)
    for html in (
        client.get("/organization/staff-requests").get_data(as_text=True),
        client.get("/organization/audit-logs?authType=staff").get_data(as_text=True),
    ):
        assert "<script>alert(1)" not in html and "<img src=x" not in html and "<b>T-1" not in html
    settled(app)
    record = logs(api, org, authType="staff")[0]
    detail = client.get(f"/organization/audit-logs/{record['id']}").get_data(as_text=True)
    assert "<script>alert(1)" not in detail and "<img src=x" not in detail


def test_an_api_key_pasted_into_the_lookup_is_never_stored_in_clear(app, client, api, org, token):
    """A customer sends their key in a ticket; support pastes it into the search box."""
    secret = org.api_key
    client.get("/api/v1/staff/lookup", headers=bearer(token), query_string={"id": secret})
    staff_login(client)
    client.get("/staff", query_string={"id": secret})
    settled(app)
    with app.app_context():
        db = get_db()
        assert secret not in str(list(db.audit_logs.find({}))), "an audit record holds the key"
    logged = app.test_cli_runner().invoke(args=["staff-log", "--json"])
    assert secret not in logged.output, "flask staff-log prints the key"
    with app.app_context():
        assert secret not in str(list(get_db().staff_log.find({}))), "the staff log holds it"


def test_a_secret_in_the_ticket_or_the_web_form_is_never_stored(app, client, api, org):
    create_staff(app)
    staff_login(client)
    secret = org.api_key
    page = client.get("/staff", query_string={"id": str(org.id)}).get_data(as_text=True)
    client.post(
        "/staff/grants",
        data={
            "csrf_token": csrf_from(page),
            "organizationId": str(org.id),
            "justification": f"Checking the key the customer sent: {secret}",
            "ticket": secret,
        },
    )
    settled(app)
    with app.app_context():
        db = get_db()
        for name in ("staff_grants", "staff_log", "audit_logs"):
            assert secret not in str(list(db[name].find({}))), name


def test_control_characters_in_a_justification_do_not_reach_the_record(
    app, client, api, org, token
):
    """A justification that rewrites what the admin or the operator's terminal shows
    (ANSI escapes, a NUL, a right-to-left override): refused or cleaned."""
    payload = "Routine check\x1b[2K\x1b[1A\rApproved by owner\x00 \u202etxt.exe"
    answer = grant(client, token, org.id, justification=payload)
    settled(app)
    with app.app_context():
        stored = [g["justification"] for g in get_db().staff_grants.find({})]
    if answer.status_code == 201:
        assert not any(ch in s for s in stored for ch in ("\x1b", "\x00", "\r", "\u202e")), repr(
            stored
        )
    else:
        assert answer.status_code == 400 and stored == []


def test_a_null_byte_justification_on_the_embedded_store_is_recorded_or_refused(embedded):
    app = embedded()
    org = make_org(app, "Acme")
    create_staff(app)
    client = app.test_client()
    api = Api(client)
    token = staff_token(client)
    answer = grant(client, token, org.id, justification="Looking into it\x00 for the ticket")
    assert answer.status_code in (201, 400)
    if answer.status_code == 201:
        requested = logs(api, org, action="staff.grantRequested")
        assert requested and requested[0]["authType"] == "staff"


# (6) The lookup as an oracle -------------------------------------------------------------


def test_lookup_of_an_account_says_nothing_of_the_person(app, client, api, org, token):
    answer = client.get(
        "/api/v1/staff/lookup",
        headers=bearer(token),
        query_string={"id": str(org.member.account_id)},
    )
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert org.member.email not in text and "member@" not in text
    found = answer.get_json()
    assert set(found) == {"id", "kind", "kinds", "matches", "organizations"}
    for organization in found["organizations"]:
        assert set(organization) == {"id", "name", "staffAccess"}
    # an invitation, a membership, a grant or a staff account: nothing
    with app.app_context():
        membership = get_db().memberships.find_one({"accountId": org.member.account_id})
        staff_id = get_db().staff_accounts.find_one({})["_id"]
    for other in (membership["_id"], staff_id):
        unknown = client.get(
            "/api/v1/staff/lookup", headers=bearer(token), query_string={"id": str(other)}
        ).get_json()
        assert unknown["organizations"] == [] and unknown["kind"] is None


def test_another_organization_cannot_hide_a_request_id_from_the_lookup(
    app, client, api, org, other_org, token
):
    """Request ids are the client's to choose (``X-Request-Id``): a tenant that sends many
    requests with a customer's request id must not push that customer out of the answer,
    nor be named alone as its owner (support would read, and write its justification into,
    the wrong organization's log)."""
    request_id = "req-customer-ticket-4711"
    answered = client.get(
        "/api/v1/workspaces",
        headers={"X-API-Key": org.api_key, "X-Request-Id": request_id},
    )
    assert answered.headers["X-Request-Id"] == request_id
    for _ in range(25):
        client.get(
            "/api/v1/workspaces",
            headers={"X-API-Key": other_org.api_key, "X-Request-Id": request_id},
        )
    settled(app)
    found = client.get(
        "/api/v1/staff/lookup", headers=bearer(token), query_string={"id": request_id}
    ).get_json()
    names = {o["name"] for o in found["organizations"]}
    assert "Acme" in names, found


# (1) more: the staff credential's own paths and the grant's state machine ----------------


def test_a_revoked_grant_cannot_be_approved_back_to_life(app, client, api, org):
    create_staff(app)
    token = staff_token(client)
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    result = app.test_cli_runner().invoke(args=["remove-staff", "--email", STAFF_EMAIL, "--json"])
    assert result.exit_code == 0
    answer = api.post(f"/api/v1/staff-requests/{made['grantId']}/approve", as_=org.admin)
    assert answer.status_code == 409 and _grant_state(app, made["grantId"]) == "revoked"


def test_a_staff_token_after_removal_and_recreation_is_dead(app, client, org):
    create_staff(app)
    old = staff_token(client)
    app.test_cli_runner().invoke(args=["remove-staff", "--email", STAFF_EMAIL])
    create_staff(app)
    assert client.get("/api/v1/staff/grants", headers=bearer(old)).status_code == 401
    assert grant(client, old, org.id).status_code == 401
    with app.app_context():
        assert get_db().staff_grants.count_documents({}) == 0


def test_lookup_and_grant_bodies_with_operators_are_400(app, client, org, token):
    for body in (
        {"organizationId": {"$ne": None}, "justification": JUSTIFICATION},
        {"organizationId": str(org.id), "justification": {"$gt": ""}},
        {"organizationId": str(org.id), "justification": JUSTIFICATION, "ticket": {"$ne": 1}},
        {"organizationId": [str(org.id)], "justification": JUSTIFICATION},
    ):
        answer = client.post("/api/v1/staff/grants", headers=bearer(token), json=body)
        assert answer.status_code == 400, body
    answer = client.get(
        "/api/v1/staff/lookup", headers=bearer(token), query_string={"id[$ne]": "x"}
    )
    assert answer.status_code == 400
    with app.app_context():
        assert get_db().staff_grants.count_documents({}) == 0


def test_the_lookup_record_id_path_does_not_read_across_via_staff_list_filters(
    app, client, api, org, other_org, token
):
    """Under a grant for A, every qualifier that names something of B (its workspace, its
    key, its record, its account) finds nothing of B."""
    theirs = _a_record_id(app, api, other_org)
    assert grant(client, token, org.id).status_code == 201
    base = _api_base(org.id)
    for q in (
        theirs,
        str(other_org.workspace["_id"]),
        str(other_org.api_key_id),
        str(other_org.member.account_id),
        f"actor:{other_org.member.email}",
        "Globex main",
    ):
        answer = client.get(base, headers=bearer(token), query_string={"q": q})
        assert answer.status_code in (200, 400), q
        assert str(other_org.id) not in answer.get_data(as_text=True), q
        if answer.status_code == 200:
            assert all(i["organizationId"] == str(org.id) for i in answer.get_json()["items"]), q
    for fmt in ("csv", "ndjson", "ocsf"):
        exported = client.get(
            base + "/export", headers=bearer(token), query_string={"format": fmt, "q": theirs}
        ).get_data(as_text=True)
        assert str(other_org.id) not in exported and theirs not in exported.replace(
            f"q={theirs}", ""
        ), fmt


def test_an_anonymous_client_cannot_hide_a_request_id_from_the_lookup(app, client, api, org, token):
    """Twenty unauthenticated requests carrying a customer's request id (records of no
    organization) must not make the lookup answer that the id belongs to nobody."""
    request_id = "trace-7f3a9c-customer"
    client.get("/api/v1/workspaces", headers={"X-API-Key": org.api_key, "X-Request-Id": request_id})
    for _ in range(21):
        client.get("/api/v1/workspaces", headers={"X-Request-Id": request_id})  # a 401
    settled(app)
    found = client.get(
        "/api/v1/staff/lookup", headers=bearer(token), query_string={"id": request_id}
    ).get_json()
    assert [o["name"] for o in found["organizations"]] == ["Acme"], found


def test_switching_to_approval_ends_grants_nobody_approved(app, client, api, org, token):
    """An organization that moves to ``approval`` wants no access it has not approved."""
    assert grant(client, token, org.id).get_json()["state"] == "active"
    set_access(api, org, "approval")
    assert client.get(_api_base(org.id), headers=bearer(token)).status_code == 403


def test_the_organization_can_end_an_active_grant(app, client, api, org, token):
    """The customer's own way out of a grant it did not want (open by default): deny, or
    the ``none`` setting; either must end the reading."""
    made = grant(client, token, org.id).get_json()
    api.post(f"/api/v1/staff-requests/{made['grantId']}/deny", as_=org.owner)
    set_access(api, org, "none")
    answer = client.get(_api_base(org.id), headers=bearer(token))
    assert answer.status_code == 403, "no way for the organization to end an active grant"


def test_the_integrity_state_is_not_reachable_under_a_grant(app, client, api, org, token):
    assert grant(client, token, org.id).status_code == 201
    for path in (
        f"{_api_base(org.id)}/integrity",
        f"{_web_base(org.id)}/integrity",
        f"{_api_base(org.id)}/{ObjectId()}/proof",
        f"{_api_base(org.id)}/checkpoint",
    ):
        answer = client.get(path, headers=bearer(token))
        assert answer.status_code in (302, 404, 405), (path, answer.status_code)
        body = answer.get_data(as_text=True)
        assert "verified" not in body.lower() and "rootHash" not in body, path


def test_the_organization_s_default_list_shows_staff_access(app, client, api, org, token):
    grant(client, token, org.id)
    client.get(_api_base(org.id), headers=bearer(token))
    settled(app)
    login(client, org.admin)
    page = client.get("/organization/audit-logs").get_data(as_text=True)
    assert STAFF_EMAIL in page
    listed = api.get("/api/v1/audit-logs", as_=org.owner).get_json()["items"]
    assert any(i["authType"] == "staff" and i["action"] == "staff.access" for i in listed)


@pytest.mark.parametrize(
    "blank",
    ["\u200b" * 12, "\u2800" * 12, "\x00" * 12, "\u3164" * 12, "\u200e\u200f" * 6],
    ids=["zero-width-space", "braille-blank", "nul", "hangul-filler", "direction-marks"],
)
def test_an_invisible_justification_is_no_justification(app, client, api, org, token, blank):
    """10-500 characters of reason: characters that show nothing are not a reason the
    customer can read."""
    answer = grant(client, token, org.id, justification=blank)
    assert answer.status_code == 400, f"an invisible justification made a grant: {blank!r}"
    assert client.get(_api_base(org.id), headers=bearer(token)).status_code == 403


def test_the_customer_finds_a_staff_member_s_accesses_by_their_email(app, client, api, org, token):
    """The staff member's email is the actor of their records: the organization's
    ``actor:`` search by that email finds them."""
    grant(client, token, org.id)
    client.get(_api_base(org.id), headers=bearer(token))
    settled(app)
    found = api.get(
        "/api/v1/audit-logs", as_=org.admin, query_string={"q": f"actor:{STAFF_EMAIL}"}
    ).get_json()["items"]
    assert {i["action"] for i in found} >= {"staff.grantRequested", "staff.access"}, found


def test_a_staff_account_made_with_a_capital_letter_is_one_account_that_signs_in(app, client):
    """Emails are compared in any case elsewhere (accounts, the self-approval check): a
    staff account is one per address, signs in, and is removed by its address."""
    runner = app.test_cli_runner()
    made = runner.invoke(
        args=["create-staff", "--email", "Support@platform.example", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert made.exit_code == 0, made.output
    again = runner.invoke(
        args=["create-staff", "--email", "support@platform.example", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert again.exit_code != 0, "a second staff account for the same address"
    answer = client.post(
        "/api/v1/staff/token", json={"email": "Support@platform.example", "password": PASSWORD}
    )
    assert answer.status_code == 200, "the account cannot sign in"
