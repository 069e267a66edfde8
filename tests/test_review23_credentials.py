"""Issue #23, findings 5, 9 and 13: what a credential creates dies with it.

Written as the attacker who stole a credential (an Admin's API key, JWT or session) and used
it to create a way back in (an invitation to themselves, another key), and as the victim and
the operator who respond. Judged by effect: can the attacker still get in afterwards?
"""

from __future__ import annotations

import json

import pytest

from audit_app.ids import utcnow

from .factories import PASSWORD
from .test_web_session import csrf_from, login

ATTACKER = "attacker@evil.example"


def _token_of(invitation: dict) -> str:
    return invitation["acceptUrl"].rsplit("/", 1)[1]


def _invite(api, org, email=ATTACKER, role="admin", **who):
    answer = api.post(
        "/api/v1/members", json={"email": email, "roleId": str(org.roles[role]["_id"])}, **who
    )
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def _accept_as_new_account(client, invitation):
    return client.post(
        "/api/v1/invitations/accept",
        json={"token": _token_of(invitation), "password": "attacker-pass-123"},
    )


def _admin_key(api, org, name="scripts"):
    """A key the Admin made with their JWT: the one the attacker steals."""
    made = api.post(
        "/api/v1/api-keys",
        as_=org.admin,
        json={"name": name, "roleId": str(org.roles["admin"]["_id"])},
    )
    assert made.status_code == 201, made.get_json()
    return made.get_json()


def _is_member(db, org, email):
    account = db.accounts.find_one({"emailLower": email})
    return bool(
        account and db.memberships.find_one({"accountId": account["_id"], "organizationId": org.id})
    )


def _changes(db, action):
    record = db.audit_logs.find_one({"action": action}, sort=[("createdAt", -1)])
    assert record is not None, action
    return {c["field"]: c for c in record.get("changes", [])}


# Finding 5: an invitation outlives the credential that sent it ----------------------------


def test_an_invitation_sent_with_a_stolen_key_dies_when_the_key_is_revoked(api, db, org):
    key = _admin_key(api, org)
    invitation = _invite(api, org, key=key["key"])  # the attacker invites themselves
    revoked = api.delete(f"/api/v1/api-keys/{key['id']}", as_=org.owner)
    assert revoked.status_code in (200, 204)
    accepted = _accept_as_new_account(api.client, invitation)
    assert accepted.status_code == 404, accepted.get_json()  # revoked: no longer pending
    assert not _is_member(db, org, ATTACKER)
    stored = db.invitations.find_one(
        {"_id": __import__("bson").ObjectId(invitation["invitationId"])}
    )
    assert stored["revokedAt"] is not None and stored["revokedReason"] == "apiKeyRevoked"
    # the key's revocation says what went with it
    assert _changes(db, "apiKey.revoke")["invitationsRevoked"]["to"] == 1


def test_an_invitation_is_refused_when_its_key_was_revoked_behind_its_back(api, db, org):
    """The key revoked by a path that forgot the invitation (an older version, a hand edit
    of the keys collection): acceptance checks the sending key itself."""
    key = _admin_key(api, org)
    invitation = _invite(api, org, key=key["key"])
    db.api_keys.update_one(
        {"_id": __import__("bson").ObjectId(key["id"])}, {"$set": {"revokedAt": utcnow()}}
    )
    accepted = _accept_as_new_account(api.client, invitation)
    assert accepted.status_code == 403
    assert "API key that sent it was revoked" in accepted.get_json()["error"]["message"]
    assert not _is_member(db, org, ATTACKER)
    assert db.invitations.find_one({"email": ATTACKER})["revokedReason"] == "apiKeyRevoked"


