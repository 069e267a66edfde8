"""Every web page an Owner of the demo can open, from the app's URL map: a page added later
is visited by the tests that use this, with no list to keep up to date.

``prepare`` gives the demo what makes each list show a row (a pending invitation, a log
stream, a retention shortening waiting for its grace, a role with a long name, a staff
member's active access);
``owner_pages`` names each GET rule with its ids filled in from the demo. A rule with a
parameter it has no id for fails the test that asks, naming the rule, so that a new kind
of page is never left out quietly.
"""

from __future__ import annotations

from urllib.parse import urlparse

from tests.factories import Api


def _token(api: Api, live) -> str:
    owner = live["logins"]["owner"]
    answer = api.client.post(
        "/api/v1/auth/token", json={"email": owner["email"], "password": owner["password"]}
    )
    return answer.get_json()["token"]


def prepare(live) -> dict[str, str]:
    """Rows for every list of the demo, and an id for each path parameter (by its name)."""
    app = live["app"]
    api = Api(app.test_client())
    token = _token(api, live)

    def get(path):
        answer = api.get(path, token=token)
        assert answer.status_code == 200, (path, answer.get_json())
        return answer.get_json()

    # a role with a long name, as organizations name them: every role menu is that wide
    made = api.post(
        "/api/v1/roles",
        token=token,
        json={"name": "Security and compliance auditors", "permissions": ["viewAuditLog"]},
    )
    assert made.status_code == 201, made.get_json()
    roles = {role["name"]: role["id"] for role in get("/api/v1/roles")["items"]}
    invited = api.post(
        "/api/v1/members",
        token=token,
        json={"email": "newcomer@demo.example", "roleId": roles["Member"]},
    )
    assert invited.status_code == 201, invited.get_json()
    app.config["AUDIT_STREAM_ALLOW_PRIVATE"] = True  # a stream to this machine's discard port
    try:
        stream = api.post(
            "/api/v1/audit-streams",
            token=token,
            json={
                "name": "SIEM",
                "destination": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
            },
        )
    finally:
        app.config["AUDIT_STREAM_ALLOW_PRIVATE"] = False
    assert stream.status_code == 201, stream.get_json()
    organization = get("/api/v1/organization")
    shortened = api.patch(
        "/api/v1/organization",
        token=token,
        json={"auditRetentionDays": organization["auditRetentionDays"] - 1},
    )
    assert shortened.status_code == 200, shortened.get_json()
    members = get("/api/v1/members")["items"]
    _grant_staff(live)
    return {
        "auditLogId": get("/api/v1/audit-logs?limit=1")["items"][0]["id"],
        "token": urlparse(invited.get_json()["acceptUrl"]).path.rsplit("/", 1)[-1],
        "invitationId": invited.get_json()["invitationId"],
        "workspaceId": live["summary"]["workspaces"][0],
        "apiKeyId": get("/api/v1/api-keys")["items"][0]["id"],
        "streamId": stream.get_json()["id"],
        "roleId": roles["Admin"],
        "accountId": next(m["accountId"] for m in members if m["email"].startswith("member@")),
        "organizationId": live["summary"]["organizationId"],
    }


def owner_pages(live, ids: dict[str, str]) -> list[str]:
    """The path of every GET rule of the app but the JSON API's and static files', ids
    filled in."""
    paths = []
    for rule in live["app"].url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.endpoint == "static":
            continue
        if rule.rule.startswith("/api/"):
            continue
        missing = [name for name in rule.arguments if name not in ids]
        assert not missing, f"{rule.rule}: give every_page.prepare an id for {missing}"
        paths.append(rule.build({name: ids[name] for name in rule.arguments})[1])
    return sorted(set(paths))


def html_pages(page, live, paths: list[str]) -> list[str]:
    """The paths that answer the signed-in browser with a web page (not JSON or a file)."""
    kept = []
    for path in paths:
        answer = page.context.request.get(f"{live['url']}{path}", max_redirects=0)
        if "text/html" in answer.headers.get("content-type", "") and answer.status < 300:
            kept.append(path)
    return kept


STAFF_EMAIL = "zones@platform.example"
STAFF_PASSWORD = "staff password of the page tests"


def _grant_staff(live) -> None:
    """The platform's support staff with an active grant on the demo organization (its
    ``staffAccess`` is open): a row of Staff requests' active access."""
    app = live["app"]
    client = app.test_client()
    made = app.test_cli_runner().invoke(
        args=["create-staff", "--email", STAFF_EMAIL, "--password-stdin"],
        input=STAFF_PASSWORD + "\n",
    )
    assert made.exit_code == 0 or "exists" in made.output, made.output
    token = client.post(
        "/api/v1/staff/token", json={"email": STAFF_EMAIL, "password": STAFF_PASSWORD}
    ).get_json()["token"]
    grant = client.post(
        "/api/v1/staff/grants",
        json={
            "organizationId": live["summary"]["organizationId"],
            "justification": "Issue 26: every page, in the viewer's zone and on a phone",
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert grant.status_code == 201 and grant.get_json()["state"] == "active", grant.get_json()


def staff_signed_in(page, live, pages: list[str]) -> list[str]:
    """Sign ``page`` in as the platform's support staff, with an active grant on the demo
    organization; the staff's pages among ``pages``."""
    _grant_staff(live)
    page.goto(f"{live['url']}/staff/login")
    page.get_by_label("Email").fill(STAFF_EMAIL)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live['url']}/staff")
    staff = [path for path in pages if path == "/staff" or path.startswith("/staff/")]
    return html_pages(page, live, staff)
