"""Issue #26 item 3 in a real browser: one time zone everywhere. Every time on every page
reads in the viewer's zone, stated above the page, with UTC a click away and the choice
remembered across pages; a browser already in UTC is told so; without JavaScript every
page says UTC; the activity chart counts the viewer's days."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId

from audit_app.db import get_audit_db
from tests.factories import audit_record

from .conftest import log_in
from .every_page import html_pages, owner_pages, prepare, staff_signed_in

# a date and a time in text, as a person reads it: what no page shows outside <time>
RAW_TIME = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"
# each <time>: its datetime, precision and text; and the page's text without them (nor
# the request's own data, shown as it came, nor the search bar's examples)
TIMES = """() => [...document.querySelectorAll('time')].map(
    (t) => [t.getAttribute('datetime'), t.dataset.local || '', t.textContent.trim()])"""
TEXT_WITHOUT_TIMES = """() => {
  const copy = document.querySelector('main').cloneNode(true);
  copy.querySelectorAll('time, pre.payload, pre.json, #q-hint, script').forEach((n) => n.remove());
  return copy.textContent;
}"""


@pytest.fixture(scope="module")
def ids(live):
    return prepare(live)


@pytest.fixture(scope="module")
def pages(live, ids):
    return owner_pages(live, ids)


def _context(browser, **options):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    return context, page


def _assert_shown_in(zone: ZoneInfo, times: list[list[str]], path: str) -> None:
    """Each <time> says its moment's local date and time, not UTC."""
    for stamp, precision, text in times:
        local = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(zone)
        assert not text.endswith("UTC"), (path, stamp, text)
        if precision in ("second", "minute", "hour", ""):
            assert f"{local:%H:%M}" in text, (path, stamp, text, zone)
        if precision in ("second", "minute", "date", "day", ""):
            assert re.search(rf"\b{local.day}\b", text), (path, stamp, text, zone)


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_every_time_on_every_page_reads_in_the_viewers_zone(browser, live, pages, zone):
    context, page = _context(browser, timezone_id=zone, locale="en-US")
    try:
        log_in(page, live, "owner")
        seen = 0
        for path in html_pages(page, live, pages):
            page.goto(f"{live['url']}{path}")
            page.wait_for_load_state("networkidle")
            times = page.evaluate(TIMES)
            if not times:
                assert page.locator("#zone-bar").count() == 0, path  # nothing to state
                continue
            seen += 1
            hint = page.locator("#tz-hint").inner_text()
            assert re.fullmatch(r"Dates and times are in [A-Za-z_]+/[A-Za-z_]+\.", hint), hint
            assert zone in hint or (zone == "Asia/Kolkata" and "Asia/Calcutta" in hint), hint
            assert page.locator("#tz-toggle").inner_text() == "Show UTC"
            _assert_shown_in(ZoneInfo(zone), times, path)
            assert not re.search(RAW_TIME, page.evaluate(TEXT_WITHOUT_TIMES)), path
        # the list, details, integrity, members, keys, streams, settings and the invitation
        assert seen >= 8, seen
    finally:
        context.close()


def test_the_platform_staff_s_pages_read_in_the_viewers_zone_too(browser, live, pages):
    context, page = _context(browser, timezone_id="America/New_York", locale="en-US")
    try:
        visited = staff_signed_in(page, live, pages)
        organization = live["summary"]["organizationId"]
        assert f"/staff/organizations/{organization}/audit-logs" in visited, visited
        seen = 0
        for path in visited:
            page.goto(f"{live['url']}{path}")
            times = page.evaluate(TIMES)
            if not times:
                continue
            seen += 1
            hint = page.locator("#tz-hint").inner_text()
            assert hint == "Dates and times are in America/New_York.", (path, hint)
            _assert_shown_in(ZoneInfo("America/New_York"), times, path)
            assert not re.search(RAW_TIME, page.evaluate(TEXT_WITHOUT_TIMES)), path
        assert seen >= 2, seen  # the grants, and the organization's log
        page.goto(f"{live['url']}/staff/organizations/{organization}/audit-logs")
        activity = page.locator("#activity").inner_text()
        assert "Days in America/New_York" in activity, activity
    finally:
        context.close()


def test_utc_is_a_click_away_and_remembered_across_pages(browser, live, pages):
    context, page = _context(browser, timezone_id="America/New_York", locale="en-US")
    try:
        log_in(page, live, "owner")
        page.goto(f"{live['url']}/organization/members")
        page.locator("#tz-toggle").click()
        assert page.locator("#tz-hint").inner_text() == "Dates and times are UTC."
        assert page.locator("#tz-toggle").inner_text() == "Show America/New_York"
        joined = page.locator("td[data-label=Joined] time").first
        stamp = datetime.fromisoformat(joined.get_attribute("datetime").replace("Z", "+00:00"))
        assert f"{stamp:%H:%M}" in joined.inner_text() and "UTC" in joined.inner_text()
        for path in ("/organization/api-keys", "/organization/audit-logs/integrity"):
            page.goto(f"{live['url']}{path}")
            assert page.locator("#tz-hint").inner_text() == "Dates and times are UTC.", path
            texts = [t[2] for t in page.evaluate(TIMES)]
            assert texts and all(t.endswith("UTC") for t in texts), (path, texts)
        page.locator("#tz-toggle").click()  # and back
        assert page.locator("#tz-hint").inner_text() == "Dates and times are in America/New_York."
        page.goto(f"{live['url']}/organization/settings")
        _assert_shown_in(ZoneInfo("America/New_York"), page.evaluate(TIMES), "settings")
    finally:
        context.close()


