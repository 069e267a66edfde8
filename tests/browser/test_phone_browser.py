"""Issue #26 item 5 in a real browser at 390 px: every page an Owner can open (from the
app's URL map) fits the screen, lists read as cards, the controls are on screen and
clickable, and 50 audit records make a page a fraction of what a table of rows made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import log_in
from .every_page import html_pages, owner_pages, prepare, staff_signed_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDTH = 390
# the controls of the page that reach outside the screen (none may)
OFF_SCREEN = """(width) => [...document.querySelectorAll(`main a, main button, main select,
    main input:not([type=hidden]), main textarea, header a, header button`)]
  .filter((node) => node.getClientRects().length
    && !node.closest('.visually-hidden, [hidden], .skip-link'))
  .map((node) => [node, node.getBoundingClientRect()])
  .filter(([node, box]) => box.width && (box.left < -1 || box.right > width + 1))
  .map(([node, box]) => `${node.tagName} ${node.textContent.trim().slice(0, 30)}`
    + ` ${box.left}..${box.right}`)"""


# the controls and ids of a list that stick out of their own cell (none may)
OUT_OF_CELL = """() => [...document.querySelectorAll(
    '.table-wrap td button, .table-wrap td select, .table-wrap td a, .table-wrap td code')]
  .filter((node) => node.getClientRects().length)
  .filter((node) => {
    const box = node.getBoundingClientRect();
    const cell = node.closest('td').getBoundingClientRect();
    return box.left < cell.left - 1 || box.right > cell.right + 1;
  })
  .map((node) => `${node.tagName} ${node.textContent.trim().slice(0, 30)}`)"""


@pytest.fixture(scope="module")
def pages(live):
    return owner_pages(live, prepare(live))


@pytest.fixture
def phone(browser):
    context = browser.new_context(
        viewport={"width": WIDTH, "height": 844}, timezone_id="Asia/Kolkata", locale="en-IN"
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def test_every_page_fits_a_phone(phone, live, pages):
    log_in(phone, live, "owner")
    visited = html_pages(phone, live, pages)
    # the app's pages, from its URL map: the organization's, the log's and the account's
    for path in ("/organization/members", "/organization/audit-logs/activity", "/"):
        assert path in visited, visited
    assert any(path.startswith("/invitations/") for path in visited)
    assert any(path.startswith("/organization/audit-logs/") for path in visited)
    for path in visited:
        phone.goto(f"{live['url']}{path}")
        phone.wait_for_load_state("networkidle")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= WIDTH, (path, width)
        assert phone.evaluate(OFF_SCREEN, WIDTH) == [], path
        assert phone.evaluate(OUT_OF_CELL) == [], path
        # every list is cards: no cell beside another, each row a box of its own
        rows = phone.locator(".table-wrap tbody tr")
        for index in range(min(rows.count(), 3)):
            style = rows.nth(index).evaluate("(row) => getComputedStyle(row).display")
            assert style in ("block", "grid"), (path, style)


def _fits(phone, live, path) -> None:
    phone.goto(f"{live['url']}{path}")
    phone.wait_for_load_state("networkidle")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, (path, width)
    assert phone.evaluate(OFF_SCREEN, WIDTH) == [], path
    assert phone.evaluate(OUT_OF_CELL) == [], path


def test_the_platform_staff_s_pages_fit_a_phone(phone, live, pages):
    visited = staff_signed_in(phone, live, pages)
    assert any("/audit-logs/" in path for path in visited), visited  # a record's details
    for path in visited:
        _fits(phone, live, path)


def test_the_members_page_s_save_and_remove_are_on_screen_and_clickable(phone, live, pages):
    log_in(phone, live, "owner")
    phone.goto(f"{live['url']}/organization/members")
    card = phone.locator("tbody tr", has_text="member@demo.example")
    for name in ("Save", "Remove"):
        button = card.get_by_role("button", name=name)
        box = button.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, (name, box)
        button.click(trial=True)  # visible, enabled, not covered: a tap would reach it
    chip = card.locator("code.id")
    box = chip.bounding_box()
    assert box["x"] + box["width"] <= WIDTH and chip.is_visible()
    # the role is changed at 390 px, as on a desktop
    for role in ("Admin", "Member"):  # and back
        card = phone.locator("tbody tr", has_text="member@demo.example")
        card.get_by_label("Role of member@demo.example").select_option(label=role)
        card.get_by_role("button", name="Save").click()
        phone.wait_for_load_state("networkidle")
        assert "role" in phone.locator(".flash").first.inner_text().lower()


def test_fifty_audit_records_make_a_short_page_of_cards(phone, live, pages, tmp_path):
    log_in(phone, live, "owner")
    phone.goto(f"{live['url']}/organization/audit-logs?limit=50")
    phone.wait_for_load_state("networkidle")
    cards = phone.locator("table.records tbody tr")
    assert cards.count() == 50
    heights = cards.evaluate_all("(rows) => rows.map((row) => row.getBoundingClientRect().height)")
    # four lines: the request, what was done, who, when (a long path takes one more or two)
    assert sum(heights) / len(heights) <= 150 and max(heights) <= 260, heights
    height = phone.evaluate("document.documentElement.scrollHeight")
    assert height <= 9_500, height  # a row per field made 16,800 px
    first = cards.first
    assert first.locator("td[data-label=Method]").bounding_box()["y"] == pytest.approx(
        first.locator("td[data-label=Path]").bounding_box()["y"], abs=4
    )  # the request on one line
    details = first.get_by_role("link", name="View Details")
    details.click(trial=True)
    target = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    phone.evaluate("document.getElementById('activity').scrollIntoView()")  # chart, then cards
    phone.screenshot(path=str(target / "audit-logs-phone.png"), full_page=False)
    assert (target / "audit-logs-phone.png").stat().st_size > 10_000
