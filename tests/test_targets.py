"""Issue #24: records name what they acted on (``targets``) and whether they did it
(``outcome``); support finds everything done by or to a pasted id.

Written as support staff would use it: a customer says "someone changed my role"; support
pastes the customer's account id and must find the change done *to* them, and read it.
"""

from __future__ import annotations

import pytest
from bson import ObjectId

from audit_app.audit.actions import TARGETS, record_label, sentence

from .factories import PASSWORD


@pytest.fixture
def app(make_app):
    return make_app(AUDIT_STREAM_ALLOW_PRIVATE=True)


def _last(db, action=None, **query):
    if action is not None:
        query["action"] = action
    found = db.audit_logs.find_one(query, sort=[("_id", -1)])
    assert found is not None, query
    return found


def _targets(record):
    return [(t["type"], t["id"], t["name"]) for t in record["targets"]]


# Every action on an object names it ----------------------------------------------------


def test_every_change_through_the_api_names_its_targets(api, db, org):
    ws = api.post("/api/v1/workspaces", as_=org.admin, json={"name": "Ops"}).get_json()
    ws_id = ObjectId(ws["id"])
    rec = _last(db, "workspace.create")
    assert _targets(rec) == [("workspace", ws_id, "Ops")] and rec["outcome"] == "success"

    api.patch(f"/api/v1/workspaces/{ws_id}", as_=org.admin, json={"name": "Ops 2"})
    assert _targets(_last(db, "workspace.update")) == [("workspace", ws_id, "Ops")]

    pathway = api.post(
        "/api/v1/pathways", as_=org.admin, workspace=ws_id, json={"name": "Onboarding"}
    ).get_json()
    pathway_id = ObjectId(pathway["id"])
    assert _targets(_last(db, "pathway.create")) == [("pathway", pathway_id, "Onboarding")]
    api.delete(f"/api/v1/pathways/{pathway_id}", as_=org.admin, workspace=ws_id)
    assert _targets(_last(db, "pathway.delete")) == [("pathway", pathway_id, "Onboarding")]

    role = api.post(
        "/api/v1/roles", as_=org.owner, json={"name": "Auditors", "permissions": ["viewAuditLog"]}
    ).get_json()
    role_id = ObjectId(role["id"])
    assert _targets(_last(db, "role.create")) == [("role", role_id, "Auditors")]

    api.patch(
        f"/api/v1/members/{org.member.account_id}", as_=org.owner, json={"roleId": str(role_id)}
    )
    change = _last(db, "member.roleChange")
    assert _targets(change) == [
        ("member", org.member.account_id, org.member.email),
        ("role", role_id, "Auditors"),
    ]
    assert sentence(change) == (
        f"{org.member.email}'s role changed from Member to Auditors by {org.owner.email}"
    )

    invited = api.post(
        "/api/v1/members",
        as_=org.admin,
        json={"email": "new@acme.example", "roleId": str(org.roles["member"]["_id"])},
    ).get_json()
    invitation_id = ObjectId(invited["invitationId"])
    assert _targets(_last(db, "member.invite")) == [
        ("invitation", invitation_id, "new@acme.example"),
        ("role", org.roles["member"]["_id"], "Member"),
    ]
    api.delete(f"/api/v1/invitations/{invitation_id}", as_=org.admin)
    assert _targets(_last(db, "invitation.revoke")) == [
        ("invitation", invitation_id, "new@acme.example")
    ]

    key = api.post("/api/v1/api-keys", as_=org.admin, json={"name": "scripts"}).get_json()
    key_id = ObjectId(key["id"])
    assert _targets(_last(db, "apiKey.create")) == [("apiKey", key_id, "scripts")]
    api.delete(f"/api/v1/api-keys/{key_id}", as_=org.admin)
    assert _targets(_last(db, "apiKey.revoke")) == [("apiKey", key_id, "scripts")]

    api.patch("/api/v1/organization", as_=org.owner, json={"name": "Acme Two"})
    assert _targets(_last(db, "organization.update")) == [("organization", org.id, "Acme")]

    stream = api.post(
        "/api/v1/audit-streams",
        as_=org.admin,
        json={"name": "SIEM", "destination": {"type": "webhook", "url": "https://127.0.0.1:9/x"}},
    ).get_json()
    assert _targets(_last(db, "auditStream.create")) == [
        ("auditStream", ObjectId(stream["id"]), "SIEM")
    ]

    viewed = _last(db, "workspace.create")["_id"]
    api.get(f"/api/v1/audit-logs/{viewed}", as_=org.admin)
    assert _targets(_last(db, "auditLog.view")) == [("auditLog", viewed, None)]

    api.delete(f"/api/v1/members/{org.member.account_id}", as_=org.owner)
    assert _targets(_last(db, "member.remove")) == [
        ("member", org.member.account_id, org.member.email)
    ]
    api.delete(f"/api/v1/workspaces/{ws_id}", as_=org.admin)
    assert _targets(_last(db, "workspace.delete")) == [("workspace", ws_id, "Ops 2")]