def test_a_browser_in_utc_is_told_it_is_already_utc(browser, live, pages):
    context, page = _context(browser, timezone_id="UTC", locale="en-GB")
    try:
        log_in(page, live, "owner")
        page.goto(f"{live['url']}/organization/audit-logs")
        hint = page.locator("#tz-hint")
        assert hint.inner_text() == "Dates and times are UTC, your browser's time zone."
        page.get_by_role("button", name="Show UTC").click()
        already = "Your browser's time zone is already UTC: dates and times are UTC."
        assert hint.inner_text() == already
        texts = [t[2] for t in page.evaluate(TIMES) if t[1] in ("second", "minute")]
        assert texts and all(t.endswith("UTC") for t in texts), texts
    finally:
        context.close()


@pytest.mark.parametrize("who", ["owner", "staff"])
def test_without_javascript_every_page_says_utc(browser, live, pages, who):
    context, page = _context(browser, java_script_enabled=False)
    try:
        if who == "staff":
            visited = staff_signed_in(page, live, pages)
        else:
            log_in(page, live, "owner")
            visited = html_pages(page, live, pages)
        seen = 0
        for path in visited:
            page.goto(f"{live['url']}{path}")
            times = page.evaluate(TIMES)
            if not times:
                continue
            seen += 1
            assert page.locator("#tz-hint").inner_text() == "Dates and times are UTC.", path
            assert page.locator("#tz-toggle").is_hidden(), path  # it needs JavaScript
            for stamp, _, text in times:
                assert text.endswith("UTC"), (path, stamp, text)
                assert text.startswith(stamp[:10]) or text.startswith(stamp[11:16]), (path, text)
            assert not re.search(RAW_TIME, page.evaluate(TEXT_WITHOUT_TIMES)), path
        assert seen >= (2 if who == "staff" else 8), seen
    finally:
        context.close()


def _plant(live, at: datetime, marker: str) -> None:
    organization = ObjectId(live["summary"]["organizationId"])
    with live["app"].app_context():
        get_audit_db().audit_logs.insert_one(
            audit_record(organization, created_at=at, storedAt=at, path=marker)
        )


def _bar_with_records(page) -> tuple[str, int]:
    bars = page.locator("#activity a.bar")
    counted = [
        (bars.nth(i).get_attribute("data-start"), int(bars.nth(i).get_attribute("data-count")))
        for i in range(bars.count())
    ]
    [found] = [(start, count) for start, count in counted if count]
    return found


@pytest.mark.parametrize(
    ("zone", "hour", "shift"),
    [
        ("Asia/Kolkata", 23, 1),  # 23:30 UTC is 05:00 the next day in Kolkata
        ("America/New_York", 0, -1),  # 00:30 UTC is 19:30 the day before in New York
    ],
)
def test_the_chart_counts_the_viewers_days(browser, live, zone, hour, shift):
    day = (datetime.now(UTC) - timedelta(days=4)).replace(hour=0, minute=0, second=0, microsecond=0)
    at = day.replace(hour=hour, minute=30)
    marker = f"/api/v1/pathways/chart-probe-{hour}"
    _plant(live, at, marker)
    local_day = (day + timedelta(days=shift)).date()
    midnight = datetime(local_day.year, local_day.month, local_day.day, tzinfo=ZoneInfo(zone))
    expected = midnight.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    span = f"from={(day - timedelta(days=3)):%Y-%m-%d}&to={(day + timedelta(days=3)):%Y-%m-%d}"
    context, page = _context(browser, timezone_id=zone, locale="en-US")
    try:
        log_in(page, live, "owner")
        page.goto(f"{live['url']}/organization/audit-logs?path={marker}&{span}")
        chart = page.locator("#activity")
        local = chart.get_attribute("data-zone")  # the browser's name for it
        assert local in (zone, "Asia/Calcutta")
        assert _bar_with_records(page) == (expected, 1)
        assert f"bars are days in {local}" in chart.inner_text()
        # the date axis names the viewer's days: the bar's own label is its local date
        axis = page.locator("#activity .axis time").all_inner_texts()
        assert axis and all(re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}", label) for label in axis)
        title = page.locator(f'#activity a.bar[data-start="{expected}"] title').text_content()
        said = f"{midnight:%a}, {midnight:%b} {local_day.day}, {local_day.year}: 1 request"
        assert title.startswith(said), title
        # UTC, a click away: the same chart, counted by UTC days
        page.locator("#tz-toggle").click()
        page.wait_for_selector('#activity[data-zone="UTC"]')
        assert _bar_with_records(page) == (f"{day:%Y-%m-%d}T00:00:00.000Z", 1)
        page.locator("#tz-toggle").click()
        page.wait_for_selector(f'#activity[data-zone="{local}"]')
        # a page counted before the browser said its zone (the cookie lost) is counted again
        page.context.clear_cookies(name="auditLogTimeZone")
        page.goto(f"{live['url']}/organization/audit-logs?path={marker}&{span}")
        page.wait_for_selector('#activity:not([data-zone="UTC"])')
        assert _bar_with_records(page) == (expected, 1)
        # a bar's link narrows to exactly that local day
        page.locator(f'#activity a.bar[data-start="{expected}"]').click()
        page.wait_for_load_state("networkidle")
        assert f"from={expected}".replace(":", "%3A") in page.url or f"from={expected}" in page.url
        assert page.locator("table.records tbody tr").count() == 1
    finally:
        context.close()