def test_a_key_made_with_a_stolen_key_dies_with_it_and_so_do_its_invitations(api, db, org):
    stolen = _admin_key(api, org)
    made = api.post(
        "/api/v1/api-keys",
        key=stolen["key"],
        json={"name": "backdoor", "roleId": str(org.roles["admin"]["_id"])},
    ).get_json()
    grandchild = api.post(
        "/api/v1/api-keys",
        key=made["key"],
        json={"name": "backdoor2", "roleId": str(org.roles["admin"]["_id"])},
    ).get_json()
    invitation = _invite(api, org, key=grandchild["key"])
    assert api.get("/api/v1/members", key=grandchild["key"]).status_code == 200
    api.delete(f"/api/v1/api-keys/{stolen['id']}", as_=org.owner)
    assert api.get("/api/v1/members", key=made["key"]).status_code == 401
    assert api.get("/api/v1/members", key=grandchild["key"]).status_code == 401
    assert _accept_as_new_account(api.client, invitation).status_code == 404
    assert not _is_member(db, org, ATTACKER)
    assert _changes(db, "apiKey.revoke")["keysRevoked"]["to"] == sorted(
        [made["id"], grandchild["id"]]
    ) or set(_changes(db, "apiKey.revoke")["keysRevoked"]["to"]) == {
        made["id"],
        grandchild["id"],
    }


def test_an_invitation_sent_with_a_stolen_jwt_dies_with_a_password_change(api, db, org):
    stolen_jwt = api.token(org.admin)
    invitation = _invite(api, org, token=stolen_jwt)
    changed = api.post(
        "/api/v1/auth/password",
        as_=org.admin,
        json={"currentPassword": PASSWORD, "newPassword": "a-brand-new-password"},
    )
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["invitationsRevoked"] == 1
    assert api.get("/api/v1/members", token=stolen_jwt).status_code == 401
    assert _accept_as_new_account(api.client, invitation).status_code == 404
    assert not _is_member(db, org, ATTACKER)
    assert db.invitations.find_one({"email": ATTACKER})["revokedReason"] == "passwordChanged"


def test_an_invitation_is_refused_when_its_sender_password_changed_behind_its_back(api, db, org):
    invitation = _invite(api, org, as_=org.admin)
    db.accounts.update_one({"_id": org.admin.account_id}, {"$inc": {"credentialVersion": 1}})
    accepted = _accept_as_new_account(api.client, invitation)
    assert accepted.status_code == 403
    assert "password changed" in accepted.get_json()["error"]["message"]
    assert not _is_member(db, org, ATTACKER)


def test_an_invitation_sent_with_a_stolen_session_dies_with_a_password_change(make_app, mongo, org):
    app = make_app(WTF_CSRF_ENABLED=True)
    thief = app.test_client()
    login(thief, org.admin)
    page = thief.get("/organization/members").get_data(as_text=True)
    sent = thief.post(
        "/organization/members",
        data={
            "email": ATTACKER,
            "roleId": str(org.roles["admin"]["_id"]),
            "csrf_token": csrf_from(page),
        },
    )
    assert sent.status_code == 201, sent.status_code
    db = mongo["audit_app"]
    stored = db.invitations.find_one({"email": ATTACKER})
    assert stored["invitedBy"]["credentialId"].startswith("ses_")
    victim = app.test_client()
    login(victim, org.admin)
    form = victim.get("/account/password").get_data(as_text=True)
    changed = victim.post(
        "/account/password",
        data={
            "currentPassword": PASSWORD,
            "newPassword": "a-brand-new-password",
            "confirmPassword": "a-brand-new-password",
            "csrf_token": csrf_from(form),
        },
    )
    assert changed.status_code == 302
    assert db.invitations.find_one({"email": ATTACKER})["revokedReason"] == "passwordChanged"


def test_invitations_of_a_live_credential_still_work(api, db, org):
    key = _admin_key(api, org)
    by_key = _invite(api, org, email="one@new.example", key=key["key"])
    by_jwt = _invite(api, org, email="two@new.example", as_=org.admin)
    assert _accept_as_new_account(api.client, by_key).status_code == 200
    assert _accept_as_new_account(api.client, by_jwt).status_code == 200


# Finding 9: keys minted with a stolen credential survive logout and password change ------


