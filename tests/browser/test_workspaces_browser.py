"""Organization -> Workspaces in a real browser (issue #26, item 8): reached from the
navigation; create, rename, the workspace's audit log one click away, delete after the
dialog asks; read-only for a Member."""

from __future__ import annotations

import re

from .conftest import log_in


def _row(page, name):
    return page.locator("tr", has=page.locator(".workspace-name", has_text=re.compile(f"^{name}$")))


def test_create_rename_open_its_audit_log_and_delete(page, live):
    log_in(page, live, "owner")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Workspaces").click()
    page.wait_for_url(re.compile(r"/organization/workspaces$"))

    page.get_by_label("Name", exact=True).fill("Browser team")
    page.get_by_label("Description (optional)").fill("made by the browser test")
    page.get_by_role("button", name="Create workspace").click()
    page.wait_for_url(re.compile(r"/organization/workspaces$"))
    assert "Workspace 'Browser team' created." in page.locator(".flash").first.inner_text()
    row = _row(page, "Browser team")
    assert "made by the browser test" in row.inner_text()
    workspace_id = row.locator("code.id").inner_text()
    assert re.fullmatch(r"[0-9a-f]{24}", workspace_id)

    row.get_by_label("New name of Browser team").fill("Browser crew")
    row.get_by_role("button", name="Rename").click()
    page.wait_for_url(re.compile(r"/organization/workspaces$"))
    assert "renamed to 'Browser crew'" in page.locator(".flash").first.inner_text()
    assert _row(page, "Browser team").count() == 0

    _row(page, "Browser crew").get_by_role("link", name="Audit log of Browser crew").click()
    page.wait_for_url(re.compile(rf"/organization/audit-logs\?workspaceId={workspace_id}$"))
    paths = page.locator("td[data-label=Path]").all_inner_texts()
    assert paths and all("/organization/workspaces" in path for path in paths), paths

    page.go_back()
    page.wait_for_url(re.compile(r"/organization/workspaces$"))
    _row(page, "Browser crew").get_by_role("button", name="Delete").click()
    dialog = page.locator("dialog#confirm-dialog")
    assert dialog.inner_text().startswith("Delete workspace Browser crew?")
    dialog.get_by_role("button", name="Cancel").click()
    page.reload()
    assert _row(page, "Browser crew").count() == 1  # cancelled: still there
    _row(page, "Browser crew").get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"/organization/workspaces$"))
    assert "Workspace 'Browser crew' deleted." in page.locator(".flash").first.inner_text()
    assert _row(page, "Browser crew").count() == 0


def test_a_member_sees_the_workspaces_read_only(page, live):
    log_in(page, live, "member")
    page.goto(f"{live['url']}/organization/workspaces")
    assert page.locator(".workspace-name").count() >= 1
    assert "manageWorkspaces" in page.locator("#read-only").inner_text()
    assert page.get_by_role("button", name="Create workspace").count() == 0
    assert page.get_by_role("button", name="Delete").count() == 0
