"""Invitations: the only way an organization adds people, and the squatting they prevent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit_app.ids import utcnow

from .factories import PASSWORD, Person
from .test_web_session import csrf_from, login

VICTIM = "future.hire@acme.example"


def _token(invitation: dict) -> str:
    return invitation["acceptUrl"].rsplit("/", 1)[1]


def _invite(api, org, email, role="member", who=None):
    answer = api.post(
        "/api/v1/members",
        as_=who or org.owner,
        json={"email": email, "roleId": str(org.roles[role]["_id"])},
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def _token_for(client, email, password, organization_id=None):
    body = {"email": email, "password": password}
    if organization_id is not None:
        body["organizationId"] = str(organization_id)
    return client.post("/api/v1/auth/token", json=body)


def test_squatting_another_organization_cannot_plant_a_password(api, db, org, other_org):
    """Finding 1, end to end: Globex's owner tries to plant a password for Acme's hire."""
    planted = api.post(
        "/api/v1/members",
        as_=other_org.owner,
        json={
            "email": VICTIM,
            "password": "chosen-by-globex",
            "roleId": str(other_org.roles["member"]["_id"]),
        },
    )
    assert planted.status_code == 400 and planted.get_json()["error"]["field"] == "password"
    assert db.accounts.find_one({"emailLower": VICTIM}) is None
    # Globex holds its own link, and may create the account with its password through it...
    globex = _invite(api, other_org, VICTIM)
    accepted = api.client.post(
        "/api/v1/invitations/accept", json={"token": _token(globex), "password": "chosen-by-globex"}
    )
    assert accepted.status_code == 200
    # ...but Acme's invitation is accepted only by the person holding Acme's link, logged in
    acme = _invite(api, org, VICTIM, role="admin")
    anonymous = api.client.post(
        "/api/v1/invitations/accept", json={"token": _token(acme), "password": "another-one"}
    )
    assert anonymous.status_code == 401
    planted_token = _token_for(api.client, VICTIM, "chosen-by-globex").get_json()["token"]
    assert (
        _token_for(api.client, VICTIM, "chosen-by-globex", org.id).status_code == 403
    )  # not a member of Acme
    assert api.get("/api/v1/audit-logs", token=planted_token).status_code == 403
    assert api.get("/api/v1/members", token=planted_token).get_json()["items"][0]["email"] != (
        org.owner.email
    )
    account = db.accounts.find_one({"emailLower": VICTIM})
    assert db.memberships.find_one({"accountId": account["_id"], "organizationId": org.id}) is None


def test_inviting_does_not_tell_whether_an_account_exists(api, org, other_org):
    known = _invite(api, org, other_org.owner.email)
    unknown = _invite(api, org, "nobody@nowhere.example")
    assert (
        set(known)
        == set(unknown)
        == {
            "invitationId",
            "email",
            "roleId",
            "createdAt",
            "expiresAt",
            "acceptUrl",
        }
    )
    assert known["acceptUrl"].startswith("http://localhost/invitations/inv_")


def test_an_existing_account_accepts_logged_in_and_keeps_its_password(api, db, org, other_org):
    invitation = _invite(api, org, other_org.owner.email, role="admin")
    with_password = api.post(
        "/api/v1/invitations/accept",
        as_=other_org.owner,
        json={"token": _token(invitation), "password": "overwrite-attempt"},
    )
    assert (
        with_password.status_code == 400
        and with_password.get_json()["error"]["field"] == "password"
    )
    wrong = api.post(
        "/api/v1/invitations/accept", as_=org.member, json={"token": _token(invitation)}
    )
    assert (
        wrong.status_code == 403 and other_org.owner.email in wrong.get_json()["error"]["message"]
    )
    right = api.post(
        "/api/v1/invitations/accept", as_=other_org.owner, json={"token": _token(invitation)}
    )
    assert right.status_code == 200 and right.get_json()["accountCreated"] is False
    assert _token_for(api.client, other_org.owner.email, PASSWORD, org.id).status_code == 200
    assert _token_for(api.client, other_org.owner.email, "overwrite-attempt").status_code == 401
    again = api.post(
        "/api/v1/invitations/accept", as_=other_org.owner, json={"token": _token(invitation)}
    )
    assert again.status_code == 404  # single use


def test_a_new_account_chooses_its_password_when_accepting(api, db, org):
    invitation = _invite(api, org, "Newcomer@Corp.Local")
    short = api.client.post(
        "/api/v1/invitations/accept", json={"token": _token(invitation), "password": "short"}
    )
    assert short.status_code == 400 and short.get_json()["error"]["field"] == "password"
    answer = api.client.post(
        "/api/v1/invitations/accept", json={"token": _token(invitation), "password": "my chosen pw"}
    )
    assert answer.status_code == 200 and answer.get_json()["accountCreated"] is True
    token = _token_for(api.client, "newcomer@corp.local", "my chosen pw").get_json()["token"]
    members = api.get("/api/v1/members", token=token).get_json()["items"]
    assert any(m["email"] == "Newcomer@corp.local" for m in members)
    assert api.get("/api/v1/invitations", as_=org.owner).get_json()["items"] == []


def test_expired_and_revoked_invitations_cannot_be_accepted(api, db, org):
    expired = _invite(api, org, "late@acme.example")
    db.invitations.update_one(
        {"emailLower": "late@acme.example"},
        {"$set": {"expiresAt": utcnow() - timedelta(seconds=1)}},
    )
    revoked = _invite(api, org, "revoked@acme.example")
    pending = api.get("/api/v1/invitations", as_=org.admin).get_json()["items"]
    assert [i["email"] for i in pending] == ["revoked@acme.example"]
    assert (
        api.delete(f"/api/v1/invitations/{revoked['invitationId']}", as_=org.member).status_code
        == 403
    )
    assert (
        api.delete(f"/api/v1/invitations/{revoked['invitationId']}", as_=org.admin).status_code
        == 204
    )
    assert (
        api.delete(f"/api/v1/invitations/{revoked['invitationId']}", as_=org.admin).status_code
        == 404
    )
    for invitation in (expired, revoked):
        answer = api.client.post(
            "/api/v1/invitations/accept",
            json={"token": _token(invitation), "password": "whatever pw"},
        )
        assert answer.status_code == 404 and answer.get_json()["error"]["field"] == "token"
    assert (
        db.accounts.count_documents(
            {"emailLower": {"$in": ["late@acme.example", "revoked@acme.example"]}}
        )
        == 0
    )


def test_reinviting_replaces_the_pending_link(api, org):
    first = _invite(api, org, "twice@acme.example")
    second = _invite(api, org, "twice@acme.example")
    stale = api.client.post(
        "/api/v1/invitations/accept", json={"token": _token(first), "password": "pw-12345678"}
    )
    assert stale.status_code == 404
    fresh = api.client.post(
        "/api/v1/invitations/accept", json={"token": _token(second), "password": "pw-12345678"}
    )
    assert fresh.status_code == 200


def test_inviting_a_member_is_a_409_and_a_bad_email_a_400(api, org):
    taken = api.post(
        "/api/v1/members",
        as_=org.owner,
        json={"email": org.member.email.upper(), "roleId": str(org.roles["member"]["_id"])},
    )
    assert taken.status_code == 409
    bad = api.post(
        "/api/v1/members",
        as_=org.owner,
        json={"email": "not an email", "roleId": str(org.roles["member"]["_id"])},
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "email"


def test_a_removed_inviters_pending_invitations_are_revoked(api, org):
    invitation = _invite(api, org, "friend@acme.example", role="admin", who=org.admin)
    assert api.delete(f"/api/v1/members/{org.admin.account_id}", as_=org.owner).status_code == 204
    answer = api.client.post(
        "/api/v1/invitations/accept", json={"token": _token(invitation), "password": "pw-12345678"}
    )
    assert answer.status_code == 404


def test_invitation_tokens_never_reach_the_audit_log(make_app, api, db, org):
    web = make_app(WTF_CSRF_ENABLED=True)
    invitation = _invite(api, org, "paper.trail@acme.example")
    token = _token(invitation)
    client = web.test_client()
    page = client.get(f"/invitations/{token}")
    client.post(
        f"/invitations/{token}",
        data={
            "csrf_token": csrf_from(page.get_data(as_text=True)),
            "password": "paper-trail-pw",
            "confirmPassword": "paper-trail-pw",
        },
    )
    api.client.post("/api/v1/invitations/accept", json={"token": token, "password": "x" * 9})
    records = list(
        db.audit_logs.find(
            {"$or": [{"path": {"$regex": "invitations"}}, {"route": {"$regex": "invitations"}}]}
        )
    )
    assert len(records) == 3  # the page, its form, the API
    assert all(token not in repr(record) for record in db.audit_logs.find())
    page_records = [r for r in records if r["route"] == "/invitations/<token>"]
    assert page_records and all(r["organizationId"] == org.id for r in page_records)
    assert all(r["path"] == "/invitations/[REDACTED]" for r in page_records)


# The web page --------------------------------------------------------------------------


@pytest.fixture
def web(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


def test_an_existing_account_accepts_on_the_web_only_as_itself(web, api, db, org, other_org):
    invitation = _invite(api, org, other_org.owner.email, role="admin")
    path = f"/invitations/{_token(invitation)}"
    stranger = web.test_client()
    assert "Log in as" in stranger.get(path).get_data(as_text=True)
    wrong = web.test_client()
    login(wrong, org.member)
    page = wrong.get(path).get_data(as_text=True)
    assert "You are logged in as" in page
    refused = wrong.post(path, data={"csrf_token": csrf_from(page)})
    assert refused.status_code == 403
    right = web.test_client()
    assert login(right, other_org.owner, next_url=path).headers["Location"] == path
    page = right.get(path).get_data(as_text=True)
    assert "Accept and join" in page
    assert right.post(path, data={"csrf_token": csrf_from(page)}).status_code == 302
    assert db.memberships.find_one(
        {"accountId": other_org.owner.account_id, "organizationId": org.id}
    )


def test_an_account_without_organization_can_log_in_to_accept(web, api, db, org, other_org):
    lonely = Person("lonely@acme.example", "lonely-pass", None, "none")
    first = _invite(api, org, lonely.email)
    api.client.post(
        "/api/v1/invitations/accept", json={"token": _token(first), "password": lonely.password}
    )
    account = db.accounts.find_one({"emailLower": lonely.email})
    api.delete(f"/api/v1/members/{account['_id']}", as_=org.owner)
    second = _invite(api, other_org, lonely.email)
    path = f"/invitations/{_token(second)}"
    client = web.test_client()
    assert login(client, lonely).status_code == 401  # no organization: nothing to log in to
    assert login(client, lonely, next_url=path).status_code == 302
    page = client.get(path).get_data(as_text=True)
    assert client.post(path, data={"csrf_token": csrf_from(page)}).status_code == 302
    assert "Globex" in client.get("/").get_data(as_text=True)


# Found by an adversarial review --------------------------------------------------------


def test_a_demoted_inviter_cannot_get_back_in_through_a_pending_invitation(api, db, org, app):
    with app.app_context():
        from audit_app.organizations import service as access

        second = access.add_member_as_operator(
            org.id, "owner2@acme.example", PASSWORD, org.roles["owner"]
        )["account"]
    owner2 = Person("owner2@acme.example", PASSWORD, second["_id"], "owner")
    sock = _invite(api, org, "sock@evil.example", role="owner", who=owner2)
    api.patch(
        f"/api/v1/members/{owner2.account_id}",
        as_=org.owner,
        json={"roleId": str(org.roles["member"]["_id"])},
    )
    answer = api.client.post(
        "/api/v1/invitations/accept", json={"token": _token(sock), "password": "sock-puppet-pw"}
    )
    assert answer.status_code == 403 and "no longer grant" in answer.get_json()["error"]["message"]
    assert db.accounts.find_one({"emailLower": "sock@evil.example"}) is None


def test_an_invitation_token_in_a_referer_or_a_login_form_is_not_stored(make_app, api, db, org):
    web = make_app(WTF_CSRF_ENABLED=True)
    token = _token(_invite(api, org, "hire@acme.example", role="admin"))
    path = f"/invitations/{token}"
    client = web.test_client()
    page = client.get(path)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    client.post(
        path,
        data={
            "csrf_token": csrf_from(page.get_data(as_text=True)),
            "password": "one-password",
            "confirmPassword": "another-one",
        },
        headers={"Referer": f"http://localhost{path}"},
    )
    login_page = client.get(f"/login?next={path}")
    client.post(
        "/login",
        data={
            "email": org.member.email,
            "password": "wrong",
            "next": path,
            "csrf_token": csrf_from(login_page.get_data(as_text=True)),
        },
    )
    assert all(token not in repr(record) for record in db.audit_logs.find())


def test_a_lone_surrogate_in_a_token_or_password_is_no_500(api, db, org):
    invitation = _invite(api, org, "surrogate@acme.example")
    raw = '{"token": "inv_\\ud800", "password": "whatever-pw"}'
    answer = api.client.post(
        "/api/v1/invitations/accept", data=raw, content_type="application/json"
    )
    assert answer.status_code == 404
    login = api.client.post(
        "/api/v1/auth/token",
        data=f'{{"email": "{org.owner.email}", "password": "pw\\ud800"}}',
        content_type="application/json",
    )
    assert login.status_code == 401
    odd = f'{{"token": "{_token(invitation)}", "password": "odd-pw-\\ud800"}}'
    accepted = api.client.post(
        "/api/v1/invitations/accept", data=odd, content_type="application/json"
    )
    assert accepted.status_code == 200  # the password is kept as it was sent
    created = api.client.post(
        "/api/v1/auth/token",
        data='{"email": "surrogate@acme.example", "password": "odd-pw-\\ud800"}',
        content_type="application/json",
    )
    assert created.status_code == 200