def test_password_change_can_revoke_every_key_and_invitation_the_person_created(api, db, org):
    key = _admin_key(api, org)  # made with the (stolen) JWT
    by_key = _invite(api, org, email="one@new.example", key=key["key"])
    answer = api.post(
        "/api/v1/auth/password",
        as_=org.admin,
        json={
            "currentPassword": PASSWORD,
            "newPassword": "a-brand-new-password",
            "revokeCreated": True,
        },
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["apiKeysRevoked"] == 1 and body["invitationsRevoked"] == 1
    assert body["byOrganization"] == {str(org.id): {"apiKeys": 1, "invitations": 1}}
    assert api.get("/api/v1/members", key=key["key"]).status_code == 401
    assert _accept_as_new_account(api.client, by_key).status_code == 404
    changes = _changes(db, "account.passwordChange")
    assert changes["keysRevoked"]["to"] == 1 and changes["invitationsRevoked"]["to"] == 1
    assert changes["password"]["to"] != "a-brand-new-password"  # masked


def test_a_plain_password_change_keeps_the_keys_and_what_they_sent(api, db, org):
    key = _admin_key(api, org)
    by_key = _invite(api, org, email="one@new.example", key=key["key"])
    answer = api.post(
        "/api/v1/auth/password",
        as_=org.admin,
        json={"currentPassword": PASSWORD, "newPassword": "a-brand-new-password"},
    )
    assert answer.get_json()["apiKeysRevoked"] == 0
    assert api.get("/api/v1/members", key=key["key"]).status_code == 200
    assert _accept_as_new_account(api.client, by_key).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"currentPassword": "wrong-password", "newPassword": "a-brand-new-password"},
            "currentPassword",
        ),
        ({"currentPassword": PASSWORD, "newPassword": "short"}, "newPassword"),
        (
            {"currentPassword": PASSWORD, "newPassword": "long-enough-1", "revokeCreated": "yes"},
            "revokeCreated",
        ),
        ({"newPassword": "a-brand-new-password"}, "currentPassword"),
    ],
)
def test_password_change_api_refuses_bad_input_and_changes_nothing(api, db, org, body, field):
    answer = api.post("/api/v1/auth/password", as_=org.admin, json=body)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == field
    assert api.get("/api/v1/members", as_=org.admin).status_code == 200  # JWT still valid


def test_an_api_key_cannot_change_a_password(api, org):
    key = _admin_key(api, org)
    answer = api.post(
        "/api/v1/auth/password",
        key=key["key"],
        json={"currentPassword": PASSWORD, "newPassword": "a-brand-new-password"},
    )
    assert answer.status_code == 403


def test_the_password_page_offers_to_revoke_what_the_person_created(make_app, mongo, org):
    app = make_app(WTF_CSRF_ENABLED=True)
    from .factories import Api

    api = Api(app.test_client())
    key = _admin_key(api, org)
    browser = app.test_client()
    login(browser, org.admin)
    form = browser.get("/account/password").get_data(as_text=True)
    assert 'name="revokeCreated"' in form
    changed = browser.post(
        "/account/password",
        data={
            "currentPassword": PASSWORD,
            "newPassword": "a-brand-new-password",
            "confirmPassword": "a-brand-new-password",
            "revokeCreated": "y",
            "csrf_token": csrf_from(form),
        },
        follow_redirects=True,
    )
    assert "1 API key(s)" in changed.get_data(as_text=True)
    assert api.get("/api/v1/members", key=key["key"]).status_code == 401


