"""What an adversarial review of action, changes, response, credentialId and the q
qualifiers found: each test proved a defect (it is named after it) and now guards its fix.
They use only the public API, the web forms and the stored records, as a client or an
auditor would.
"""

from __future__ import annotations

import json

import jwt
import pytest
from bson import ObjectId

from .factories import Api
from .test_actions import _form, record_of
from .test_web_session import login


@pytest.fixture
def web(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


def _stored(record) -> str:
    return json.dumps(record, default=str)


# 1. Secrets through response.errorMessage ----------------------------------------------


def test_error_message_quoting_client_input_stores_an_api_key_or_jwt_behind_a_repr_escape(
    api, org, db
):
    """Error messages quote client input with ``{value!r}``. A character Python's repr
    escapes (here an invisible U+200B, shown as ``\\u200b``) glued before a secret makes
    the stored message read ``...\\u200boal_<40 chars>``: the letter before ``oal_``/``eyJ``
    defeats ``scrub_values``' look-behind, so the full API key or JWT is stored, while the
    same request's query/body (redacted by ``Redactor.text``) loses it. A percent-encoded
    key (``%6Fal_...``) likewise survives in the message only."""
    jwt_token = api.token(org.member)
    attempts = [
        # the search bar quotes what it could not read
        (
            api.get(
                "/api/v1/audit-logs",
                as_=org.owner,
                query_string={"q": f"actor:\u200b{org.api_key}"},
            ),
            org.api_key,
        ),
        (
            api.get(
                "/api/v1/audit-logs", as_=org.owner, query_string={"q": f"ip:%6F{org.api_key[1:]}"}
            ),
            org.api_key,
        ),
        # marshmallow validation messages quote it too
        (
            api.post(
                "/api/v1/roles",
                as_=org.owner,
                json={"name": "x", "permissions": [f"\u200b{jwt_token}"]},
            ),
            jwt_token,
        ),
        (
            api.post(
                "/api/v1/workspaces", as_=org.owner, json={"name": "x", f"\u200b{org.api_key}": 1}
            ),
            org.api_key,
        ),
    ]
    leaked = []
    for answer, secret in attempts:
        assert answer.status_code == 400
        record = record_of(db, answer)
        random_part = secret[4:] if secret.startswith("oal_") else secret.rsplit(".", 1)[-1]
        assert random_part not in _stored(record.get("request")), "the request part is redacted"
        if random_part in _stored(record):
            leaked.append(record["response"]["errorMessage"][:90])
    assert leaked == [], leaked


# 2. Secrets through changes ------------------------------------------------------------


def test_an_authorization_bearer_line_in_a_description_keeps_its_credential_in_changes(
    api, org, db
):
    """``Authorization: Bearer <credential>`` (a pasted curl line) in a workspace
    description or a pathway step: the key=value redaction replaces only the word
    ``Bearer`` (the value ends at the space), after which the scheme pattern no longer sees
    a scheme, so the credential itself is stored in ``changes`` (and in the body)."""
    credential = "s3cr3tTokenValue0123456789"
    made = api.post(
        "/api/v1/workspaces",
        as_=org.admin,
        json={"name": "Ops", "description": f"curl -H 'Authorization: Bearer {credential}' /x"},
    )
    step = api.post(
        "/api/v1/pathways",
        as_=org.admin,
        workspace=org.workspace["_id"],
        json={
            "name": "P",
            "steps": [{"title": "CI", "description": f"token: Bearer {credential}"}],
        },
    )
    assert made.status_code == 201 and step.status_code == 201
    for answer in (made, step):
        record = record_of(db, answer)
        assert "changes" in record
        assert credential not in _stored(record["changes"]), record["changes"]


# 3. credentialId -----------------------------------------------------------------------


def test_a_web_password_change_is_filed_under_the_new_session_not_the_one_that_made_it(
    web,
    org,
    db,
):
    """The password change is made with session S1, but ``open_session`` notes the new
    session S2 as the request's credential: "everything done with S1" (a hijacked session)
    does not show the password change, the one thing an investigator needs."""
    client = web.test_client()
    s1 = record_of(db, login(client, org.owner))["credentialId"]
    changed = _form(
        client,
        "/account/password",
        "/account/password",
        {
            "currentPassword": org.owner.password,
            "newPassword": "another long password",
            "confirmPassword": "another long password",
        },
    )
    assert changed.status_code == 302
    record = record_of(db, changed)
    assert record["action"] == "account.passwordChange"
    assert record["credentialId"] == s1
    assert "account.passwordChange" in {
        r["action"] for r in db.audit_logs.find({"organizationId": org.id, "credentialId": s1})
    }


def test_a_login_sent_with_another_tenants_token_is_filed_in_that_tenants_log(
    api, org, other_org, db
):
    """POST /auth/token for Acme's admin, sent with any valid Globex token in the
    Authorization header: the principal (Globex) wins over the login's actor, so the login
    that issued Acme's new token (its credentialId) and every failed attempt at Acme's
    admin's password are filed in Globex's log under the Globex member; Acme sees nothing."""
    globex_token = api.token(other_org.member)
    ok = api.post(
        "/api/v1/auth/token",
        token=globex_token,
        json={"email": org.admin.email, "password": org.admin.password},
    )
    failed = api.post(
        "/api/v1/auth/token",
        token=globex_token,
        json={"email": org.admin.email, "password": "a wrong guess"},
    )
    assert ok.status_code == 200 and failed.status_code == 401
    issued = jwt.decode(ok.get_json()["token"], options={"verify_signature": False})
    login_record = record_of(db, ok)
    assert login_record["credentialId"] == f"jwt_{issued['jti']}"
    assert login_record["organizationId"] == org.id, "the login is missing from Acme's log"
    assert login_record["accountId"] == org.admin.account_id
    failed_record = record_of(db, failed)
    assert failed_record["organizationId"] == org.id, "Acme cannot see the failed login"
    assert failed_record["accountId"] == org.admin.account_id


# 4. changes in the wrong tenant --------------------------------------------------------


def test_an_invitation_accepted_with_a_jwt_files_its_changes_in_the_callers_other_org(
    api, org, other_org, db
):
    """An existing account (a Globex member) accepts an Acme invitation with its JWT, as
    the API documents. The record, with ``changes`` naming Acme's role and role id, lands
    in Globex's log; Acme's log never shows that a new Admin joined."""
    invited = api.post(
        "/api/v1/members",
        as_=org.admin,
        json={"email": other_org.member.email, "roleId": str(org.roles["admin"]["_id"])},
    )
    token = invited.get_json()["acceptUrl"].rsplit("/", 1)[-1]
    accepted = api.post("/api/v1/invitations/accept", as_=other_org.member, json={"token": token})
    assert accepted.status_code == 200, accepted.get_json()
    record = record_of(db, accepted)
    assert record["action"] == "invitation.accept"
    assert record["organizationId"] == org.id, "filed in Globex's log, not Acme's"
    acme_role = str(org.roles["admin"]["_id"])
    in_globex = [_stored(r) for r in db.audit_logs.find({"organizationId": other_org.id})]
    assert not any(acme_role in text for text in in_globex), "Acme's role id in Globex's log"


# 5. action ---------------------------------------------------------------------------


def test_an_options_request_is_recorded_as_the_mutating_action_with_status_200(api, org, db):
    """Flask answers OPTIONS itself for every rule, without running the view, but the
    record takes the action the view declares: ``OPTIONS /api-keys/<id>`` is stored as
    ``apiKey.revoke`` with status 200 (``action:apiKey.revoke status:2xx`` then lists a
    revocation that never happened), ``OPTIONS /members/<id>`` as ``member.roleChange``."""
    answer = api.call("OPTIONS", f"/api/v1/api-keys/{org.api_key_id}", as_=org.admin)
    assert answer.status_code == 200
    record = record_of(db, answer)
    assert db.api_keys.find_one({"_id": org.api_key_id})["revokedAt"] is None
    assert record["action"] != "apiKey.revoke", (record["action"], record["statusCode"])


def test_a_refused_web_form_change_records_no_error(web, org, db):
    """Through the web forms a refused change is flashed and redirected (302), and the
    record carries neither ``changes`` nor ``response.errorCode``: a refused attempt to
    remove the Owner reads exactly like a successful removal minus its changes, and
    ``status:4xx action:member.remove`` never finds web attempts (the API's 403 is found)."""
    client = web.test_client()
    login(client, org.admin)
    refused = _form(
        client,
        "/organization/members",
        f"/organization/members/{org.owner.account_id}/remove",
        {"confirm": "yes"},
    )
    assert refused.status_code == 302
    assert db.memberships.find_one({"accountId": org.owner.account_id}) is not None
    record = record_of(db, refused)
    assert record["action"] == "member.remove" and "changes" not in record
    assert record["response"].get("errorCode") == "forbidden", record["response"]


# 6. the qualifiers -------------------------------------------------------------------


def test_the_actor_qualifier_tells_whether_another_tenants_email_has_an_account(
    api, org, other_org
):
    """``actor:<email>`` with any ``accountId``: an email with an account anywhere on the
    platform is a 400 ("names another account"), one without is a 200 with no items. Any
    member of any organization can so enumerate the accounts of other tenants (the
    invitation flow is careful not to reveal this)."""
    answers = {
        email: api.get(
            "/api/v1/audit-logs",
            as_=org.owner,
            query_string={"q": f"actor:{email}", "accountId": str(ObjectId())},
        )
        for email in (other_org.member.email, "nobody.at.all@globex.example")
    }
    statuses = {email: answer.status_code for email, answer in answers.items()}
    assert len(set(statuses.values())) == 1, statuses


def test_the_ip_qualifier_cannot_find_addresses_stored_in_another_notation(make_app, mongo):
    """The qualifier normalises the searched address (``.compressed``) but the record keeps
    ``request.remote_addr`` as received: an IPv4 client of a dual-stack server
    (``::ffff:198.51.100.77``) and an address a trusted proxy wrote in capitals are never
    found, not even by pasting the value the record shows."""
    from .factories import make_org

    app = make_app(TRUSTED_PROXY_COUNT=1)
    org = make_org(app, "Acme")
    api = Api(app.test_client())
    token = api.token(org.owner)
    mapped = api.get(
        "/api/v1/workspaces",
        token=token,
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
        headers={"X-Forwarded-For": "::ffff:198.51.100.77"},
    )
    upper = api.get(
        "/api/v1/workspaces",
        token=token,
        environ_base={"REMOTE_ADDR": "10.0.0.1"},
        headers={"X-Forwarded-For": "2001:DB8::77"},
    )
    db = mongo["audit_app"]
    shown = {
        "mapped": record_of(db, mapped)["ip"],
        "upper": record_of(db, upper)["ip"],
    }
    missed = []
    for name, answer in (("mapped", mapped), ("upper", upper)):
        items = api.get(
            "/api/v1/audit-logs", token=token, query_string={"q": f"ip:{shown[name]}"}
        ).get_json()["items"]
        if answer.headers["X-Request-Id"] not in {item["requestId"] for item in items}:
            missed.append(shown[name])
    assert missed == [], f"ip: pasted as stored finds nothing for {missed}"


def test_a_status_qualifier_agreeing_with_the_statuscode_parameter_is_refused(api, org):
    """``status:`` lower-cases its value, the ``statusCode`` parameter does not, so the
    same class given both ways (``statusCode=4XX&q=status:4XX``) is a 400 "contradicts"."""
    answer = api.get(
        "/api/v1/audit-logs",
        as_=org.owner,
        query_string={"q": "status:4XX", "statusCode": "4XX"},
    )
    assert answer.status_code == 200, answer.get_json()


def test_a_created_qualifier_before_the_from_parameter_is_not_refused(api, org):
    """``from`` after ``to`` is a 400, and so is ``created:>=`` after ``created:<=``; but
    ``from=2026-12-01&q=created:<=2026-11-01`` is silently an empty 200."""
    answer = api.get(
        "/api/v1/audit-logs",
        as_=org.owner,
        query_string={"q": "created:<=2026-11-01", "from": "2026-12-01"},
    )
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] in ("q", "from")
