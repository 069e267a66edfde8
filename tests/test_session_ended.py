"""An ended session ends gracefully (issue #26, item 2).

A form sent after its session ended (logged out elsewhere, the cookie gone) goes back to
the login page with "Your session ended; sign in to continue", then to the page the person
was on; the refused request keeps its audit record. ``next`` is only ever this site.
"""

from __future__ import annotations

import re

import pytest

from audit_app.auth import sessions

from .test_web_session import csrf_from, login


@pytest.fixture
def app(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


def _end_sessions(app, org):
    with app.app_context():
        from audit_app.db import get_db

        sessions.end_account_sessions(get_db(), org.owner.account_id)


@pytest.mark.parametrize("how", ["ended on the server", "cookie cleared"])
def test_a_form_sent_after_the_session_ended_goes_to_login_then_back(app, org, db, how):
    client = app.test_client()
    login(client, org.owner)
    token = csrf_from(client.get("/organization/settings").get_data(as_text=True))
    if how == "ended on the server":
        _end_sessions(app, org)
    else:
        client.delete_cookie("session")
    sent = client.post(
        "/organization/settings",
        data={"csrf_token": token, "name": "Renamed"},
        headers={"Referer": "http://localhost/organization/settings"},
    )
    assert sent.status_code == 302
    assert sent.headers["Location"] == "/login?next=/organization/settings"
    page = client.get(sent.headers["Location"]).get_data(as_text=True)
    assert page.count("Your session ended; sign in to continue") == 1
    assert "CSRF" not in page
    assert db.organizations.find_one({"_id": org.id})["name"] == "Acme"
    record = db.audit_logs.find_one({"requestId": sent.headers["X-Request-Id"]})
    assert record["method"] == "POST" and record["path"] == "/organization/settings"
    assert record["outcome"] == "failure" and record["statusCode"] == 302
    assert record["response"]["errorCode"] == "session_ended"
    if how == "ended on the server":  # the cookie still names the session that ended
        assert record["organizationId"] in (org.id, None)
    back = login(client, org.owner, next_url="/organization/settings")
    assert back.headers["Location"] == "/organization/settings"


def test_without_a_referer_the_nearest_page_above_the_form(app, org, db):
    client = app.test_client()
    login(client, org.owner)
    token = csrf_from(client.get("/organization/members").get_data(as_text=True))
    client.delete_cookie("session")
    sent = client.post(
        f"/organization/members/{org.member.account_id}/remove",
        data={"csrf_token": token, "confirm": "yes"},
    )
    assert sent.headers["Location"] == "/login?next=/organization/members"
    assert db.memberships.find_one({"accountId": org.member.account_id})
    record = db.audit_logs.find_one({"requestId": sent.headers["X-Request-Id"]})
    assert record["action"] == "member.remove" and record["outcome"] == "failure"


def test_a_referer_of_another_site_is_not_followed(app, org):
    client = app.test_client()
    login(client, org.owner)
    token = csrf_from(client.get("/organization/roles").get_data(as_text=True))
    client.delete_cookie("session")
    sent = client.post(
        "/organization/roles",
        data={"csrf_token": token, "name": "X"},
        headers={"Referer": "https://evil.example/organization/roles"},
    )
    assert sent.headers["Location"] == "/login?next=/organization/roles"


def test_a_logged_in_persons_forged_form_stays_a_400(app, org, db):
    client = app.test_client()
    login(client, org.owner)
    sent = client.post("/organization/settings", data={"csrf_token": "forged", "name": "X"})
    assert sent.status_code == 400
    assert db.organizations.find_one({"_id": org.id})["name"] == "Acme"
    record = db.audit_logs.find_one({"requestId": sent.headers["X-Request-Id"]})
    assert record["statusCode"] == 400 and record["outcome"] == "failure"


def test_an_expired_login_form_asks_to_sign_in_again(app, org, db):
    client = app.test_client()
    sent = client.post(
        "/login",
        data={"email": org.owner.email, "password": "x", "next": "/organization/roles"},
    )
    text = sent.get_data(as_text=True)
    assert sent.status_code == 400 and "The form expired; please sign in again." in text
    assert 'value="/organization/roles"' in text and org.owner.email in text
    record = db.audit_logs.find_one({"requestId": sent.headers["X-Request-Id"]})
    assert record["action"] == "session.loginFailed" and record["statusCode"] == 400


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "/\\\\evil.example",
        "/path\\with\\backslash",
        "/x\r\nLocation: https://evil.example",
        "/\tevil",
        "/x\x00",
        "/x\x7f",
        "javascript:alert(1)",
        "evil.example",
        "",
    ],
)
def test_next_is_only_ever_a_path_of_this_site(app, org, target):
    client = app.test_client()
    page = client.get("/login")
    token = csrf_from(page.get_data(as_text=True))
    answer = client.post(
        "/login",
        data={
            "email": org.owner.email,
            "password": org.owner.password,
            "csrf_token": token,
            "next": target,
        },
    )
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/organization/members?email=ana", "/organization/roles"])
def test_a_path_of_this_site_is_followed(app, org, target):
    answer = login(app.test_client(), org.owner, next_url=target)
    assert answer.headers["Location"] == target


def test_too_many_wrong_passwords_show_the_login_page_with_the_wait(make_app, org):
    app = make_app(RATELIMIT_LOGIN="2 per minute", WTF_CSRF_ENABLED=True)
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    for _ in range(2):
        client.post(
            "/login", data={"email": org.owner.email, "password": "bad", "csrf_token": token}
        )
    limited = client.post(
        "/login",
        data={"email": org.owner.email, "password": "bad", "csrf_token": token, "next": "/x"},
    )
    text = limited.get_data(as_text=True)
    assert limited.status_code == 429
    said = re.search(r"Too many attempts; try again in (\d+) seconds", text)
    assert said and 0 < int(said.group(1)) <= 60
    assert abs(int(limited.headers["Retry-After"]) - int(said.group(1))) <= 1
    assert "per 1 minute" not in text
    assert 'name="password"' in text and org.owner.email in text  # the form, filled in
    with app.app_context():
        from audit_app.db import get_db

        record = get_db().audit_logs.find_one({"requestId": limited.headers["X-Request-Id"]})
    assert record["statusCode"] == 429 and record["action"] == "session.loginFailed"
    assert record["response"]["errorMessage"].startswith("Too many attempts")
