"""Small untruths and dead ends (issue #26, item 7)."""

from __future__ import annotations

import re

import pytest

from .factories import Api, make_org
from .test_web_session import csrf_from, login


@pytest.fixture
def org(app):
    return make_org(app, "Acme")


def _offered_roles(page: str) -> set[str]:
    select = page.split('id="key-role"', 1)[1].split("</select>", 1)[0]
    return set(re.findall(r"<option [^>]*>([^<]+)</option>", select))


def test_the_key_form_offers_only_roles_a_key_of_this_person_may_hold(app, org, db):
    Api(app.test_client()).post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "Streamers", "permissions": ["manageAuditStreams", "viewAuditLog"]},
    )
    owner = app.test_client()
    login(owner, org.owner)
    offered = _offered_roles(owner.get("/organization/api-keys").get_data(as_text=True))
    assert "Owner" not in offered and {"Admin", "Member", "Streamers"} <= offered
    # a person with fewer permissions is offered fewer: only what they could grant
    db.roles.update_one(
        {"_id": org.roles["admin"]["_id"]},
        {"$pull": {"permissions": "manageAuditStreams"}},
    )
    Api(app.test_client()).post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "Keys", "permissions": ["viewApiKeys", "manageApiKeys"]},
    )
    admin = app.test_client()
    login(admin, org.admin)
    page = admin.get("/organization/api-keys").get_data(as_text=True)
    offered = _offered_roles(page)
    assert "Owner" not in offered and "Streamers" not in offered and "Member" in offered
    # and every role offered is accepted
    for name in offered:
        role = db.roles.find_one({"organizationId": org.id, "name": name})
        made = admin.post(
            "/organization/api-keys",
            data={"csrf_token": csrf_from(page), "name": f"k {name}", "roleId": str(role["_id"])},
        )
        assert made.status_code == 201, name


def test_a_403_page_links_only_to_what_the_person_can_see(app, org):
    member = app.test_client()
    login(member, org.member)
    for url in ("/organization/api-keys", "/organization/audit-logs", "/organization/roles/x/y"):
        refused = member.get(url)
        text = refused.get_data(as_text=True)
        assert refused.status_code in (403, 404), url
        assert 'href="/organization/api-keys"' not in text, url
        assert 'href="/organization/audit-logs"' not in text and "Back to the audit" not in text
        assert 'href="/">Back to the start page' in text or "Back to Roles" in text
        assert 'href="/organization/members">Members</a>' in text  # what they can see
    refused = member.post("/organization/api-keys", data={})
    assert "Back to api keys" not in refused.get_data(as_text=True)
    admin = app.test_client()
    login(admin, org.admin)
    missing = admin.get("/organization/members/000000000000000000000000/nothing")
    assert 'href="/organization/members">Back to Members' in missing.get_data(as_text=True)


def test_the_integrity_page_is_a_click_away_and_says_what_no_window_means(app, org):
    client = app.test_client()
    login(client, org.owner)
    for url in ("/organization/audit-logs", "/organization/audit-logs?q=created:>=1900-01-01"):
        page = client.get(url).get_data(as_text=True)
        assert 'href="/organization/audit-logs/integrity"' in page, url
    integrity = client.get("/organization/audit-logs/integrity").get_data(as_text=True)
    assert "(every window)" not in integrity
    assert re.search(
        r"No window sealed yet: records are sealed every 60 minutes, once their window has "
        r"been closed 120 seconds\.",
        integrity,
    )
