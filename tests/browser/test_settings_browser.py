"""Organization -> Settings in a real browser: an admin shortens the retention and puts the
audit log on legal hold, and a purge deletes nothing; the page shows the shortening waiting
for its grace; only an Owner lifts the hold, and once the grace has passed the next purge
deletes what is past retention."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bson import ObjectId

from audit_app.db import get_audit_db
from tests.factories import audit_record

from .conftest import log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
OLD_PATH = "/api/v1/pathways/from-last-quarter"


def _plant_old_record(live) -> ObjectId:
    """A request of 45 days ago in the demo organization, stored then."""
    moment = datetime.now(UTC) - timedelta(days=45)
    organization_id = ObjectId(live["summary"]["organizationId"])
    record = audit_record(organization_id, created_at=moment, storedAt=moment, path=OLD_PATH)
    with live["app"].app_context():
        get_audit_db().audit_logs.insert_one(record)
    return record["_id"]


def _purge(live) -> None:
    result = live["app"].test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 0, result.output


def _shows_the_old_record(page, live) -> bool:
    page.goto(f"{live['url']}/organization/audit-logs?path={OLD_PATH}")
    page.locator("main h1").wait_for()
    return page.locator("table.records tbody tr", has_text=OLD_PATH).count() == 1


def test_legal_hold_stops_the_purge(page, browser, live, tmp_path, monkeypatch):
    _plant_old_record(live)
    log_in(page, live, "admin")
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Settings").click()
    page.wait_for_url(re.compile(r"/organization/settings"))
    days = page.get_by_label("Keep records for (days)")
    assert days.input_value() == "400"
    days.fill("30")
    page.get_by_label(re.compile("Legal hold")).check()
    page.get_by_role("button", name="Save settings").click()
    # shortening asks first (issue #26), naming what will happen
    assert "While the legal hold is on, nothing is deleted." in page.content()
    page.get_by_role("button", name="Shorten to 30 days").click()
    assert "Settings saved." in page.locator(".flash").inner_text()
    assert "On legal hold" in page.content()
    # the shorter retention waits for its grace: the page says so, and keeps 400 until then
    assert page.get_by_label("Keep records for (days)").input_value() == "400"
    assert "Shortening to 30 days" in page.locator("#retention-pending").inner_text()
    assert page.get_by_role("button", name="Cancel this change").is_visible()
    # an Admin cannot lift the hold: the box is locked for them
    assert page.get_by_label(re.compile("Legal hold")).is_disabled()
    assert "Only an Owner lifts a legal hold" in page.content()
    target = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    page.screenshot(path=str(target / "settings-legal-hold.png"), full_page=True)

    _purge(live)
    assert _shows_the_old_record(page, live)  # 45 days old, retention 30: kept by the hold

    owner = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    log_in(owner, live, "owner")
    owner.goto(f"{live['url']}/organization/settings")
    owner.get_by_label(re.compile("Legal hold")).uncheck()
    owner.get_by_role("button", name="Save settings").click()
    assert "Settings saved." in owner.locator(".flash").inner_text()
    owner.context.close()
    _purge(live)
    assert _shows_the_old_record(page, live)  # no hold, but the grace has not passed yet

    from audit_app.audit.integrity import retention

    later = retention.utcnow() + timedelta(days=8)
    monkeypatch.setattr(retention, "utcnow", lambda: later)
    _purge(live)
    assert not _shows_the_old_record(page, live)

    # the changes are in the audit log, readable, with what changed
    page.goto(f"{live['url']}/organization/audit-logs?q=action:organization.update")
    rows = page.locator("table.records tbody tr")
    assert rows.count() == 2
    rows.first.get_by_role("link", name="View Details").click()
    changed = page.locator("table.changes tbody").inner_text()  # the newest: the hold lifted
    assert changed.split() == ["auditLegalHold", "true", "false"], changed


def test_the_organization_pages_fit_a_phone(browser, live):
    """At 390 px nothing scrolls sideways on Settings, API Keys, Members and Audit Streams."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, live, "owner")
    for path in ("settings", "api-keys", "members", "roles", "audit-streams"):
        page.goto(f"{live['url']}/organization/{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 392, (path, width)
    context.close()
