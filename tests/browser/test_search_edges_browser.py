"""#26 item 6 in a real browser: a chip for each filter in force removed by its x, "Hide my
views of this log" on by default and kept in the URL, and search text over 200 characters
refused with the limit, the other filters kept."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from bson import ObjectId

from audit_app.db import get_db
from audit_app.workspaces.repository import find_workspaces_by_ids

from .conftest import log_in

LIST = "/organization/audit-logs"


def _query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def _a_workspace(live) -> tuple[str, str]:
    """A workspace of the demo organization: its id and its name."""
    organization = ObjectId(live["summary"]["organizationId"])
    with live["app"].app_context():
        db = get_db()
        found = db.workspaces.find_one({"organizationId": organization})
        named = find_workspaces_by_ids(db, organization, [found["_id"]])
    return str(found["_id"]), named[found["_id"]]["name"]


def test_each_filter_has_a_chip_and_its_x_removes_just_it(page, live):
    log_in(page, live, "owner")
    workspace_id, name = _a_workspace(live)
    page.goto(
        f"{live['url']}{LIST}?workspaceId={workspace_id}&from=2020-01-01"
        "&q=-action:auditLog.list%20method:GET"
    )
    chips = page.locator("#filter-chips li.chip")
    # each chip's text, its remove link (a multiplication sign) left out
    texts = [re.sub(r"\s+", " ", t.replace("\u00d7", "")).strip() for t in chips.all_inner_texts()]
    assert f"Workspace: {name}" in texts  # its name, never its id
    assert not any(workspace_id in t for t in texts)
    assert "Not action: auditLog.list" in texts and "Method: GET" in texts
    # a time as every time is shown: the viewer's (Paris), the moment in its datetime
    moment = page.locator('li.chip[data-filter="from"] time')
    assert moment.get_attribute("datetime") == "2020-01-01T00:00:00.000Z"
    assert any(t.startswith("From: 1 Jan 2020, 01:00:00") for t in texts), texts

    page.locator('li.chip[data-filter="workspaceId"] a.chip-remove').click()
    page.wait_for_url(re.compile(r"/organization/audit-logs\?"))
    left = _query(page)
    assert "workspaceId" not in left
    assert left["q"] == ["-action:auditLog.list method:GET"] and left["from"] == ["2020-01-01"]

    # one word of the search goes, the rest stays
    page.locator("#filter-chips li.chip", has_text="Not action").locator("a.chip-remove").click()
    page.wait_for_url(re.compile(r"/organization/audit-logs\?"))
    assert _query(page)["q"] == ["method:GET"]
    assert page.get_by_label("Search").input_value() == "method:GET"


def test_my_views_are_hidden_by_default_and_the_toggle_is_kept_in_the_url(page, live):
    log_in(page, live, "owner")
    owner = live["logins"]["owner"]["email"]
    for _ in range(2):
        page.goto(f"{live['url']}{LIST}")
    page.goto(f"{live['url']}{LIST}?q=action:auditLog.list")
    toggle = page.get_by_label("Hide my views of this log")
    assert toggle.is_visible() and toggle.is_checked()
    # this session's own views are hidden; the owner's views from other sessions (other
    # tests' sign-ins, as another device's would be) stay listed
    accounts = page.locator('td[data-label="Account"]').all_inner_texts()
    hidden = [a.strip() for a in accounts].count(owner)

    toggle.uncheck()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_load_state("networkidle")
    assert _query(page)["myViews"] == ["shown"]
    toggle = page.get_by_label("Hide my views of this log")
    assert not toggle.is_checked()
    accounts = [a.strip() for a in page.locator('td[data-label="Account"]').all_inner_texts()]
    shown = accounts.count(owner)
    assert shown >= hidden + 3  # the three page views of this session

    # the state travels with the other links of the page
    exports = page.locator("a[download]").evaluate_all("links => links.map(a => a.href)")
    assert exports and all("myViews=shown" in href for href in exports)

    toggle.check()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_load_state("networkidle")
    assert page.get_by_label("Hide my views of this log").is_checked()
    accounts = [a.strip() for a in page.locator('td[data-label="Account"]').all_inner_texts()]
    assert accounts.count(owner) < shown  # this session's views, more of them now, hidden


def test_search_text_over_200_characters_is_refused_saying_the_limit(page, live):
    log_in(page, live, "admin")
    workspace_id, name = _a_workspace(live)
    page.goto(f"{live['url']}{LIST}?workspaceId={workspace_id}")
    page.get_by_label("Method").select_option("DELETE")
    long = "/api/v1/pathways/" + "x" * 240
    page.get_by_label("Search").fill(long)
    assert page.get_by_label("Search").input_value() == long  # nothing cuts it on the way
    page.get_by_label("Search").press("Enter")
    page.wait_for_load_state("networkidle")
    alert = page.locator("#filter-error")
    assert alert.is_visible()
    text = alert.inner_text()
    assert "Search" in text and "200 characters" in text and str(len(long)) in text
    # everything else as it was: the text as typed, the method, the workspace
    assert page.get_by_label("Search").input_value() == long
    assert page.get_by_label("Method").input_value() == "DELETE"
    assert _query(page)["workspaceId"] == [workspace_id]
    assert (
        page.locator('li.chip[data-filter="workspaceId"]')
        .inner_text()
        .startswith(f"Workspace: {name}")
    )
    assert page.get_by_label("Search").get_attribute("aria-invalid") == "true"


def test_an_empty_chart_says_so_and_draws_no_empty_bars(page, live):
    log_in(page, live, "owner")
    page.goto(f"{live['url']}{LIST}?from=2001-01-01&to=2001-01-03")
    assert page.locator("#chart-empty").inner_text() == "No activity in this range."
    assert not page.locator("#activity svg").is_visible()
    assert not page.locator("#activity .chart-legend").is_visible()
