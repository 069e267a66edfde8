"""Integrity you can click, in a real browser: after someone edits one sealed record and
deletes another in the database, the audit log's banner leads to the windows that failed
and to the records concerned. (A module of its own: it tampers with the demo's log.)"""

from __future__ import annotations

import re
import time

from bson import ObjectId

from audit_app.db import get_audit_db

from .conftest import log_in


def _run(live, *args) -> None:
    result = live["app"].test_cli_runner().invoke(args=list(args))
    assert result.exit_code in (0, 1), result.output


def test_the_banner_leads_to_what_changed_and_to_the_records(page, live):
    organization_id = ObjectId(live["summary"]["organizationId"])
    time.sleep(6)  # `seal --now` seals up to 5 s ago: the demo's records were just stored
    _run(live, "seal", "--now")
    with live["app"].app_context():
        audit = get_audit_db().audit_logs
        edited, deleted = list(
            audit.find({"organizationId": organization_id, "statusCode": 200}).limit(2)
        )
        audit.update_one({"_id": edited["_id"]}, {"$set": {"statusCode": 404}})
        audit.delete_one({"_id": deleted["_id"]})
    _run(live, "verify", "--organization", str(organization_id))

    log_in(page, live, "admin")
    page.goto(f"{live['url']}/organization/audit-logs")
    banner = page.locator("#integrity")
    assert "Integrity warning" in banner.inner_text()
    banner.get_by_role("link", name=re.compile("See what changed")).click()
    page.wait_for_url(re.compile(r"/organization/audit-logs/integrity"))
    assert page.locator("#integrity-state").inner_text() == "failed"
    failed = page.locator("#failed-windows").inner_text()
    assert "modified" in failed and "deleted" in failed
    assert f"{deleted['_id']} (no longer in the log)" in failed
    page.locator("#failed-windows").get_by_role("link", name=str(edited["_id"])).click()
    page.wait_for_url(re.compile(rf"/organization/audit-logs/{edited['_id']}"))
    assert "404" in page.locator("main").inner_text()  # the record as it now reads
