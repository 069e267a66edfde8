"""The platform's support staff in a real browser: sign in at /staff/login, paste a
customer's workspace id, state a reason, read that customer's records; then the customer's
admin sees the access, who made it and why, behind the "Platform staff" chip."""

from __future__ import annotations

import re

from bson import ObjectId

from audit_app.db import get_db

from .conftest import log_in

STAFF = "support@platform.example"
STAFF_PASSWORD = "staff password for the browser"
REASON = "Ticket 881: the customer's workspace lost its pathways"


def test_staff_find_an_id_state_a_reason_and_read_the_records(browser, page, live):
    app = live["app"]
    made = app.test_cli_runner().invoke(
        args=["create-staff", "--email", STAFF, "--password-stdin"], input=STAFF_PASSWORD + "\n"
    )
    assert made.exit_code == 0, made.output
    organization_id = ObjectId(live["summary"]["organizationId"])
    with app.app_context():
        workspace = get_db().workspaces.find_one({"organizationId": organization_id})
        name = get_db().organizations.find_one({"_id": organization_id})["name"]
    pasted = str(workspace["_id"])

    page.goto(f"{live['url']}/staff")  # not signed in: the staff's own sign-in page
    page.wait_for_url(re.compile(r"/staff/login"))
    page.get_by_label("Email").fill(STAFF)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/staff$"))

    page.get_by_label(re.compile("Paste an account")).fill(pasted)
    page.get_by_role("button", name="Look up").click()
    result = page.locator("#lookup-result")
    assert "workspace" in result.inner_text() and name in result.inner_text()
    assert result.locator(".staff-access").inner_text() == "open"
    # no record is shown before a grant
    assert page.locator("#records").count() == 0

    page.get_by_label(re.compile("Why do you need")).fill(REASON)
    page.get_by_label("Ticket (optional)").fill("T-881")
    page.get_by_role("button", name="Read the log").click()
    page.wait_for_url(re.compile(rf"/staff/organizations/{organization_id}/audit-logs\?q={pasted}"))
    assert REASON in page.locator("#grant-banner").inner_text()
    rows = page.locator("#records tbody tr")
    assert rows.count() > 0 and "No records match" not in rows.first.inner_text()
    rows.first.get_by_role("link", name="View Details").click()
    page.wait_for_url(re.compile(r"/audit-logs/[0-9a-f]{24}$"))
    assert pasted in page.locator("#record-json").inner_text()

    # the customer's admin sees who read their log, and why
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    admin = context.new_page()
    admin.set_default_timeout(10_000)
    log_in(admin, live, "admin")
    admin.goto(f"{live['url']}/organization/audit-logs")
    admin.get_by_role("link", name="Platform staff").click()
    admin.wait_for_url(re.compile(r"authType=staff"))
    table = admin.locator("table.records tbody")
    assert STAFF in table.inner_text()
    admin.locator("table.records tbody tr").first.get_by_role("link", name="View Details").click()
    admin.wait_for_url(re.compile(r"/organization/audit-logs/[0-9a-f]{24}"))
    assert admin.locator("#staff-justification").inner_text() == REASON

    # ... and ends the access: Revoke asks in a dialog, then the staff's next read is refused
    admin.goto(f"{live['url']}/organization/staff-requests")
    active = admin.locator("#staff-grants-active tbody tr")
    assert active.count() == 1 and STAFF in active.first.inner_text()
    active.first.get_by_role("button", name="Revoke").click()
    dialog = admin.locator("dialog#confirm-dialog")
    assert dialog.inner_text().startswith(f"End the access of {STAFF}?")
    dialog.get_by_role("button", name="Revoke").click()
    admin.wait_for_url(re.compile(r"/organization/staff-requests$"))
    assert "no longer reads" in admin.locator(".flash").first.inner_text()
    assert admin.locator("#no-staff-grants-active").count() == 1
    context.close()
    refused = page.goto(f"{live['url']}/staff/organizations/{organization_id}/audit-logs")
    assert refused is not None and refused.status == 403