def test_revoke_credentials_ends_everything_the_person_holds_and_made(
    make_app, mongo, org, other_org
):
    app = make_app()
    from .factories import Api

    api = Api(app.test_client())
    db = mongo["audit_app"]
    key = _admin_key(api, org)
    jwt = api.token(org.admin)
    invitation = _invite(api, org, key=key["key"])
    browser = app.test_client()
    login(browser, org.admin)
    assert browser.get("/organization/members").status_code == 200
    result = app.test_cli_runner().invoke(
        args=["revoke-credentials", "--email", org.admin.email, "--json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["sessionsEnded"] >= 1 and printed["jwtsEnded"] is True
    assert printed["apiKeysRevoked"] == 1 and printed["invitationsRevoked"] == 1
    # the effect: nothing the attacker held or made works any more
    assert api.get("/api/v1/members", token=jwt).status_code == 401
    assert api.get("/api/v1/members", key=key["key"]).status_code == 401
    assert browser.get("/organization/members").status_code == 302  # back to the login
    assert _accept_as_new_account(api.client, invitation).status_code == 404
    assert not _is_member(db, org, ATTACKER)
    record = db.audit_logs.find_one({"action": "account.revokeCredentials"})
    assert record["organizationId"] == org.id and record["authType"] == "cli"
    assert record["request"]["result"]["apiKeysRevoked"] == 1
    # the password still works: a new JWT is had by logging in again
    assert (
        api.client.post(
            "/api/v1/auth/token", json={"email": org.admin.email, "password": PASSWORD}
        ).status_code
        == 200
    )


def test_revoke_credentials_in_one_organization_leaves_the_others_keys(
    make_app, mongo, org, other_org
):
    app = make_app()
    from .factories import Api

    api = Api(app.test_client())
    # the Owner of Acme is made an Admin of Globex too, and makes a key in each
    invited = _invite(api, other_org, email=org.owner.email, as_=other_org.owner)
    token = api.token(org.owner)
    assert (
        api.post(
            "/api/v1/invitations/accept", token=token, json={"token": _token_of(invited)}
        ).status_code
        == 200
    )
    acme_key = api.post("/api/v1/api-keys", as_=org.owner, json={"name": "a"}).get_json()
    globex_jwt = api.client.post(
        "/api/v1/auth/token",
        json={"email": org.owner.email, "password": PASSWORD, "organizationId": str(other_org.id)},
    ).get_json()["token"]
    globex_key = api.post("/api/v1/api-keys", token=globex_jwt, json={"name": "g"}).get_json()
    result = app.test_cli_runner().invoke(
        args=["revoke-credentials", "--email", org.owner.email, "--organization", str(org.id)]
    )
    assert result.exit_code == 0, result.output
    assert "API keys revoked: 1" in result.output
    assert api.get("/api/v1/workspaces", key=acme_key["key"]).status_code == 401
    assert api.get("/api/v1/workspaces", key=globex_key["key"]).status_code == 200


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--email", "nobody@nowhere.example"], "--email"),
        (["--email", "owner@acme.example", "--organization", "0" * 24], "--organization"),
        (["--email", "owner@acme.example", "--organization", "nope"], "--organization"),
    ],
)
def test_revoke_credentials_refuses_bad_input(app, org, runner, args, option):
    result = runner.invoke(args=["revoke-credentials", *args, "--json"])
    assert result.exit_code == 2, result.output
    assert option in result.output


# Finding 13: a former member cannot accept an invitation through the API ------------------


def _remove(api, org, person):
    assert api.delete(f"/api/v1/members/{person.account_id}", as_=org.owner).status_code == 204


def test_a_former_member_accepts_an_invitation_with_an_invitations_only_token(api, db, org):
    _remove(api, org, org.member)
    invitation = _invite(api, org, email=org.member.email, role="member", as_=org.owner)
    answer = api.client.post(
        "/api/v1/auth/token", json={"email": org.member.email, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["scope"] == "invitations" and body["organizationId"] == str(org.id)
    limited = body["token"]
    # the token is nobody anywhere else
    for path in ("/api/v1/members", "/api/v1/audit-logs", "/api/v1/workspaces"):
        assert api.get(path, token=limited).status_code == 401, path
    accepted = api.post(
        "/api/v1/invitations/accept", token=limited, json={"token": _token_of(invitation)}
    )
    assert accepted.status_code == 200, accepted.get_json()
    assert _is_member(db, org, org.member.email)
    # still nobody elsewhere, even now that the account is a member again
    assert api.get("/api/v1/workspaces", token=limited).status_code == 401
    full = api.client.post(
        "/api/v1/auth/token", json={"email": org.member.email, "password": PASSWORD}
    ).get_json()
    assert (
        "scope" not in full
        and api.get("/api/v1/workspaces", token=full["token"]).status_code == 200
    )


def test_a_former_member_without_an_invitation_still_gets_no_token(api, org):
    _remove(api, org, org.member)
    answer = api.client.post(
        "/api/v1/auth/token", json={"email": org.member.email, "password": PASSWORD}
    )
    assert answer.status_code == 403
    wrong = api.client.post(
        "/api/v1/auth/token", json={"email": org.member.email, "password": "wrong-password"}
    )
    assert wrong.status_code == 401