def test_recorded_target_types_are_the_declared_ones(api, db, org):
    """What ``TARGETS`` declares per action (and docs/audit-schema.md shows) is what the
    records carry: every successful record's target types are among its action's."""
    test_every_change_through_the_api_names_its_targets(api, db, org)
    for record in db.audit_logs.find({"outcome": "success", "targets": {"$ne": []}}):
        declared = set(TARGETS.get(record["action"], ()))
        assert {t["type"] for t in record["targets"]} <= declared, record["action"]


def test_a_refused_request_names_the_target_its_path_names(api, db, org):
    role_id = org.roles["admin"]["_id"]
    answer = api.patch(f"/api/v1/roles/{role_id}", as_=org.member, json={"name": "X"})
    assert answer.status_code == 403
    record = _last(db, path=f"/api/v1/roles/{role_id}")
    assert record["outcome"] == "failure"
    assert _targets(record) == [("role", role_id, None)]
    assert record_label(record) == "Role update refused"
    conflict = {**record, "statusCode": 409, "response": {"errorCode": "conflict"}}
    assert record_label(conflict) == "Role update failed"
    refused = api.post("/api/v1/roles", as_=org.member, json={"name": "R", "permissions": []})
    assert refused.status_code == 403
    assert record_label(_last(db, path="/api/v1/roles")) == "Role creation refused"


def test_the_operator_s_commands_name_their_targets(app, db, org, runner):
    result = runner.invoke(
        args=[
            "create-user",
            "--organization",
            str(org.id),
            "--email",
            "cli@acme.example",
            "--password",
            "long enough password",
        ]
    )
    assert result.exit_code == 0, result.output
    record = _last(db, authType="cli", action="member.add")
    account = db.accounts.find_one({"emailLower": "cli@acme.example"})
    assert _targets(record) == [("member", account["_id"], "cli@acme.example")]
    assert record["outcome"] == "success"


# Honest outcomes and labels --------------------------------------------------------------


def test_a_login_records_the_credential_it_opened_and_a_failed_one_none(make_app, db, org):
    from .test_web_session import login

    app = make_app()
    client = app.test_client()
    client.post("/api/v1/auth/token", json={"email": org.admin.email, "password": PASSWORD})
    ok = _last(db, "session.login")
    assert ok["authType"] == "jwt" and ok["outcome"] == "success"
    client.post("/api/v1/auth/token", json={"email": org.admin.email, "password": "wrong-one"})
    failed = _last(db, "session.loginFailed")
    assert failed["authType"] == "none" and failed["outcome"] == "failure"
    login(app.test_client(), org.member)
    web = _last(db, "session.login", accountId=org.member.account_id, method="POST")
    assert web["authType"] == "session"


def test_opening_an_invitation_is_not_accepting_it(api, db, org):
    invited = api.post(
        "/api/v1/members",
        as_=org.admin,
        json={"email": "new@acme.example", "roleId": str(org.roles["member"]["_id"])},
    ).get_json()
    token = invited["acceptUrl"].rsplit("/", 1)[1]
    assert api.client.get(f"/invitations/{token}").status_code == 200
    opened = _last(db, path="/invitations/[REDACTED]")
    assert opened["action"] == "invitation.open"
    assert record_label(opened) == "Invitation opened"


def test_every_auth_type_a_record_holds_is_a_filter(api, db, org, runner):
    runner.invoke(args=["create-api-key", "--organization", str(org.id), "--name", "cli key"])
    answer = api.get("/api/v1/audit-logs?authType=cli", as_=org.admin)
    assert answer.status_code == 200, answer.get_json()
    items = answer.get_json()["items"]
    assert items and {i["authType"] for i in items} == {"cli"}
    for value in ("jwt", "apiKey", "session", "none"):
        assert api.get(f"/api/v1/audit-logs?authType={value}", as_=org.admin).status_code == 200


# The request id where a user can give it to support ---------------------------------------


def test_every_json_error_carries_the_request_id_that_finds_its_record(api, db, org):
    answer = api.get(f"/api/v1/workspaces/{ObjectId()}", as_=org.admin)
    assert answer.status_code == 404
    request_id = answer.get_json()["error"]["requestId"]
    assert request_id == answer.headers["X-Request-Id"]
    found = api.get(f"/api/v1/audit-logs?q=requestId:{request_id}", as_=org.admin).get_json()
    assert [i["requestId"] for i in found["items"]] == [request_id]
    assert found["items"][0]["outcome"] == "failure"
    for path in ("/api/v1/nothing-here", "/api/v1/members"):
        body = api.client.get(path).get_json()
        assert body["error"]["requestId"], path


