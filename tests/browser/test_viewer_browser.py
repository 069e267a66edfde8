"""Organization -> Audit Logs in a real browser, as an admin and as support staff use it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

from .conftest import log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
COLUMNS = [
    "Account",
    "Workspace",
    "Auth Type",
    "Resource",
    "Method",
    "Path",
    "Status Code",
    "Created",
    "Actions",
]


def open_audit_logs(page, live):
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit Logs").click()
    page.wait_for_url(re.compile(r"/organization/audit-logs"))


def column(page, name: str) -> list[str]:
    return [cell.inner_text().strip() for cell in page.locator(f'td[data-label="{name}"]').all()]


def search(page, text: str) -> None:
    page.get_by_label("Search").fill(text)
    page.get_by_label("Search").press("Enter")
    page.wait_for_load_state("networkidle")


def test_list_shows_the_columns_newest_first(page, live, tmp_path):
    log_in(page, live, "owner")
    open_audit_logs(page, live)
    headers = [h.inner_text().strip() for h in page.locator("table.records th").all()]
    assert headers == COLUMNS
    times = [t.get_attribute("datetime") for t in page.locator("td[data-label=Created] time").all()]
    assert len(times) == 50 and times == sorted(times, reverse=True)
    # shown in the reader's time zone, exact UTC on hover
    first = page.locator("td[data-label=Created] time").first
    assert "UTC" in first.get_attribute("title") and "UTC" not in first.inner_text()
    statuses = page.locator("td[data-label='Status Code'] .status").all()
    assert any("status-4xx" in s.get_attribute("class") for s in statuses)
    target = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    page.screenshot(path=str(target / "audit-logs-list.png"), full_page=False)
    assert (target / "audit-logs-list.png").stat().st_size > 10_000


def test_search_by_part_of_a_path(page, live):
    log_in(page, live, "admin")
    open_audit_logs(page, live)
    search(page, "v1/PATHWAYS/")
    paths = column(page, "Path")
    assert paths and all("/api/v1/pathways/" in p for p in paths)
    assert "q=v1%2FPATHWAYS%2F" in page.url  # the filter lives in the URL


def test_search_by_account_id_and_by_workspace_id(page, live):
    log_in(page, live, "owner")
    open_audit_logs(page, live)
    member = live["people"]["member"]
    search(page, str(member["_id"]))
    accounts = column(page, "Account")
    involved = column(page, "Resource")
    assert member["email"] in accounts
    for account, how in zip(accounts, involved, strict=True):  # by the member, or to them
        assert account == member["email"] or "acted on it" in how
    workspace_id = live["summary"]["workspaces"][0]
    search(page, workspace_id)
    cells = page.locator("td[data-label=Workspace] span[title]").all()
    assert cells and {c.get_attribute("title") for c in cells} == {workspace_id}
    assert {c.inner_text() for c in cells} == {"Onboarding"}


def test_each_filter(page, live):
    log_in(page, live, "owner")
    open_audit_logs(page, live)
    page.get_by_label("Method").select_option("POST")
    page.get_by_role("button", name="Apply").click()
    assert set(column(page, "Method")) == {"POST"}
    page.get_by_label("Method").select_option("")
    page.get_by_label("Status").fill("4xx")
    page.get_by_role("button", name="Apply").click()
    assert column(page, "Status Code") and all(
        s.startswith("4") for s in column(page, "Status Code")
    )
    page.get_by_label("Status").fill("")
    page.get_by_label("Auth type").select_option("apiKey")
    page.get_by_role("button", name="Apply").click()
    accounts = column(page, "Account")
    assert accounts and all(a.startswith("API key CI pipeline") for a in accounts)
    page.get_by_label("Auth type").select_option("")
    page.get_by_label("Resource").fill("members")
    page.get_by_role("button", name="Apply").click()
    # the resource, and under it the action's label
    assert {cell.splitlines()[0] for cell in column(page, "Resource")} == {"members"}
    page.get_by_label("Resource").fill("")
    page.get_by_label("From").fill("2099-01-01T00:00:00")
    page.get_by_role("button", name="Apply").click()
    assert page.get_by_text("No matching records.").is_visible()
    page.get_by_role("link", name="Clear filters").click()
    assert len(column(page, "Path")) == 50


def test_invalid_filter_is_an_inline_message(page, live):
    log_in(page, live, "owner")
    page.goto(f"{live['url']}/organization/audit-logs?statusCode=99&accountId=nope")
    alert = page.get_by_role("alert")
    assert "cannot be used" in alert.inner_text()


def test_pagination_older_and_newer(page, live):
    log_in(page, live, "owner")
    open_audit_logs(page, live)
    page.get_by_label("Per page").select_option("25")
    page.get_by_role("button", name="Apply").click()
    first = page.locator("td[data-label=Created] time").first.get_attribute("datetime")
    first_ids = [
        a.get_attribute("href") for a in page.get_by_role("link", name="View Details").all()
    ]
    assert len(first_ids) == 25
    page.get_by_role("link", name="Older →").click()
    second_ids = [
        a.get_attribute("href") for a in page.get_by_role("link", name="View Details").all()
    ]
    assert len(second_ids) == 25 and not set(first_ids) & set(second_ids)
    assert page.locator("td[data-label=Created] time").first.get_attribute("datetime") <= first
    page.get_by_role("link", name="← Newer").click()
    back = [a.get_attribute("href") for a in page.get_by_role("link", name="View Details").all()]
    assert set(first_ids) <= set(back) | set()  # the first page again (newer records may join)


def test_view_details(page, live, tmp_path):
    log_in(page, live, "owner")
    open_audit_logs(page, live)
    search(page, "/api/v1/pathways")
    page.get_by_label("Method").select_option("POST")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name="View Details").first.click()
    page.wait_for_url(re.compile(r"/organization/audit-logs/[0-9a-f]{24}$"))
    for title in ("Body", "Query parameters", "Path parameters", "Headers"):
        assert page.get_by_role("heading", name=title, exact=True).is_visible()
    body = page.locator("pre.payload").first.inner_text()
    assert '"name"' in body and "\n  " in body  # pretty-printed JSON
    assert page.get_by_role("link", name="All requests to this path").is_visible()
    summary = page.locator("dl.summary").inner_text()
    assert "Onboarding" in summary or "Research" in summary  # the workspace by name
    target = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    page.screenshot(path=str(target / "audit-log-details.png"), full_page=False)
    page.get_by_role("link", name="All requests by this account").click()
    assert "accountId=" in page.url and column(page, "Account")


def test_member_gets_403_until_view_audit_log_is_granted(browser, live):
    member_context = browser.new_context()
    member = member_context.new_page()
    log_in(member, live, "member")
    nav = member.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Audit Logs").count() == 0
    answer = member.goto(f"{live['url']}/organization/audit-logs")
    assert answer.status == 403
    assert "viewAuditLog" in member.content()
    owner_context = browser.new_context()
    owner = owner_context.new_page()
    log_in(owner, live, "owner")
    owner.goto(f"{live['url']}/organization/roles")
    section = owner.locator("#role-member")
    section.get_by_role("checkbox", name=re.compile("viewAuditLog")).check()
    section.get_by_role("button", name="Save Member").click()
    assert "Permissions of 'Member' saved." in owner.get_by_role("status").first.inner_text()
    answer = member.goto(f"{live['url']}/organization/audit-logs")
    assert answer.status == 200
    assert (
        member.get_by_role("navigation", name="Main").get_by_role("link", name="Audit Logs").count()
        == 1
    )
    # and revoke it again, for the other tests
    owner.goto(f"{live['url']}/organization/roles")
    owner.locator("#role-member").get_by_role("checkbox", name=re.compile("viewAuditLog")).uncheck()
    owner.locator("#role-member").get_by_role("button", name="Save Member").click()
    assert member.goto(f"{live['url']}/organization/audit-logs").status == 403
    member_context.close()
    owner_context.close()


def test_logged_script_payloads_render_as_text(page, live):
    """Payloads in every field the UI renders: path, body, query, user agent, headers, workspace."""
    client = live["app"].test_client()
    login = live["logins"]["owner"]
    token = client.post(
        "/api/v1/auth/token", json={"email": login["email"], "password": login["password"]}
    ).get_json()["token"]
    payload = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2>"
    headers = {"Authorization": f"Bearer {token}", "User-Agent": payload, "Referer": payload}
    created = client.post(
        "/api/v1/workspaces?x=<script>window.__xss=3</script>",
        json={"name": payload, "description": payload},
        headers=headers,
    )
    assert created.status_code == 201
    client.get("/api/v1/<svg onload=window.__xss=4>", headers=headers)
    log_in(page, live, "owner")
    page.goto(f"{live['url']}/organization/audit-logs?path=%2Fapi%2Fv1%2Fworkspaces&method=POST")
    assert payload in page.locator("td[data-label=Workspace]").first.inner_text()
    page.get_by_role("link", name="View Details").first.click()
    details = page.locator("main").inner_text()
    assert details.count(payload) >= 4  # body, query, headers, user agent and workspace
    assert "window.__xss=3" in details
    page.goto(f"{live['url']}/organization/audit-logs?q=svg")
    assert "<svg onload=window.__xss=4>" in page.locator("td[data-label=Path]").first.inner_text()
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("main svg:not(.bars)").count() == 0  # (the chart's own is .bars)


def test_small_screen_layout_has_no_sideways_scroll(browser, live):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, live, "owner")
    page.goto(f"{live['url']}/organization/audit-logs")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 392
    assert page.locator("td[data-label=Path]").first.is_visible()
    context.close()


def test_keyboard_only_search(page, live):
    log_in(page, live, "owner")
    page.goto(f"{live['url']}/organization/audit-logs")
    page.get_by_label("Search").focus()
    page.keyboard.type("members")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=members"))
    assert all("members" in p for p in column(page, "Path"))


def test_support_finds_a_change_and_a_failure_by_what_they_paste(page, live):
    """A role change made through the API: found by the admin's email and the action, its
    details say what changed by name; a refused call says why; the credential is one click
    from everything it did."""
    client = live["app"].test_client()
    owner, member = live["logins"]["owner"], live["logins"]["member"]
    token = client.post(
        "/api/v1/auth/token", json={"email": owner["email"], "password": owner["password"]}
    ).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    roles = {
        r["name"]: r["id"] for r in client.get("/api/v1/roles", headers=headers).get_json()["items"]
    }
    members = client.get("/api/v1/members", headers=headers).get_json()["items"]
    target = next(m for m in members if m["email"] == member["email"])
    changed = client.patch(
        f"/api/v1/members/{target['accountId']}", json={"roleId": roles["Admin"]}, headers=headers
    )
    assert changed.status_code == 200, changed.get_json()
    back = client.patch(
        f"/api/v1/members/{target['accountId']}", json={"roleId": roles["Member"]}, headers=headers
    )
    assert back.status_code == 200
    refused = client.delete(f"/api/v1/roles/{roles['Owner']}", headers=headers)
    assert refused.status_code == 409
    log_in(page, live, "owner")
    open_audit_logs(page, live)
    search(page, f"actor:{owner['email']} action:member.roleChange")
    assert column(page, "Resource")[0].splitlines() == ["members", "Member's role changed"]
    page.get_by_role("link", name="View Details").nth(1).click()  # the first change: to Admin
    changes = page.locator("#changes")
    assert changes.get_by_role("row", name=re.compile(r"^role Member Admin")).is_visible()
    page.locator("#credential-link").click()
    page.wait_for_load_state("networkidle")
    assert page.get_by_label("Search").input_value().startswith("credential:jwt_")
    actions = [cell.splitlines()[-1] for cell in column(page, "Resource")]
    assert actions == [  # exactly what this one token did, newest first, its issue last
        "Role deletion failed",  # the 409: it did not happen
        "Member's role changed",
        "Member's role changed",
        "Members listed",
        "Roles listed",
        "Logged in",
    ]
    search(page, f"credential:{page.get_by_label('Search').input_value()[11:]} status:4xx")
    page.get_by_role("link", name="View Details").first.click()
    why = page.locator("#response-error").inner_text()
    assert "409" in why and "conflict" in why and "Owner role cannot be edited" in why


def test_times_and_date_filters_in_the_viewers_zone_with_utc_a_click_away(browser, live):
    """A browser in New York: the Created column says so (EST), a time copied from it into
    From finds that record, and UTC is one click away and remembered."""
    from datetime import UTC, datetime

    from bson import ObjectId

    from audit_app.db import get_audit_db

    from ..factories import audit_record

    app = live["app"]
    organization = ObjectId(live["summary"]["organizationId"])
    at = datetime(2026, 11, 25, 21, 27, 38, tzinfo=UTC)  # 4:27:38 PM in New York
    marker = "/api/v1/pathways/time-zone-probe"
    with app.app_context():
        get_audit_db().audit_logs.insert_one(
            audit_record(organization, created_at=at, storedAt=at, path=marker)
        )
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, locale="en-US", timezone_id="America/New_York"
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        log_in(page, live, "owner")
        page.goto(f"{live['url']}/organization/audit-logs?path=time-zone-probe")
        shown = column(page, "Created")[0]
        assert "16:27:38" in shown and ("EST" in shown or "GMT-5" in shown), shown
        assert "America/New_York" in page.locator("#tz-hint").inner_text()
        # the shown time, typed into From as a person would: the record is found
        page.goto(f"{live['url']}/organization/audit-logs?path=time-zone-probe")
        page.get_by_label("From").fill("2026-11-25T16:27:38")
        page.get_by_role("button", name="Apply").click()
        page.wait_for_load_state("networkidle")
        assert "from=2026-11-25T21%3A27%3A38.000Z" in page.url
        assert len(column(page, "Created")) == 1
        assert page.get_by_label("From").input_value() == "2026-11-25T16:27:38"
        page.get_by_label("From").fill("2026-11-25T16:27:39")  # a second later: not found
        page.get_by_role("button", name="Apply").click()
        page.wait_for_load_state("networkidle")
        assert column(page, "Created") == []
        # UTC, one click away, remembered across pages; the filter keeps its moment
        page.goto(f"{live['url']}/organization/audit-logs?path=time-zone-probe")
        page.locator("#tz-toggle").click()
        assert "21:27:38" in column(page, "Created")[0] and "UTC" in column(page, "Created")[0]
        assert page.locator("#tz-hint").inner_text() == "Dates and times are UTC."
        page.reload()
        assert "21:27:38" in column(page, "Created")[0]
        page.get_by_label("From").fill("2026-11-25T21:27:38")
        page.get_by_role("button", name="Apply").click()
        page.wait_for_load_state("networkidle")
        assert "from=2026-11-25T21%3A27%3A38.000Z" in page.url and len(column(page, "Created")) == 1
    finally:
        context.close()


def test_the_list_reads_on_one_line_wide_and_fits_narrow(browser, live):
    """At 1440 px a time and View Details do not wrap; at 390 px nothing scrolls sideways
    and badges keep their own width."""
    for width, height in ((1440, 900), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(10_000)
        try:
            log_in(page, live, "owner")
            page.goto(f"{live['url']}/organization/audit-logs?limit=25")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, (width, overflow)
            lines = page.evaluate(
                """() => [...document.querySelectorAll(
                    'td[data-label="Created"] time, td[data-label="Actions"] a')]
                    .map((node) => node.getClientRects().length)"""
            )
            assert lines and all(n == 1 for n in lines), (width, lines)
            if width == 390:
                stretched = page.evaluate(  # no wider than its text and its padding
                    """() => [...document.querySelectorAll('td > .tag, td > .status')]
                        .filter((badge) => {
                            const text = document.createRange();
                            text.selectNodeContents(badge);
                            const style = getComputedStyle(badge);
                            return badge.getBoundingClientRect().width
                                > text.getBoundingClientRect().width + 2
                                    + parseFloat(style.paddingLeft)
                                    + parseFloat(style.paddingRight);
                        }).length"""
                )
                assert stretched == 0
        finally:
            context.close()


def test_the_activity_chart_counts_what_the_api_counts_and_narrows_on_a_click(page, live):
    client = live["app"].test_client()
    login = live["logins"]["admin"]
    token = client.post(
        "/api/v1/auth/token", json={"email": login["email"], "password": login["password"]}
    ).get_json()["token"]
    log_in(page, live, "owner")
    open_audit_logs(page, live)
    page.get_by_label("Hide my views of this log").uncheck()  # as the API: every record
    search(page, "status:4xx")
    assert page.locator("#activity").get_attribute("data-zone") == "Europe/Paris"  # the browser's
    bars = page.locator("#activity a.bar")
    shown = {
        bars.nth(i).get_attribute("data-start"): int(bars.nth(i).get_attribute("data-count"))
        for i in range(bars.count())
    }
    api = client.get(
        "/api/v1/audit-logs/histogram",
        query_string={"q": "status:4xx", "interval": "day", "tz": "Europe/Paris"},
        headers={"Authorization": f"Bearer {token}"},
    ).get_json()
    assert shown == {b["start"]: b["count"] for b in api["buckets"]}
    assert sum(shown.values()) > 0  # the demo's incidents
    busiest = max(shown, key=shown.get)
    page.locator(f'#activity a.bar[data-start="{busiest}"]').click()
    page.wait_for_load_state("networkidle")
    url = unquote(page.url)
    assert f"from={busiest}" in url and "q=status:4xx" in url  # the filters stay
    created = column(page, "Created")
    assert len(created) == shown[busiest]
    assert page.locator("#activity a.bar").count() == 24  # that day, per hour


def test_support_pastes_an_account_id_and_reads_what_was_done_to_it(page, live):
    """A customer says "someone changed my role": support pastes their account id."""
    from tests.factories import Api

    member, owner = live["people"]["member"], live["logins"]["owner"]
    api = Api(live["app"].test_client())
    token = api.client.post(
        "/api/v1/auth/token", json={"email": owner["email"], "password": owner["password"]}
    ).get_json()["token"]
    roles = {r["name"]: r["id"] for r in api.get("/api/v1/roles", token=token).get_json()["items"]}
    for role in ("Admin", "Member"):  # changed, then put back: the page's people stay as they were
        changed = api.patch(
            f"/api/v1/members/{member['_id']}", token=token, json={"roleId": roles[role]}
        )
        assert changed.status_code == 200, changed.get_json()
    log_in(page, live, "admin")
    open_audit_logs(page, live)
    search(page, str(member["_id"]))
    first = page.locator("table.records tbody tr").first
    assert "Member's role changed" in first.inner_text()
    assert "acted on it" in first.inner_text()
    assert first.locator("td[data-label=Account]").inner_text().strip() == owner["email"]
    first.get_by_role("link", name="View Details").click()
    page.wait_for_url(re.compile(r"/organization/audit-logs/[0-9a-f]{24}"))
    sentence = page.locator("#sentence").inner_text()
    assert sentence.startswith(f"{member['email']}'s role changed from Admin to Member by ")
    assert owner["email"] in sentence
    page.locator("#targets").get_by_role("link", name="Everything by or to it").first.click()
    page.wait_for_load_state("networkidle")
    assert str(member["_id"]) in unquote(page.url)
