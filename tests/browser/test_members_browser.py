"""Organization -> Members in a real browser: invite, accept in another browser, sign out."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .conftest import log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def test_invite_accept_and_sign_out(browser, page, live, tmp_path):
    log_in(page, live, "owner")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Members").click()
    page.wait_for_url(re.compile(r"/organization/members"))
    page.get_by_label("Email").fill("new.hire@corp.local")
    page.locator("#new-role").select_option(label="Member")
    page.get_by_role("button", name="Invite").click()
    link = page.locator("#accept-url").inner_text().strip()
    assert "/invitations/inv_" in link
    assert (
        "new.hire@corp.local"
        in page.get_by_role("heading", name="Pending invitations").locator("xpath=..").inner_text()
    )
    target = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    page.screenshot(path=str(target / "members-invite.png"), full_page=True)

    invitee = browser.new_context().new_page()
    invitee.set_default_timeout(10_000)
    invitee.goto(link)
    assert "Join" in invitee.get_by_role("heading", level=1).inner_text()
    invitee.get_by_label("Choose a password").fill("chosen by me")
    invitee.get_by_label("Repeat the password").fill("chosen by me")
    invitee.get_by_role("button", name="Create my account and join").click()
    invitee.wait_for_url(re.compile(r"/$"))
    assert "Welcome to" in invitee.locator(".flash").first.inner_text()
    assert "new.hire@corp.local" in invitee.locator(".who").inner_text()
    invitee.goto(link)
    assert "not found" in invitee.content().lower()  # one use only
    invitee.goto(live["url"] + "/")
    invitee.get_by_role("button", name="Log out").click()
    invitee.wait_for_url(re.compile(r"/login"))
    assert "You are signed out." in invitee.locator(".flash").inner_text()
    invitee.context.close()