def test_an_error_page_shows_the_request_id(make_app, org):
    from .test_web_session import login

    client = make_app().test_client()
    login(client, org.admin)
    answer = client.get(f"/organization/audit-logs/{ObjectId()}")
    assert answer.status_code == 404
    assert answer.headers["X-Request-Id"] in answer.get_data(as_text=True)


# Search by target --------------------------------------------------------------------------


def _customer_story(api, org):
    """The member does a few things; the Owner changes their role; others act elsewhere."""
    api.get("/api/v1/workspaces", as_=org.member)
    api.patch(
        f"/api/v1/members/{org.member.account_id}",
        as_=org.owner,
        json={"roleId": str(org.roles["admin"]["_id"])},
    )
    api.get("/api/v1/workspaces", as_=org.admin)


def test_a_pasted_account_id_finds_what_was_done_to_it_and_by_it(api, db, org):
    _customer_story(api, org)
    items = api.get(f"/api/v1/audit-logs?q={org.member.account_id}", as_=org.admin).get_json()[
        "items"
    ]
    assert items[0]["action"] == "member.roleChange"
    assert items[0]["matchedAs"] == ["target"]
    assert items[0]["accountId"] == str(org.owner.account_id)  # by the Owner, to the member
    by_member = [i for i in items if i["accountId"] == str(org.member.account_id)]
    assert by_member and all("actor" in i["matchedAs"] for i in by_member)
    assert all(i["accountId"] != str(org.admin.account_id) for i in items)
    # accountId= keeps its meaning: the actor only
    actor_only = api.get(
        f"/api/v1/audit-logs?accountId={org.member.account_id}", as_=org.admin
    ).get_json()["items"]
    assert "member.roleChange" not in {i["action"] for i in actor_only}


def test_the_target_qualifier_alone_and_combined(api, db, org):
    _customer_story(api, org)
    only = api.get(
        f"/api/v1/audit-logs?q=target:{org.member.account_id}", as_=org.admin
    ).get_json()["items"]
    assert [i["action"] for i in only] == ["member.roleChange"]
    assert only[0]["matchedAs"] == ["target"]
    combined = api.get(
        f"/api/v1/audit-logs?q=target:{org.member.account_id} action:member.remove",
        as_=org.admin,
    ).get_json()["items"]
    assert combined == []
    bad = api.get("/api/v1/audit-logs?q=target:nope", as_=org.admin)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "q"


def test_a_target_search_pages_with_its_cursor(api, db, org):
    for name in ("a", "b", "c"):
        api.patch(f"/api/v1/workspaces/{org.workspace['_id']}", as_=org.admin, json={"name": name})
    first = api.get(
        f"/api/v1/audit-logs?q=target:{org.workspace['_id']}&limit=2", as_=org.admin
    ).get_json()
    assert len(first["items"]) == 2 and first["nextCursor"]
    rest = api.get(
        f"/api/v1/audit-logs?q=target:{org.workspace['_id']}&limit=2&cursor={first['nextCursor']}",
        as_=org.admin,
    ).get_json()
    seen = [i["id"] for i in first["items"] + rest["items"]]
    assert len(seen) == len(set(seen)) >= 3


def test_another_organization_cannot_find_records_by_its_ids_in_mine(api, db, org, other_org):
    _customer_story(api, org)
    theirs = api.get(
        f"/api/v1/audit-logs?q={org.member.account_id}", as_=other_org.owner
    ).get_json()["items"]
    assert theirs == []


def test_an_old_record_without_targets_still_lists_and_exports(api, db, org):
    from .factories import audit_record

    old = audit_record(org.id, statusCode=403)
    old.pop("targets", None)
    old.pop("outcome", None)
    db.audit_logs.insert_one(old)
    items = api.get("/api/v1/audit-logs", as_=org.admin).get_json()["items"]
    shown = next(i for i in items if i["id"] == str(old["_id"]))
    assert shown["targets"] == [] and shown["outcome"] == "failure"
    export = api.get("/api/v1/audit-logs/export?format=ndjson", as_=org.admin)
    assert export.status_code == 200 and str(old["_id"]) in export.get_data(as_text=True)


