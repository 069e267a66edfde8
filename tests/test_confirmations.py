"""Destructive web forms ask first, without JavaScript (issue #26, item 1).

The first POST (no ``confirm=yes``) answers a confirmation page that names the object and
what will happen and changes nothing; the page's form re-posts the same fields with
``confirm=yes`` and a CSRF token, and that POST does it; a confirmed POST without a valid
CSRF token changes nothing. Judged by effect, in the store; every POST is recorded.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import pytest

from .factories import Api, make_org
from .test_web_session import csrf_from, login


@pytest.fixture
def app(make_app):
    return make_app(WTF_CSRF_ENABLED=True, AUDIT_STREAM_ALLOW_PRIVATE=True)


@pytest.fixture
def org(app):
    return make_org(app, "Acme")


@dataclass
class Case:
    page: str  # where the form is
    url: str  # where it posts
    data: dict[str, Any]  # its fields, besides the token
    words: tuple[str, ...]  # what the confirmation page says (the object, the consequence)
    exists: Any  # db -> whether the object is still there, unchanged
    action: str  # the record of the first POST


def _cases(app, org, db) -> dict[str, Case]:
    api = Api(app.test_client())
    invitation = api.post(
        "/api/v1/members",
        as_=org.owner,
        json={"email": "pending@example.com", "roleId": str(org.roles["member"]["_id"])},
    ).get_json()["invitationId"]
    role = api.post(
        "/api/v1/roles", as_=org.owner, json={"name": "Auditors", "permissions": ["viewAuditLog"]}
    ).get_json()["id"]
    stream = api.post(
        "/api/v1/audit-streams",
        as_=org.owner,
        json={
            "name": "SIEM",
            "destination": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
        },
    ).get_json()["id"]
    from bson import ObjectId

    return {
        "member": Case(
            "/organization/members",
            f"/organization/members/{org.member.account_id}/remove",
            {},
            (f"Remove {org.member.email} from the organization?", "sessions here end at once"),
            lambda: db.memberships.find_one({"accountId": org.member.account_id}) is not None,
            "member.removeAsked",
        ),
        "invitation": Case(
            "/organization/members",
            f"/organization/members/invitations/{invitation}/revoke",
            {},
            ("Revoke the invitation of pending@example.com?", "link stops working"),
            lambda: db.invitations.find_one({"_id": ObjectId(invitation)})["revokedAt"] is None,
            "invitation.revokeAsked",
        ),
        "apiKey": Case(
            "/organization/api-keys",
            f"/organization/api-keys/{org.api_key_id}/revoke",
            {},
            ("Revoke key ci?", "Requests with it will fail at once"),
            lambda: db.api_keys.find_one({"_id": org.api_key_id})["revokedAt"] is None,
            "apiKey.revokeAsked",
        ),
        "stream": Case(
            "/organization/audit-streams",
            f"/organization/audit-streams/{stream}/delete",
            {},
            ("Delete stream SIEM?", "stops delivering at once"),
            lambda: db.audit_streams.find_one({"_id": ObjectId(stream)}) is not None,
            "auditStream.deleteAsked",
        ),
        "role": Case(
            "/organization/roles",
            f"/organization/roles/{role}/delete",
            {},
            ("Delete role Auditors?", "can no longer be given"),
            lambda: db.roles.find_one({"_id": ObjectId(role)}) is not None,
            "role.deleteAsked",
        ),
        "retention": Case(
            "/organization/settings",
            "/organization/settings",
            {"name": "Acme", "auditRetentionDays": "90"},
            ("Shorten the audit log retention to 90 days?", "older than 90 days will be deleted"),
            lambda: (
                db.organizations.find_one({"_id": org.id}).get("auditRetentionPending") is None
                and db.organizations.find_one({"_id": org.id}).get("auditRetentionDays")
                in (None, 400)
            ),
            "organization.updateAsked",
        ),
    }


KINDS = ("member", "invitation", "apiKey", "stream", "role", "retention")


def _record(db, response):
    return db.audit_logs.find_one({"requestId": response.headers["X-Request-Id"]})


def _hidden_fields(page: str) -> dict[str, str]:
    form = page.split('class="confirm-form"', 1)[1].split("</form>", 1)[0]
    return {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    }


@pytest.mark.parametrize("kind", KINDS)
def test_the_first_post_asks_and_changes_nothing_the_confirmed_one_does_it(app, org, db, kind):
    case = _cases(app, org, db)[kind]
    client = app.test_client()
    login(client, org.owner)
    token = csrf_from(client.get(case.page).get_data(as_text=True))

    asked = client.post(case.url, data={"csrf_token": token, **case.data})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200, page
    assert case.exists(), "the first POST changed something"
    for words in case.words:
        assert html.escape(words, quote=True) in page or words in page, words
    assert f'href="{case.page}"' in page and "Cancel" in page
    fields = _hidden_fields(page)
    assert fields["confirm"] == "yes" and fields["csrf_token"]
    assert {k: v for k, v in fields.items() if k not in ("confirm", "csrf_token")} == case.data
    record = _record(db, asked)
    assert record["action"] == case.action and record["outcome"] == "success"
    assert record["statusCode"] == 200 and "changes" not in record

    # the confirmed POST without a valid token: refused, nothing changed, recorded
    for bad in ({}, {"csrf_token": "forged"}):
        refused = client.post(case.url, data={**fields, **bad, "csrf_token": bad.get("csrf_token")})
        assert refused.status_code == 400
        assert case.exists()
        record = _record(db, refused)
        assert record is not None and record["outcome"] == "failure"
        assert record["response"]["errorCode"] == "bad_request"

    # the confirmation page's own form does it
    done = client.post(case.url, data=fields)
    assert done.status_code == 302
    assert not case.exists(), "the confirmed POST did nothing"
    record = _record(db, done)
    assert record["action"] == case.action.removesuffix("Asked") or (
        kind == "retention" and record["action"] == "organization.update"
    )
    assert record["outcome"] == "success"


def test_leaving_asks_first_in_its_own_words(app, org, db):
    client = app.test_client()
    login(client, org.admin)
    token = csrf_from(client.get("/organization/members").get_data(as_text=True))
    url = f"/organization/members/{org.admin.account_id}/remove"
    asked = client.post(url, data={"csrf_token": token})
    assert asked.status_code == 200 and "Leave this organization?" in asked.get_data(True)
    assert db.memberships.find_one({"accountId": org.admin.account_id, "organizationId": org.id})
    client.post(url, data=_hidden_fields(asked.get_data(True)))
    assert not db.memberships.find_one(
        {"accountId": org.admin.account_id, "organizationId": org.id}
    )


def test_asking_about_what_does_not_exist_is_a_404_and_changes_nothing(app, org, db, other_org):
    client = app.test_client()
    login(client, org.owner)
    token = csrf_from(client.get("/organization/members").get_data(as_text=True))
    for url in (
        f"/organization/members/{other_org.member.account_id}/remove",
        f"/organization/api-keys/{other_org.api_key_id}/revoke",
        f"/organization/roles/{other_org.roles['member']['_id']}/delete",
        f"/organization/members/invitations/{other_org.api_key_id}/revoke",
        f"/organization/audit-streams/{other_org.api_key_id}/delete",
    ):
        answer = client.post(url, data={"csrf_token": token})
        assert answer.status_code == 404, url
    assert db.api_keys.find_one({"_id": other_org.api_key_id})["revokedAt"] is None


def test_a_longer_retention_or_a_rename_does_not_ask(app, org, db):
    client = app.test_client()
    login(client, org.owner)
    token = csrf_from(client.get("/organization/settings").get_data(as_text=True))
    longer = client.post(
        "/organization/settings",
        data={"csrf_token": token, "name": "Acme Corp", "auditRetentionDays": "500"},
    )
    assert longer.status_code == 302
    assert db.organizations.find_one({"_id": org.id})["name"] == "Acme Corp"


def test_the_pages_carry_the_same_question_for_the_dialog(app, org, db):
    cases = _cases(app, org, db)
    client = app.test_client()
    login(client, org.owner)
    for kind in ("member", "apiKey", "stream", "role", "invitation"):
        page = html.unescape(client.get(cases[kind].page).get_data(as_text=True))
        assert f'data-confirm="{cases[kind].words[0]}' in page, kind
