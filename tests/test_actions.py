"""What a record says the request did: its action, what changed, why it failed, which
credential (PRODUCT.md, the audit record).

Table-driven over every verb of every resource, through the API and the web forms: each
gives its action and exactly the ``changes`` a reader needs (names, not only ids; what
was added and removed; a snapshot of what was deleted).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bson import ObjectId

from audit_app.audit.actions import known_actions, label
from audit_app.audit.capture.redaction import REDACTED

from .factories import Api
from .test_web_session import csrf_from, login

ROOT = Path(__file__).resolve().parent.parent
ANY = object()  # a value the test cannot know in advance (a date), present and not null


def record_of(db, response, action=None):
    """The record of a request (by its X-Request-Id), the first if it wrote two."""
    query = {"requestId": response.headers["X-Request-Id"]}
    if action:
        query["action"] = action
    record = db.audit_logs.find_one(query, sort=[("_id", 1)])
    assert record is not None, f"no record for {response.request.method} {response.request.path}"
    return record


def same(actual, expected) -> bool:
    if expected is ANY:
        return actual is not None
    if isinstance(expected, dict):
        return set(actual) == set(expected) and all(same(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    return actual == expected


def change(field, before, after, **extra):
    return {"field": field, "from": before, "to": after, **extra}


# The API, verb by verb --------------------------------------------------------------------


def _workspace_create(t):
    answer = t.api.post(
        "/api/v1/workspaces", as_=t.org.admin, json={"name": "Ops", "description": "on call"}
    )
    return (
        answer,
        "workspace.create",
        [change("name", None, "Ops"), change("description", None, "on call")],
    )


def _workspace_update(t):
    workspace = t.org.workspace
    answer = t.api.patch(
        f"/api/v1/workspaces/{workspace['_id']}", as_=t.org.admin, json={"name": "Renamed"}
    )
    return answer, "workspace.update", [change("name", workspace["name"], "Renamed")]


def _workspace_delete(t):
    workspace = t.org.other_workspace
    t.api.post(
        "/api/v1/pathways", as_=t.org.admin, workspace=workspace["_id"], json={"name": "Doomed"}
    )
    answer = t.api.delete(f"/api/v1/workspaces/{workspace['_id']}", as_=t.org.admin)
    return (
        answer,
        "workspace.delete",
        [change("name", workspace["name"], None), change("pathways", 1, None)],
    )


def _pathway_create(t):
    steps = [{"title": "Read the handbook"}]
    answer = t.api.post(
        "/api/v1/pathways",
        as_=t.org.admin,
        workspace=t.org.workspace["_id"],
        json={"name": "Onboarding", "steps": steps},
    )
    return (
        answer,
        "pathway.create",
        [
            change("name", None, "Onboarding"),
            change("steps", None, [{"title": "Read the handbook", "description": None}]),
        ],
    )


def _pathway(t, name="Existing"):
    made = t.api.post(
        "/api/v1/pathways", as_=t.org.admin, workspace=t.org.workspace["_id"], json={"name": name}
    )
    return made.get_json()["id"]


def _pathway_update(t):
    pathway_id = _pathway(t)
    answer = t.api.patch(
        f"/api/v1/pathways/{pathway_id}",
        as_=t.org.admin,
        workspace=t.org.workspace["_id"],
        json={"description": "Day one", "steps": [{"title": "Meet your buddy"}]},
    )
    return (
        answer,
        "pathway.update",
        [
            change("description", None, "Day one"),
            change("steps", [], [{"title": "Meet your buddy", "description": None}]),
        ],
    )


def _pathway_delete(t):
    pathway_id = _pathway(t, "Old")
    answer = t.api.delete(
        f"/api/v1/pathways/{pathway_id}", as_=t.org.admin, workspace=t.org.workspace["_id"]
    )
    return answer, "pathway.delete", [change("name", "Old", None)]


def _role_create(t):
    answer = t.api.post(
        "/api/v1/roles", as_=t.org.owner, json={"name": "Auditor", "permissions": ["viewAuditLog"]}
    )
    return (
        answer,
        "role.create",
        [
            change("name", None, "Auditor"),
            change("permissions", None, ["viewAuditLog"], added=["viewAuditLog"], removed=[]),
        ],
    )


def _role(t, permissions=("viewAuditLog",)):
    made = t.api.post(
        "/api/v1/roles", as_=t.org.owner, json={"name": "Support", "permissions": list(permissions)}
    )
    return made.get_json()["id"]


def _role_permissions(t):
    role_id = _role(t)
    answer = t.api.patch(
        f"/api/v1/roles/{role_id}",
        as_=t.org.owner,
        json={"permissions": ["viewMembers", "viewRoles"]},
    )
    before, after = ["viewAuditLog"], ["viewMembers", "viewRoles"]
    return (
        answer,
        "role.permissionsChange",
        [change("permissions", before, after, added=after, removed=before)],
    )


def _role_rename(t):
    role_id = _role(t)
    answer = t.api.patch(
        f"/api/v1/roles/{role_id}", as_=t.org.owner, json={"name": "Support staff"}
    )
    return answer, "role.update", [change("name", "Support", "Support staff")]


def _role_delete(t):
    role_id = _role(t)
    answer = t.api.delete(f"/api/v1/roles/{role_id}", as_=t.org.owner)
    return (
        answer,
        "role.delete",
        [
            change("name", "Support", None),
            change("permissions", ["viewAuditLog"], None, added=[], removed=["viewAuditLog"]),
        ],
    )


def _member_invite(t):
    role = t.org.roles["member"]
    answer = t.api.post(
        "/api/v1/members",
        as_=t.org.admin,
        json={"email": "New.Hire@Example.com", "roleId": str(role["_id"])},
    )
    return (
        answer,
        "member.invite",
        [
            change("email", None, "New.Hire@example.com"),
            change("role", None, "Member"),
            change("roleId", None, str(role["_id"])),
            change("expiresAt", None, ANY),
        ],
    )


def _invitation_revoke(t):
    made = t.api.post(
        "/api/v1/members",
        as_=t.org.admin,
        json={"email": "maybe@example.com", "roleId": str(t.org.roles["member"]["_id"])},
    )
    answer = t.api.delete(f"/api/v1/invitations/{made.get_json()['invitationId']}", as_=t.org.admin)
    return answer, "invitation.revoke", [change("revokedAt", None, ANY)]


def _invitation_accept(t):
    made = t.api.post(
        "/api/v1/members",
        as_=t.org.admin,
        json={"email": "joiner@example.com", "roleId": str(t.org.roles["admin"]["_id"])},
    )
    token = made.get_json()["acceptUrl"].rsplit("/", 1)[-1]
    answer = t.api.post(
        "/api/v1/invitations/accept", json={"token": token, "password": "a long new password"}
    )
    return (
        answer,
        "invitation.accept",
        [
            change("email", None, "joiner@example.com"),
            change("role", None, "Admin"),
            change("roleId", None, str(t.org.roles["admin"]["_id"])),
        ],
    )


def _member_role(t):
    admin, member = t.org.roles["admin"], t.org.roles["member"]
    answer = t.api.patch(
        f"/api/v1/members/{t.org.member.account_id}",
        as_=t.org.owner,
        json={"roleId": str(admin["_id"])},
    )
    return (
        answer,
        "member.roleChange",
        [
            change("role", "Member", "Admin"),
            change("roleId", str(member["_id"]), str(admin["_id"])),
        ],
    )


def _member_remove(t):
    answer = t.api.delete(f"/api/v1/members/{t.org.member.account_id}", as_=t.org.owner)
    return (
        answer,
        "member.remove",
        [
            change("email", t.org.member.email, None),
            change("role", "Member", None),
            change("roleId", str(t.org.roles["member"]["_id"]), None),
        ],
    )


def _key_create(t):
    answer = t.api.post(
        "/api/v1/api-keys",
        as_=t.org.admin,
        json={"name": "deploy", "workspaceId": str(t.org.workspace["_id"])},
    )
    return (
        answer,
        "apiKey.create",
        [
            change("name", None, "deploy"),
            change("role", None, "Member"),
            change("roleId", None, str(t.org.roles["member"]["_id"])),
            change("workspace", None, t.org.workspace["name"]),
            change("workspaceId", None, str(t.org.workspace["_id"])),
        ],
    )


def _key_revoke(t):
    answer = t.api.delete(f"/api/v1/api-keys/{t.org.api_key_id}", as_=t.org.admin)
    return answer, "apiKey.revoke", [change("revokedAt", None, ANY)]


def _organization_rename(t):
    answer = t.api.patch("/api/v1/organization", as_=t.org.owner, json={"name": "Acme 2"})
    return answer, "organization.update", [change("name", t.org.name, "Acme 2")]


API_CASES = {
    "workspace.create": _workspace_create,
    "workspace.update": _workspace_update,
    "workspace.delete": _workspace_delete,
    "pathway.create": _pathway_create,
    "pathway.update": _pathway_update,
    "pathway.delete": _pathway_delete,
    "role.create": _role_create,
    "role.permissionsChange": _role_permissions,
    "role.update": _role_rename,
    "role.delete": _role_delete,
    "member.invite": _member_invite,
    "invitation.revoke": _invitation_revoke,
    "invitation.accept": _invitation_accept,
    "member.roleChange": _member_role,
    "member.remove": _member_remove,
    "apiKey.create": _key_create,
    "apiKey.revoke": _key_revoke,
    "organization.update": _organization_rename,
}


class Trial:
    def __init__(self, app, org, db):
        self.app, self.org, self.db = app, org, db
        self.api = Api(app.test_client())


@pytest.mark.parametrize("case", API_CASES, ids=list(API_CASES))
def test_each_change_through_the_api_records_its_action_and_exact_changes(app, org, db, case):
    answer, action, expected = API_CASES[case](Trial(app, org, db))
    assert answer.status_code < 300, answer.get_json()
    record = record_of(db, answer)
    assert record["action"] == action
    assert same(record["changes"], expected), record["changes"]
    if answer.status_code == 201:  # the id of what it created
        created = answer.get_json()
        assert record["response"] == {"id": created.get("id") or created.get("invitationId")}
    else:
        assert record["response"] == {}


READS = [
    ("GET", "/api/v1/workspaces", "workspace.list"),
    ("GET", "/api/v1/members", "member.list"),
    ("GET", "/api/v1/roles", "role.list"),
    ("GET", "/api/v1/api-keys", "apiKey.list"),
    ("GET", "/api/v1/invitations", "invitation.list"),
    ("GET", "/api/v1/organization", "organization.view"),
    ("GET", "/api/v1/audit-logs", "auditLog.list"),
    ("GET", "/api/v1/audit-logs/integrity", "auditLog.viewIntegrity"),
    ("GET", "/api/v1/openapi.json", "apiDocs.view"),
    ("GET", "/api/v1/no-such-thing", "request.unmatched"),
]


@pytest.mark.parametrize(("method", "path", "action"), READS)
def test_reads_have_actions_and_no_changes(api, org, db, method, path, action):
    answer = api.call(method, path, as_=org.owner)
    record = record_of(db, answer)
    assert record["action"] == action and "changes" not in record


# Why it failed ----------------------------------------------------------------------------


FAILURES = [
    # (who, method, path, body, status, errorCode, words of the message)
    ("member", "POST", "/api/v1/workspaces", {"name": "x"}, 403, "forbidden", "manageWorkspaces"),
    ("admin", "POST", "/api/v1/workspaces", {}, 400, "bad_request", "name"),
    ("admin", "GET", f"/api/v1/workspaces/{ObjectId()}", None, 404, "not_found", "Workspace"),
    (
        "member",
        "PATCH",
        "/api/v1/organization",
        {"name": "x"},
        403,
        "forbidden",
        "manageOrganization",
    ),
    (None, "GET", "/api/v1/audit-logs", None, 401, "unauthorized", ""),
    ("admin", "DELETE", "/api/v1/openapi.json", None, 405, "method_not_allowed", "DELETE"),
]


@pytest.mark.parametrize(("who", "method", "path", "body", "status", "code", "words"), FAILURES)
def test_a_failed_request_records_the_error_the_client_saw(
    api, org, db, who, method, path, body, status, code, words
):
    person = getattr(org, who) if who else None
    answer = api.call(method, path, as_=person, json=body)
    assert answer.status_code == status
    seen = answer.get_json()["error"]
    record = record_of(db, answer)
    assert record["response"] == {"errorCode": seen["code"], "errorMessage": seen["message"]}
    assert seen["code"] == code and words in seen["message"]


def test_a_refused_change_records_its_attempted_action_and_no_changes(api, org, db):
    answer = api.delete(f"/api/v1/members/{org.owner.account_id}", as_=org.admin)
    assert answer.status_code == 403
    record = record_of(db, answer)
    assert record["action"] == "member.remove" and "changes" not in record
    assert record["response"]["errorCode"] == "forbidden"


def test_an_error_message_is_redacted_like_a_body(api, org, db):
    """A message that quotes what the client sent cannot carry a secret into the store:
    an API key sent as a field's name is echoed to the client, masked in the record (also
    behind the escape ``repr`` gives an invisible character before it)."""
    for name in (org.api_key, "\u200b" + org.api_key):
        answer = api.post("/api/v1/workspaces", as_=org.admin, json={"name": "x", name: 1})
        assert answer.status_code == 400 and org.api_key in answer.get_json()["error"]["message"]
        record = record_of(db, answer)
        assert record["response"]["errorCode"] == "bad_request"
        assert "Unknown field" in record["response"]["errorMessage"]
        assert org.api_key not in str(record)


def test_a_login_names_its_token_and_a_failed_one_says_why(api, org, db):
    good = api.post(
        "/api/v1/auth/token", json={"email": org.admin.email, "password": org.admin.password}
    )
    record = record_of(db, good)
    assert record["action"] == "session.login"
    assert re.fullmatch(r"jwt_[A-Za-z0-9_-]{16,64}", record["credentialId"])
    assert good.get_json()["token"] not in str(record)  # the name, never the credential
    bad = api.post("/api/v1/auth/token", json={"email": org.admin.email, "password": "wrong"})
    failed = record_of(db, bad)
    assert failed["action"] == "session.loginFailed"
    assert failed["accountId"] == org.admin.account_id and failed["credentialId"] is None
    assert failed["response"]["errorCode"] == "unauthorized"


# The credential --------------------------------------------------------------------------


def test_the_credential_filter_finds_exactly_one_tokens_records(app, org, db):
    """Two JWTs of the same person: 'everything done with this token' is one filter."""
    api = Api(app.test_client())

    def fresh_token():
        answer = api.post(
            "/api/v1/auth/token", json={"email": org.admin.email, "password": org.admin.password}
        )
        return answer.get_json()["token"], record_of(db, answer)["credentialId"]

    first, first_id = fresh_token()
    second, second_id = fresh_token()
    assert first_id != second_id
    mine = [api.get("/api/v1/workspaces", token=first) for _ in range(3)]
    theirs = [api.get("/api/v1/roles", token=second) for _ in range(2)]
    assert all(r.status_code == 200 for r in mine + theirs)
    found = api.get(
        "/api/v1/audit-logs", token=second, query_string={"q": f"credential:{first_id}"}
    ).get_json()["items"]
    expected = {r.headers["X-Request-Id"] for r in mine}
    assert {item["requestId"] for item in found} - {None} >= expected
    assert all(item["credentialId"] == first_id for item in found)
    # the login that issued the token carries its name too: 3 uses + the issue
    assert len(found) == 4 and {item["action"] for item in found} == {
        "workspace.list",
        "session.login",
    }


def test_api_keys_and_sessions_have_their_own_credential_ids(app, api, org, db):
    by_key = api.get("/api/v1/workspaces", key=org.api_key)
    assert record_of(db, by_key)["credentialId"] == f"key_{org.api_key_id}"
    client = app.test_client()
    logged_in = login(client, org.owner)
    session_id = record_of(db, logged_in)["credentialId"]
    assert re.fullmatch(r"ses_[0-9a-f]{24}", session_id)
    assert db.sessions.find_one({"_id": ObjectId(session_id[4:])}) is not None
    page = client.get("/organization/audit-logs")
    assert record_of(db, page)["credentialId"] == session_id
    cookie = client.get_cookie("session")
    assert cookie is None or cookie.value not in str(db.audit_logs.find_one({}))


def test_a_revoked_keys_later_attempts_carry_its_credential(api, org, db):
    """What else did this leaked key do, including after it was revoked?"""
    api.delete(f"/api/v1/api-keys/{org.api_key_id}", as_=org.admin)
    refused = api.get("/api/v1/workspaces", key=org.api_key)
    assert refused.status_code == 401
    assert record_of(db, refused)["credentialId"] == f"key_{org.api_key_id}"


# The web forms: the same services, the same records --------------------------------------


@pytest.fixture
def web(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


def _form(client, page, url, data):
    token = csrf_from(client.get(page).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data})


WEB_CASES = {
    "member.invite": lambda t: (
        _form(
            t.client,
            "/organization/members",
            "/organization/members",
            {"email": "web.hire@example.com", "roleId": str(t.org.roles["member"]["_id"])},
        ),
        [
            change("email", None, "web.hire@example.com"),
            change("role", None, "Member"),
            change("roleId", None, str(t.org.roles["member"]["_id"])),
            change("expiresAt", None, ANY),
        ],
    ),
    "member.roleChange": lambda t: (
        _form(
            t.client,
            "/organization/members",
            f"/organization/members/{t.org.member.account_id}",
            {"roleId": str(t.org.roles["admin"]["_id"])},
        ),
        [
            change("role", "Member", "Admin"),
            change("roleId", str(t.org.roles["member"]["_id"]), str(t.org.roles["admin"]["_id"])),
        ],
    ),
    "member.remove": lambda t: (
        _form(
            t.client,
            "/organization/members",
            f"/organization/members/{t.org.member.account_id}/remove",
            {"confirm": "yes"},
        ),
        [
            change("email", t.org.member.email, None),
            change("role", "Member", None),
            change("roleId", str(t.org.roles["member"]["_id"]), None),
        ],
    ),
    "role.create": lambda t: (
        _form(
            t.client,
            "/organization/roles",
            "/organization/roles",
            {"name": "Readers", "permissions": ["viewAuditLog"]},
        ),
        [
            change("name", None, "Readers"),
            change("permissions", None, ["viewAuditLog"], added=["viewAuditLog"], removed=[]),
        ],
    ),
    "role.permissionsChange": lambda t: (
        _form(
            t.client,
            "/organization/roles",
            f"/organization/roles/{t.org.roles['member']['_id']}",
            {"permissions": [*t.org.roles["member"]["permissions"], "viewAuditLog"]},
        ),
        [
            change(
                "permissions",
                sorted(t.org.roles["member"]["permissions"]),
                sorted([*t.org.roles["member"]["permissions"], "viewAuditLog"]),
                added=["viewAuditLog"],
                removed=[],
            )
        ],
    ),
    "apiKey.create": lambda t: (
        _form(
            t.client,
            "/organization/api-keys",
            "/organization/api-keys",
            {"name": "web key", "roleId": str(t.org.roles["member"]["_id"])},
        ),
        [
            change("name", None, "web key"),
            change("role", None, "Member"),
            change("roleId", None, str(t.org.roles["member"]["_id"])),
        ],
    ),
    "apiKey.revoke": lambda t: (
        _form(
            t.client,
            "/organization/api-keys",
            f"/organization/api-keys/{t.org.api_key_id}/revoke",
            {"confirm": "yes"},
        ),
        [change("revokedAt", None, ANY)],
    ),
    "account.passwordChange": lambda t: (
        _form(
            t.client,
            "/account/password",
            "/account/password",
            {
                "currentPassword": t.org.owner.password,
                "newPassword": "another long password",
                "confirmPassword": "another long password",
            },
        ),
        [change("password", REDACTED, REDACTED)],
    ),
}


@pytest.mark.parametrize("action", WEB_CASES, ids=list(WEB_CASES))
def test_each_web_form_records_the_same_action_and_changes(web, org, db, action):
    client = web.test_client()
    login(client, org.owner)
    trial = Trial(web, org, db)
    trial.client = client
    answer, expected = WEB_CASES[action](trial)
    assert answer.status_code in (200, 201, 302), answer.get_data(as_text=True)[:500]
    record = record_of(db, answer)
    assert record["action"] == action and record["authType"] == "session"
    assert same(record["changes"], expected), record["changes"]


def test_the_password_change_never_stores_either_password(web, org, db):
    client = web.test_client()
    login(client, org.owner)
    _form(
        client,
        "/account/password",
        "/account/password",
        {
            "currentPassword": org.owner.password,
            "newPassword": "another long password",
            "confirmPassword": "another long password",
        },
    )
    stored = str(list(db.audit_logs.find({})))
    assert org.owner.password not in stored and "another long password" not in stored


def test_web_login_logout_and_a_failed_login(web, org, db):
    client = web.test_client()
    failed = login(client, type(org.owner)(org.owner.email, "wrong password", None, ""))
    record = record_of(db, failed)
    assert record["action"] == "session.loginFailed"
    assert record["response"] == {
        "errorCode": "invalid_login",
        "errorMessage": "The email or password is incorrect.",
    }
    assert record_of(db, login(client, org.owner))["action"] == "session.login"
    out = _form(client, "/organization/audit-logs", "/logout", {})
    assert record_of(db, out)["action"] == "session.logout"


# The CLI ----------------------------------------------------------------------------------


def test_operator_commands_record_their_actions_and_changes(app, runner, db):
    made = runner.invoke(
        args=[
            "create-org",
            "Cli Co",
            "--owner-email",
            "boss@cli.example",
            "--owner-password",
            "a long password",
            "--json",
        ]
    )
    assert made.exit_code == 0, made.output
    record = db.audit_logs.find_one({"action": "organization.create"})
    assert record["authType"] == "cli"
    assert record["changes"] == [
        change("name", None, "Cli Co"),
        change("owner", None, "boss@cli.example"),
    ]
    assert record["response"] == {"id": str(record["organizationId"])}
    organization = str(record["organizationId"])
    runner.invoke(
        args=[
            "create-user",
            "--organization",
            organization,
            "--email",
            "two@cli.example",
            "--password",
            "a long password",
            "--role",
            "Admin",
        ]
    )
    added = db.audit_logs.find_one({"action": "member.add"})
    assert [c["to"] for c in added["changes"]][:2] == ["two@cli.example", "Admin"]


# Declared beside each view, documented in full --------------------------------------------


def test_every_recorded_view_declares_its_action(app):
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "health.healthz", "health.readyz", "web.home"):
            continue
        view = app.view_functions[rule.endpoint]
        recorded = (
            rule.rule.startswith("/api/")
            or bool((rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"})
            or getattr(view, "audited", False)
        )
        if recorded and not getattr(view, "audit_action", None):
            missing.append(rule.rule)
    assert missing == []


def test_the_schema_document_lists_every_action(app):
    text = (ROOT / "docs" / "audit-schema.md").read_text()
    section = text.split("## Actions", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z][A-Za-z]*\.[a-z][A-Za-z]*)` \|", section, re.M))
    assert documented == set(known_actions(app))


def test_actions_read_as_labels():
    assert label("apiKey.create") == "API key created"
    assert label("workspace.list") == "Workspaces listed"
    assert label("member.roleChange") == "Member's role changed"
    assert label("session.loginFailed") == "Login failed"
    assert label("auditLog.exportDigests") == "Audit log digests exported"