def test_view_details_reads_as_a_sentence_and_links_each_timeline(make_app, mongo, org):
    from .factories import Api
    from .test_web_session import login

    app = make_app()
    api = Api(app.test_client())
    _customer_story(api, org)
    change = _last(mongo["audit_app"], "member.roleChange")
    client = app.test_client()
    login(client, org.admin)
    page = client.get(f"/organization/audit-logs/{change['_id']}").get_data(as_text=True)
    assert (
        f"{org.member.email}&#39;s role changed from Member to Admin by {org.owner.email}" in page
    )
    assert f"q={org.member.account_id}" in page  # the member's timeline, one click
    listing = client.get(f"/organization/audit-logs?q={org.member.account_id}").get_data(
        as_text=True
    )
    assert "acted on it" in listing and "by it" in listing


def test_the_schema_document_lists_each_action_s_targets():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "audit-schema.md").read_text()
    section = text.split("## Targets\n", 1)[1].split("\n## ", 1)[0]
    documented = {
        action: tuple(re.findall(r"`([a-zA-Z]+)`", kinds))
        for action, kinds in re.findall(
            r"^\| `([a-z][A-Za-z]*\.[a-z][A-Za-z]*)` \|(.*)\|$", section, re.M
        )
    }
    assert documented == TARGETS


# Exports an auditor can read ---------------------------------------------------------------


def test_the_csv_export_reads_as_what_happened_and_can_leave_details_out(api, db, org):
    import csv
    import io

    api.patch(
        f"/api/v1/members/{org.member.account_id}",
        as_=org.owner,
        json={"roleId": str(org.roles["admin"]["_id"])},
    )
    api.patch(f"/api/v1/roles/{org.roles['admin']['_id']}", as_=org.member, json={"name": "X"})
    answer = api.get("/api/v1/audit-logs/export?format=csv&details=false", as_=org.admin)
    assert answer.status_code == 200
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert "request" not in rows[0] and {"label", "outcome", "targets"} <= set(rows[0])
    change = next(r for r in rows if r["action"] == "member.roleChange")
    assert change["label"] == "Member's role changed" and change["outcome"] == "success"
    assert change["targets"] == (
        f"member:{org.member.email} ({org.member.account_id}), "
        f"role:Admin ({org.roles['admin']['_id']})"
    )
    refused = next(r for r in rows if r["action"] == "role.update")
    assert refused["label"] == "Role update refused" and refused["outcome"] == "failure"
    full = api.get("/api/v1/audit-logs/export?format=csv", as_=org.admin)
    assert "request" in full.get_data(as_text=True).splitlines()[0]
    assert (
        api.get("/api/v1/audit-logs/export?format=csv&details=maybe", as_=org.admin).status_code
        == 400
    )


def test_ocsf_and_cef_carry_the_targets(api, db, org):
    from audit_app.streams.formats import ocsf, render

    api.patch(
        f"/api/v1/members/{org.member.account_id}",
        as_=org.owner,
        json={"roleId": str(org.roles["admin"]["_id"])},
    )
    record = _last(db, "member.roleChange")
    event = ocsf(record)
    assert {"uid": str(org.member.account_id), "type": "member", "name": org.member.email} in (
        event["resources"]
    )
    assert f"cs6Label=targets cs6=member:{org.member.email}" in render("cef", record)
    assert json_targets(render("json", record)) == [
        {"type": "member", "id": str(org.member.account_id), "name": org.member.email},
        {"type": "role", "id": str(org.roles["admin"]["_id"]), "name": "Admin"},
    ]


def json_targets(text):
    import json

    return json.loads(text)["targets"]


def test_a_web_form_names_the_same_targets_and_a_refused_one_fails(make_app, mongo, org):
    from .test_web_session import csrf_from, login

    app = make_app()
    db = mongo["audit_app"]
    browser = app.test_client()
    login(browser, org.owner)
    token = csrf_from(browser.get("/organization/members").get_data(as_text=True))
    browser.post(
        f"/organization/members/{org.member.account_id}",
        data={"roleId": str(org.roles["admin"]["_id"]), "csrf_token": token},
    )
    change = _last(db, "member.roleChange")
    assert change["authType"] == "session" and change["outcome"] == "success"
    assert _targets(change) == [
        ("member", org.member.account_id, org.member.email),
        ("role", org.roles["admin"]["_id"], "Admin"),
    ]
    # the last Owner cannot be demoted: the form answers with a redirect and a message, and
    # the record says it failed although its status is not an error
    browser.post(
        f"/organization/members/{org.owner.account_id}",
        data={"roleId": str(org.roles["member"]["_id"]), "csrf_token": token},
    )
    refused = _last(
        db,
        "member.roleChange",
        accountId=org.owner.account_id,
        path=(f"/organization/members/{org.owner.account_id}"),
    )
    assert refused["statusCode"] < 400 and refused["outcome"] == "failure"
    assert _targets(refused) == [("member", org.owner.account_id, None)]
