"""Issue #26 in a real browser: destructive actions ask first (with and without JavaScript),
an ended session ends gracefully, and the small untruths are gone."""

from __future__ import annotations

import re

from audit_app.auth import sessions
from audit_app.db import get_db

from .conftest import log_in


def _key_row(page, name):
    return page.locator("tr", has=page.locator("td", has_text=re.compile(rf"^{name}\b")))


def _new_key(page, live, name):
    page.goto(f"{live['url']}/organization/api-keys")
    page.locator("#key-name").fill(name)
    page.get_by_role("button", name="Create key").click()
    page.locator("#new-key").wait_for()


def test_revoking_a_key_asks_in_a_dialog_and_cancel_keeps_it(page, live):
    log_in(page, live, "owner")
    _new_key(page, live, "scripts")
    row = _key_row(page, "scripts")
    row.get_by_role("button", name="Revoke").click()
    dialog = page.locator("dialog#confirm-dialog")
    assert dialog.is_visible()
    assert dialog.inner_text().startswith("Revoke key scripts? Requests with it will fail at once")
    dialog.get_by_role("button", name="Cancel").click()
    assert not dialog.is_visible()
    page.goto(f"{live['url']}/organization/api-keys")
    assert "active" in _key_row(page, "scripts").inner_text()

    _key_row(page, "scripts").get_by_role("button", name="Revoke").click()
    dialog.get_by_role("button", name="Revoke").click()
    page.wait_for_url(re.compile(r"/organization/api-keys$"))
    assert "API key 'scripts' revoked." in page.locator(".flash").first.inner_text()
    assert "revoked" in _key_row(page, "scripts").inner_text()


def test_without_javascript_a_confirmation_page_asks(browser, live):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        log_in(page, live, "owner")
        _new_key(page, live, "nojs")
        page.goto(f"{live['url']}/organization/api-keys")
        _key_row(page, "nojs").get_by_role("button", name="Revoke").click()
        heading = page.get_by_role("heading", level=1)
        assert heading.inner_text() == "Revoke key nojs?"
        assert (
            "Requests with it will fail at once"
            in page.locator("#confirm-consequence").inner_text()
        )
        page.get_by_role("link", name="Cancel").click()
        page.wait_for_url(re.compile(r"/organization/api-keys$"))
        assert "active" in _key_row(page, "nojs").inner_text()
        _key_row(page, "nojs").get_by_role("button", name="Revoke").click()
        page.get_by_role("button", name="Revoke nojs").click()
        page.wait_for_url(re.compile(r"/organization/api-keys$"))
        assert "revoked" in _key_row(page, "nojs").inner_text()

        # shortening the retention asks too
        page.goto(f"{live['url']}/organization/settings")
        current = int(page.locator("#retention-days").input_value())
        page.locator("#retention-days").fill(str(current - 1))
        page.get_by_role("button", name="Save settings").click()
        assert (
            "Shorten the audit log retention" in page.get_by_role("heading", level=1).inner_text()
        )
        page.get_by_role("link", name="Cancel").click()
        assert page.locator("#retention-days").input_value() == str(current)
        assert page.locator("#retention-pending").count() == 0
    finally:
        context.close()


def test_a_session_that_ends_before_the_submit_comes_back_to_the_page(page, live):
    log_in(page, live, "admin")
    page.goto(f"{live['url']}/organization/roles")
    page.locator("#role-name").fill("Late role")
    with live["app"].app_context():  # the session ends on the server meanwhile
        sessions.end_account_sessions(get_db(), live["people"]["admin"]["_id"])
    page.get_by_role("button", name="Create role").click()
    page.wait_for_url(re.compile(r"/login\?next=/organization/roles$"))
    body = page.locator("main").inner_text()
    assert "Your session ended; sign in to continue" in body
    assert "CSRF" not in body and "400" not in body
    login = live["logins"]["admin"]
    page.get_by_label("Email").fill(login["email"])
    page.get_by_label("Password").fill(login["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/organization/roles$"))
    assert "Late role" not in page.locator("main").inner_text()  # nothing was changed


def test_a_cleared_cookie_before_the_submit_comes_back_to_the_page(page, live):
    log_in(page, live, "owner")
    page.goto(f"{live['url']}/organization/settings")
    page.context.clear_cookies()
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_url(re.compile(r"/login\?next=/organization/settings$"))
    assert "Your session ended; sign in to continue" in page.locator("main").inner_text()


def test_the_key_form_and_the_integrity_link_tell_the_truth(page, live):
    log_in(page, live, "admin")
    page.goto(f"{live['url']}/organization/api-keys")
    offered = page.locator("#key-role option").all_inner_texts()
    assert offered and "Owner" not in offered
    page.goto(f"{live['url']}/organization/audit-logs?q=created:>=1900-01-01")
    page.get_by_role("link", name="Integrity").click()
    page.wait_for_url(re.compile(r"/organization/audit-logs/integrity$"))
    checked = page.locator("#windows-checked").inner_text()
    assert "(every window)" not in checked or not checked.startswith("0")
