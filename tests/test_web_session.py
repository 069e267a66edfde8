"""Logging in to the web UI: CSRF, no session fixation, safe redirects, the layout."""

import re

import pytest


def csrf_from(html: str) -> str:
    return re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


@pytest.fixture
def csrf_app(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


def login(client, person, next_url="", token=None):
    page = client.get(f"/login?next={next_url}")
    token = token or csrf_from(page.get_data(as_text=True))
    return client.post(
        "/login",
        data={
            "email": person.email,
            "password": person.password,
            "csrf_token": token,
            "next": next_url,
        },
    )


def signed_in(app, person):
    """A test client of the app, signed in as ``person`` through the login page."""
    client = app.test_client()
    answer = login(client, person)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def test_login_page_has_a_form_with_csrf(csrf_app, org):
    page = csrf_app.test_client().get("/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="csrf_token"' in html and 'type="password"' in html


def test_login_without_csrf_token_is_refused(csrf_app, org):
    client = csrf_app.test_client()
    answer = client.post("/login", data={"email": org.owner.email, "password": org.owner.password})
    assert answer.status_code == 400
    assert client.get("/").status_code == 302


def test_login_and_logout(csrf_app, org):
    client = csrf_app.test_client()
    answer = login(client, org.owner)
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    home = client.get("/").get_data(as_text=True)
    assert org.owner.email in home and "Acme" in home
    token = csrf_from(home)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").headers["Location"].startswith("/login")


def test_wrong_password_shows_an_error_without_logging_in(csrf_app, org):
    client = csrf_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    answer = client.post(
        "/login", data={"email": org.owner.email, "password": "nope", "csrf_token": csrf_from(page)}
    )
    assert answer.status_code == 401
    assert "incorrect" in answer.get_data(as_text=True)


def test_session_is_cleared_at_login(csrf_app, org):
    client = csrf_app.test_client()
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    login(client, org.owner)
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"] == str(org.owner.account_id)


@pytest.mark.parametrize(
    "target,expected",
    [
        ("/organization", "/organization"),
        ("https://evil.example/", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_next_redirect_stays_within_the_site(csrf_app, org, target, expected):
    answer = login(csrf_app.test_client(), org.owner, next_url=target)
    assert answer.headers["Location"] == expected


def test_session_cookie_flags(make_app, org):
    app = make_app(WTF_CSRF_ENABLED=True, SESSION_COOKIE_SECURE=True)
    answer = login(app.test_client(), org.owner)
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def test_web_pages_need_login_and_api_ignores_the_session(csrf_app, org):
    client = csrf_app.test_client()
    assert client.get("/").headers["Location"].startswith("/login")
    login(client, org.owner)
    assert client.get("/api/v1/organization").status_code == 401


def test_error_pages_render_in_the_layout(csrf_app, org):
    page = csrf_app.test_client().get("/no-such-page")
    assert page.status_code == 404
    html = page.get_data(as_text=True)
    assert "<title>404" in html and "app.css" in html


def test_switch_organization(csrf_app, org, other_org, api):
    invited = api.post(
        "/api/v1/members",
        as_=other_org.owner,
        json={"email": org.owner.email, "roleId": str(other_org.roles["admin"]["_id"])},
    ).get_json()
    accepted = api.post(
        "/api/v1/invitations/accept",
        as_=org.owner,
        json={"token": invited["acceptUrl"].rsplit("/", 1)[1]},
    )
    assert accepted.status_code == 200, accepted.get_json()
    client = csrf_app.test_client()
    login(client, org.owner)
    home = client.get("/").get_data(as_text=True)
    assert "Globex" in home  # the switcher lists both
    answer = client.post(
        "/organization/switch",
        data={"organizationId": str(other_org.id), "csrf_token": csrf_from(home)},
    )
    assert answer.status_code == 302
    assert "<h1>Globex</h1>" in client.get("/").get_data(as_text=True)
    refused = client.post(
        "/organization/switch", data={"organizationId": "0" * 24, "csrf_token": csrf_from(home)}
    )
    assert refused.status_code == 404
