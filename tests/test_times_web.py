"""Every time on every page through one ``<time>`` element, its text UTC and saying so, the
zone stated above a page that shows one (#26 item 3), over HTTP without JavaScript: what
the pages say before static/app.js rewrites them, in server messages too."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .factories import audit_record
from .test_web_session import csrf_from, login

TIME = re.compile(
    r'<time datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)" title="\1 \(UTC\)" '
    r'data-local="(second|minute|date|day|hour)">([^<]+ UTC)</time>'
)
# a time in the text of a page, outside the <time> elements, attributes and tags
RAW = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")


def _text(page: str) -> str:
    main = page.split('<main id="main">', 1)[1].split("</main>", 1)[0]
    main = re.sub(r"<time [^>]*>.*?</time>", "", main)
    main = re.sub(r'<pre class="payload".*?</pre>', "", main, flags=re.S)
    main = re.sub(r'<p class="hint" id="q-hint">.*?</p>', "", main, flags=re.S)
    return re.sub(r"<[^>]*>", " ", main)


def test_pages_with_times_state_utc_and_show_each_as_a_time_element(make_app, org, db):
    from audit_app.audit.integrity import sealing

    app = make_app()
    db.audit_logs.insert_one(
        audit_record(org.id, created_at=datetime(2026, 11, 25, 21, 27, 38, tzinfo=UTC))
    )
    sealing.seal_and_verify(app, "the background task")  # the integrity page has its times
    client = app.test_client()
    login(client, org.owner)
    record = db.audit_logs.find_one({"organizationId": org.id})
    for path in (
        "/organization/audit-logs",
        f"/organization/audit-logs/{record['_id']}",
        "/organization/audit-logs/integrity",
        "/organization/members",
        "/organization/api-keys",
        "/organization/workspaces",
    ):
        page = client.get(path).get_data(as_text=True)
        assert '<span id="tz-hint">Dates and times are UTC.</span>' in page, path
        times = TIME.findall(page)
        assert times, path
        for stamp, precision, text in times:
            if precision == "second":
                assert text == f"{stamp[:10]} {stamp[11:19]} UTC", (path, text)
            elif precision == "minute":
                assert text == f"{stamp[:10]} {stamp[11:16]} UTC", (path, text)
        assert not RAW.search(_text(page)), (path, RAW.search(_text(page)))
    # a page with no time states no zone
    assert 'id="zone-bar"' not in client.get("/").get_data(as_text=True)


def test_a_server_message_shows_its_time_as_a_time_element(make_app, org, db):
    """A shortened retention: its confirmation and the flash after it name a moment."""
    app = make_app()
    client = app.test_client()
    login(client, org.owner)
    token = csrf_from(client.get("/organization/settings").get_data(as_text=True))
    form = {"csrf_token": token, "name": "Acme", "auditRetentionDays": "90"}
    asked = client.post("/organization/settings", data=form).get_data(as_text=True)
    assert "will be deleted for good from <time datetime=" in asked
    assert 'id="zone-bar"' in asked and not RAW.search(_text(asked))
    done = client.post(
        "/organization/settings", data={**form, "confirm": "yes"}, follow_redirects=True
    ).get_data(as_text=True)
    flash = re.search(r'<p class="flash[^"]*"[^>]*>(.*?)</p>', done, re.S).group(1)
    [(stamp, precision, _)] = TIME.findall(flash)
    effective = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert precision == "minute"
    assert abs(effective - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=2)
    assert "applies on <time" in flash


def test_a_from_or_to_chip_shows_its_time_as_a_time_element(make_app, org, db):
    app = make_app()
    client = app.test_client()
    login(client, org.owner)
    page = client.get(
        "/organization/audit-logs",
        query_string={"from": "2026-11-01T00:00:00Z", "to": "2026-11-02"},
    ).get_data(as_text=True)
    chips = re.findall(r'data-filter="(?:from|to)".*?</li>', page, re.S)
    assert len(chips) == 2 and all(TIME.search(chip) for chip in chips), chips
    assert [TIME.search(chip).group(1) for chip in chips] == [
        "2026-11-01T00:00:00.000Z",
        "2026-11-02T23:59:59.999Z",  # a date alone in "to": the end of that day
    ]


def test_server_text_is_escaped_around_its_times_and_a_date_that_is_none_stays_text(app):
    from audit_app.web.times import times_in

    with app.test_request_context():
        shown = str(times_in("<b>at 2026-01-02 03:04 UTC</b>, not 2026-13-45T00:00:00Z"))
    assert shown.startswith('&lt;b&gt;at <time datetime="2026-01-02T03:04:00.000Z"')
    assert shown.endswith("&lt;/b&gt;, not 2026-13-45T00:00:00Z")
