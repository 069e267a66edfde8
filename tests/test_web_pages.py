"""The viewer and admin pages through the Flask client, with CSRF on."""

import re

import pytest
from bson import ObjectId

from .factories import audit_record
from .test_web_session import csrf_from, login


@pytest.fixture
def web(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


@pytest.fixture
def owner_client(web, org):
    client = web.test_client()
    login(client, org.owner)
    return client


def token_of(client, path="/organization/roles"):
    return csrf_from(client.get(path).get_data(as_text=True))


def test_list_page_for_admins(owner_client, org, db):
    db.audit_logs.insert_one(
        audit_record(org.id, path="/api/v1/pathways/<b>bold</b>", accountEmail="x@acme.example")
    )
    page = owner_client.get("/organization/audit-logs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for column in (
        "Account",
        "Workspace",
        "Auth Type",
        "Resource",
        "Method",
        "Path",
        "Status Code",
        "Created",
        "Actions",
    ):
        assert f">{column}</th>" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert "View Details" in html and 'name="q"' in html


@pytest.mark.parametrize("who", ["member"])
def test_pages_without_the_permission_are_403_and_hidden(web, org, who):
    client = web.test_client()
    login(client, getattr(org, who))
    home = client.get("/").get_data(as_text=True)
    assert "/organization/audit-logs" not in home
    for path in (
        "/organization/audit-logs",
        f"/organization/audit-logs/{ObjectId()}",
        "/organization/audit-logs/export?format=csv",
    ):
        answer = client.get(path)
        assert answer.status_code == 403 and "viewAuditLog" in answer.get_data(as_text=True)


def test_pages_need_login(web, org):
    answer = web.test_client().get("/organization/audit-logs?q=x")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=/organization/audit-logs")


@pytest.mark.parametrize(
    "query,field",
    [
        ("statusCode=99", "statusCode"),
        ("accountId=nope", "accountId"),
        ("from=tomorrow", "from"),
        ("limit=9999", "limit"),
        ("cursor=x", "cursor"),
        ("bogus=1", "bogus"),
    ],
)
def test_bad_filters_are_an_inline_400(owner_client, query, field):
    answer = owner_client.get(f"/organization/audit-logs?{query}")
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert 'role="alert"' in html and field in html


def test_empty_fields_of_the_form_are_ignored(owner_client):
    answer = owner_client.get("/organization/audit-logs?q=&method=&statusCode=&from=&to=&limit=25")
    assert answer.status_code == 200


def test_datetime_local_values_are_accepted(owner_client, org, db):
    db.audit_logs.insert_one(audit_record(org.id, path="/dated"))
    answer = owner_client.get(
        "/organization/audit-logs?from=2020-01-01T00:00&to=2099-01-01T00:00:00"
    )
    assert answer.status_code == 200 and "/dated" in answer.get_data(as_text=True)


def test_detail_page_and_invalid_or_foreign_ids(owner_client, org, other_org, db):
    mine = audit_record(
        org.id,
        request={
            "body": {"password": "[REDACTED]", "%24set": 1},
            "bodyType": "json",
            "query": {},
            "params": {},
            "headers": {"Accept": "*/*"},
        },
    )
    theirs = audit_record(other_org.id)
    db.audit_logs.insert_many([mine, theirs])
    page = owner_client.get(f"/organization/audit-logs/{mine['_id']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "&#34;$set&#34;: 1" in html and "[REDACTED]" in html
    for heading in ("Body", "Query parameters", "Path parameters", "Headers"):
        assert f"<h3>{heading}</h3>" in html
    assert owner_client.get(f"/organization/audit-logs/{theirs['_id']}").status_code == 404
    assert owner_client.get("/organization/audit-logs/not-an-id").status_code == 404


def test_web_export_follows_the_filters(owner_client, org, db):
    db.audit_logs.insert_many(
        [
            audit_record(org.id, statusCode=500, path="/boom"),
            audit_record(org.id, statusCode=200, path="/fine"),
        ]
    )
    answer = owner_client.get("/organization/audit-logs/export?format=csv&statusCode=5xx")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "/boom" in text and "/fine" not in text
    assert "attachment" in answer.headers["Content-Disposition"]


def test_viewing_the_log_is_recorded(owner_client, org, db):
    owner_client.get("/organization/audit-logs?q=pathways")
    record = db.audit_logs.find_one({"path": "/organization/audit-logs"})
    assert record["authType"] == "session" and record["accountId"] == org.owner.account_id
    assert record["resource"] == "auditLogs" and record["request"]["query"] == {"q": "pathways"}


# Roles --------------------------------------------------------------------------------------


def test_grant_and_revoke_view_audit_log_for_member(owner_client, org, db):
    member_role = org.roles["member"]["_id"]
    current = db.roles.find_one({"_id": member_role})["permissions"]
    answer = owner_client.post(
        f"/organization/roles/{member_role}",
        data={"csrf_token": token_of(owner_client), "permissions": [*current, "viewAuditLog"]},
    )
    assert answer.status_code == 302
    assert "viewAuditLog" in db.roles.find_one({"_id": member_role})["permissions"]
    owner_client.post(
        f"/organization/roles/{member_role}",
        data={"csrf_token": token_of(owner_client), "permissions": current},
    )
    assert "viewAuditLog" not in db.roles.find_one({"_id": member_role})["permissions"]
    record = db.audit_logs.find_one({"path": f"/organization/roles/{member_role}"})
    assert record["authType"] == "session" and record["resource"] == "roles"
    assert record["request"]["body"]["permissions"][-1] == "viewAuditLog"


def test_role_forms_need_csrf(owner_client, org, db):
    answer = owner_client.post(
        f"/organization/roles/{org.roles['member']['_id']}", data={"permissions": ["viewAuditLog"]}
    )
    assert answer.status_code == 400
    assert (
        "viewAuditLog" not in db.roles.find_one({"_id": org.roles["member"]["_id"]})["permissions"]
    )


def test_owner_role_is_locked_in_the_page(owner_client, org, db):
    html = owner_client.get("/organization/roles").get_data(as_text=True)
    owner_section = html.split('id="role-owner"')[1].split("</section>")[0]
    assert "disabled" in owner_section and "locked" in owner_section
    owner_client.post(
        f"/organization/roles/{org.roles['owner']['_id']}",
        data={"csrf_token": token_of(owner_client), "permissions": ["viewAuditLog"]},
    )
    assert len(db.roles.find_one({"_id": org.roles["owner"]["_id"]})["permissions"]) > 1
    assert "Owner role cannot be edited" in owner_client.get("/organization/roles").get_data(
        as_text=True
    )


def test_create_and_delete_custom_role(owner_client, org, db):
    owner_client.post(
        "/organization/roles",
        data={
            "csrf_token": token_of(owner_client),
            "name": "Auditors",
            "permissions": ["viewAuditLog"],
        },
    )
    role = db.roles.find_one({"organizationId": org.id, "name": "Auditors"})
    assert role["permissions"] == ["viewAuditLog"]
    bad = owner_client.post(
        "/organization/roles",
        data={"csrf_token": token_of(owner_client), "name": "X", "permissions": ["flyAway"]},
    )
    assert bad.status_code == 400
    owner_client.post(
        f"/organization/roles/{role['_id']}/delete",
        data={"csrf_token": token_of(owner_client), "confirm": "yes"},
    )
    assert db.roles.find_one({"_id": role["_id"]}) is None
    assert (
        owner_client.post(
            f"/organization/roles/{ObjectId()}", data={"csrf_token": token_of(owner_client)}
        ).status_code
        == 404
    )


def test_member_cannot_post_role_changes(web, org, db):
    client = web.test_client()
    login(client, org.member)
    token = token_of(client)
    answer = client.post(
        f"/organization/roles/{org.roles['member']['_id']}",
        data={"csrf_token": token, "permissions": ["viewAuditLog"]},
    )
    assert answer.status_code == 403
    assert "disabled" in client.get("/organization/roles").get_data(as_text=True)


# Members and API keys ---------------------------------------------------------------------------


def test_assign_roles_and_last_owner(owner_client, org, db):
    token = token_of(owner_client, "/organization/members")
    owner_client.post(
        f"/organization/members/{org.member.account_id}",
        data={"csrf_token": token, "roleId": str(org.roles["admin"]["_id"])},
    )
    assert (
        db.memberships.find_one({"accountId": org.member.account_id})["roleId"]
        == org.roles["admin"]["_id"]
    )
    owner_client.post(
        f"/organization/members/{org.owner.account_id}",
        data={"csrf_token": token, "roleId": str(org.roles["member"]["_id"])},
    )
    assert (
        db.memberships.find_one({"accountId": org.owner.account_id})["roleId"]
        == org.roles["owner"]["_id"]
    )
    assert "own role" in owner_client.get("/organization/members").get_data(as_text=True)
    owner_client.post(
        f"/organization/members/{org.owner.account_id}/remove",
        data={"csrf_token": token, "confirm": "yes"},
    )
    assert db.memberships.find_one({"accountId": org.owner.account_id})
    assert "last Owner" in owner_client.get("/organization/members").get_data(as_text=True)
    bad = owner_client.post(
        f"/organization/members/{org.member.account_id}", data={"csrf_token": token, "roleId": "x"}
    )
    assert bad.status_code == 302  # flashed: roleId must be an ObjectId
    assert (
        owner_client.post(
            f"/organization/members/{ObjectId()}",
            data={"csrf_token": token, "roleId": str(org.roles["admin"]["_id"])},
        ).status_code
        == 404
    )


def test_invite_accept_and_remove_member(owner_client, web, org, db):
    token = token_of(owner_client, "/organization/members")
    page = owner_client.post(
        "/organization/members",
        data={
            "csrf_token": token,
            "email": "new@acme.example",
            "roleId": str(org.roles["member"]["_id"]),
        },
    )
    assert page.status_code == 201 and page.headers["Cache-Control"] == "no-store"
    url = re.search(r'id="accept-url">([^<]+)<', page.get_data(as_text=True)).group(1)
    assert db.accounts.find_one({"emailLower": "new@acme.example"}) is None
    assert "new@acme.example" in owner_client.get("/organization/members").get_data(as_text=True)
    invitee = web.test_client()
    path = url.split("localhost", 1)[1]
    accept_page = invitee.get(path).get_data(as_text=True)
    assert "Choose a password" in accept_page
    answer = invitee.post(
        path,
        data={
            "csrf_token": csrf_from(accept_page),
            "password": "my own pw!",
            "confirmPassword": "my own pw!",
        },
    )
    assert answer.status_code == 302
    assert "Acme" in invitee.get("/").get_data(as_text=True)
    account = db.accounts.find_one({"emailLower": "new@acme.example"})
    assert db.memberships.find_one({"accountId": account["_id"], "organizationId": org.id})
    assert invitee.get(path).status_code == 404  # used once
    owner_client.post(
        f"/organization/members/{account['_id']}/remove",
        data={"csrf_token": token, "confirm": "yes"},
    )
    assert db.memberships.find_one({"accountId": account["_id"]}) is None
    assert invitee.get("/organization/members").status_code == 302  # their session ended


def test_api_key_secret_shown_once_then_revoked(owner_client, org, db):
    token = token_of(owner_client, "/organization/api-keys")
    answer = owner_client.post(
        "/organization/api-keys",
        data={
            "csrf_token": token,
            "name": "web key",
            "roleId": str(org.roles["member"]["_id"]),
            "workspaceId": str(org.workspace["_id"]),
        },
    )
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="new-key">(oal_[^<]+)<', answer.get_data(as_text=True)).group(1)
    assert secret not in owner_client.get("/organization/api-keys").get_data(as_text=True)
    key = db.api_keys.find_one({"name": "web key"})
    assert key["workspaceId"] == org.workspace["_id"]
    record = db.audit_logs.find_one({"path": "/organization/api-keys", "method": "POST"})
    assert secret not in str(record)
    owner_client.post(
        f"/organization/api-keys/{key['_id']}/revoke", data={"csrf_token": token, "confirm": "yes"}
    )
    assert db.api_keys.find_one({"_id": key["_id"]})["revokedAt"] is not None


def test_pages_read_as_people_read(owner_client, org, db):
    """Auth types by name, empty request parts as "none", dates with their zone, a key's
    workspace by name, and an error page that leads back where the reader came from."""
    db.audit_logs.insert_one(audit_record(org.id, authType="apiKey", apiKeyId=org.api_key_id))
    listing = owner_client.get("/organization/audit-logs").get_data(as_text=True)
    assert ">API key</span>" in listing and 'title="apiKey"' in listing
    record = db.audit_logs.find_one({"organizationId": org.id, "authType": "apiKey"})
    details = owner_client.get(f"/organization/audit-logs/{record['_id']}").get_data(as_text=True)
    assert '<pre class="payload" tabindex="0">{}</pre>' not in details
    assert 'class="muted empty-section">none</p>' in details
    keys = owner_client.get("/organization/api-keys").get_data(as_text=True)
    created = re.findall(r'data-label="Created"><time datetime="[^"]+"[^>]*>([^<]*)</time><', keys)
    assert created and all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", c) for c in created)
    missing = owner_client.get(f"/organization/audit-logs/{ObjectId()}")
    assert missing.status_code == 404
    assert 'href="/organization/audit-logs">Back to the audit log' in missing.get_data(True)


def test_a_keys_last_use_leads_to_its_requests_to_the_second(owner_client, api, org):
    """Last used is kept to the minute (to spare the database); the page says so and
    links it to the key's records in the audit log, which hold every use to the second."""
    assert api.get("/api/v1/workspaces", key=org.api_key).status_code == 200
    keys = owner_client.get("/organization/api-keys").get_data(as_text=True)
    assert "Last used is kept to the minute" in keys
    link = re.search(r'data-label="Last used"><a href="([^"]+)"', keys).group(1)
    assert link == f"/organization/audit-logs?apiKeyId={org.api_key_id}"
    listing = owner_client.get(link).get_data(as_text=True)
    assert listing.count("/api/v1/workspaces") >= 1
