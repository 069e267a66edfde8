"""Review of issue #24 (targets, outcome, search by target), written as an attacker or an
auditor relying on the log. Each test fails on the code as shipped."""

from __future__ import annotations

from bson import ObjectId

from audit_app.audit.actions import record_label


def _last(db, **query):
    found = db.audit_logs.find_one(query, sort=[("_id", -1)])
    assert found is not None, query
    return found


# Search -----------------------------------------------------------------------------------


def test_a_pasted_id_and_a_target_qualifier_find_a_record_that_acted_on_both(api, db, org):
    """Support pastes the member's id and narrows with ``target:<role>``: "when was this
    member given Admin?". The role change names both the member and the role as targets,
    so it matches the pasted id (a target) and the qualifier (a target), yet it is not
    found: the branch for the pasted id as a target is dropped when ``target:`` is set."""
    admin_role = org.roles["admin"]["_id"]
    answer = api.patch(
        f"/api/v1/members/{org.member.account_id}", as_=org.owner, json={"roleId": str(admin_role)}
    )
    assert answer.status_code == 200
    change = _last(db, action="member.roleChange")
    assert {t["id"] for t in change["targets"]} == {org.member.account_id, admin_role}

    found = api.get(
        f"/api/v1/audit-logs?q={org.member.account_id} target:{admin_role}", as_=org.admin
    ).get_json()["items"]
    assert str(change["_id"]) in [i["id"] for i in found]


def test_an_excluded_target_qualifier_excludes_or_is_refused(api, db, org):
    """PRODUCT.md: a qualifier preceded by ``-`` excludes. ``-target:<id>`` is silently taken
    as path text (a search that finds nothing) instead of excluding or being a 400."""
    api.patch(f"/api/v1/workspaces/{org.workspace['_id']}", as_=org.admin, json={"name": "n"})
    api.get("/api/v1/workspaces", as_=org.admin)
    answer = api.get(f"/api/v1/audit-logs?q=-target:{org.workspace['_id']}", as_=org.admin)
    if answer.status_code == 400:
        return
    items = answer.get_json()["items"]
    assert items, "an exclusion that keeps nothing: it was searched as path text"
    assert all(all(t["id"] != str(org.workspace["_id"]) for t in i["targets"]) for i in items)


# Honest outcomes and labels ----------------------------------------------------------------


def test_an_export_that_did_not_complete_is_not_recorded_as_a_success(api, db, org):
    """The client goes away after the first block: ``auditLog.exportEnded`` says
    ``interrupted`` in its details, but its ``outcome`` (what a filter on failures and the
    UI use) says ``success``."""
    from .factories import audit_record

    db.audit_logs.insert_many(audit_record(org.id, path=f"/api/v1/x/{i}") for i in range(300))
    cut = api.get("/api/v1/audit-logs/export?format=csv", as_=org.admin, buffered=False)
    next(iter(cut.response))
    cut.close()
    ended = _last(db, action="auditLog.exportEnded")
    assert ended["request"]["export"]["outcome"] == "interrupted"
    assert ended["outcome"] == "failure"


def test_a_refusal_reads_as_refused_in_the_web_form_as_in_the_api(make_app, mongo, org):
    """The same refusal (an Admin may not give the Owner role, errorCode ``forbidden``)
    reads "Member role change refused" through the API but "... failed" through the
    Members page, whose refusal is a redirect: the label is chosen by status code only."""
    from .factories import Api
    from .test_web_session import csrf_from, login

    app = make_app()
    db = mongo["audit_app"]
    owner_role = str(org.roles["owner"]["_id"])
    api = Api(app.test_client())
    assert (
        api.patch(
            f"/api/v1/members/{org.member.account_id}", as_=org.admin, json={"roleId": owner_role}
        ).status_code
        == 403
    )
    by_api = _last(db, action="member.roleChange")
    browser = app.test_client()
    login(browser, org.admin)
    token = csrf_from(browser.get("/organization/members").get_data(as_text=True))
    browser.post(
        f"/organization/members/{org.member.account_id}",
        data={"roleId": owner_role, "csrf_token": token},
    )
    by_form = _last(db, action="member.roleChange")
    assert by_form["_id"] != by_api["_id"]
    assert by_form["response"]["errorCode"] == by_api["response"]["errorCode"] == "forbidden"
    assert record_label(by_api) == "Member role change refused"
    assert record_label(by_form) == record_label(by_api)


def test_a_refused_invitation_acceptance_names_its_target_without_a_name(
    make_app, mongo, org, other_org
):
    """docs/audit-schema.md: "A refused request names what its path names (an id, no
    name)". Someone logged in as another account posts the acceptance form of Globex's
    invitation: refused (403), but the record names the invitation by the invited email,
    and says the invited person (not who was logged in) was the actor."""
    from .factories import Api
    from .test_web_session import csrf_from, login

    app = make_app()
    db = mongo["audit_app"]
    api = Api(app.test_client())
    invited = api.post(
        "/api/v1/members",
        as_=other_org.owner,
        json={"email": org.member.email, "roleId": str(other_org.roles["member"]["_id"])},
    ).get_json()
    token = invited["acceptUrl"].rsplit("/", 1)[1]
    browser = app.test_client()
    login(browser, org.admin)  # not the invited account
    csrf = csrf_from(browser.get(f"/invitations/{token}").get_data(as_text=True))
    answer = browser.post(f"/invitations/{token}", data={"csrf_token": csrf})
    assert answer.status_code == 403
    refused = _last(db, action="invitation.accept")
    assert refused["outcome"] == "failure"
    assert all(t["name"] is None for t in refused["targets"]), refused["targets"]
    assert refused["accountEmail"] != org.member.email  # org.admin tried, not the invitee


def test_cross_tenant_ids_in_paths_are_recorded_without_names(api, db, org, other_org):
    """Held (kept as a guard): another tenant's ids in paths leave only ids, and a search
    by them in my log finds only my own refused requests."""
    theirs = other_org.workspace["_id"]
    assert (
        api.patch(f"/api/v1/workspaces/{theirs}", as_=org.admin, json={"name": "x"}).status_code
        == 404
    )
    record = _last(db, path=f"/api/v1/workspaces/{theirs}")
    assert record["organizationId"] == org.id
    assert [(t["type"], t["id"], t["name"]) for t in record["targets"]] == [
        ("workspace", theirs, None)
    ]
    found = api.get(f"/api/v1/audit-logs?q=target:{theirs}", as_=org.admin).get_json()["items"]
    assert {i["organizationId"] for i in found} == {str(org.id)}
    assert (
        api.get(f"/api/v1/audit-logs?q=target:{ObjectId()}", as_=org.admin).get_json()["items"]
        == []
    )
