"""The activity chart in the viewer's time zone (#26 item 3): ``tz`` on
``GET /api/v1/audit-logs/histogram`` and on the web chart, buckets that begin at the zone's
midnights or whole hours (daylight saving time included), on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from .factories import Api, audit_record, make_org, settled

LATE = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)  # 18:30 in New York, 05:00 next day in Kolkata
EARLY = datetime(2026, 11, 21, 0, 30, tzinfo=UTC)  # 19:30 the day before in New York


@pytest.fixture(params=["mongomock", "embedded"])
def store(request, make_app, tmp_path):
    """An app on each store with an organization whose log holds the given records."""
    extra = {}
    if request.param == "embedded":
        extra = {"MONGO_CLIENT": None, "MONGO_URI": None, "EMBEDDED_STORE_DIR": str(tmp_path / "e")}
    app = make_app(**extra)
    org = make_org(app, "Zoned")
    app.api = Api(app.test_client())
    app.api.token(org.admin)

    def insert(*records):
        from audit_app.db import get_audit_db

        settled(app)
        with app.app_context():
            get_audit_db().audit_logs.insert_many([dict(r) for r in records])

    app.insert = insert
    return app, org


def histogram(app, org, **params):
    answer = app.api.get("/api/v1/audit-logs/histogram", as_=org.admin, query_string=params)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def by_start(found):
    return {b["start"]: b["count"] for b in found["buckets"] if b["count"]}


@pytest.mark.parametrize(
    "value",
    ["Mars/Olympus_Mons", "", "utc+2", "../../../etc/passwd", "localtime", "Europe/" + "x" * 80],
)
def test_a_zone_that_is_no_iana_name_is_a_400_naming_tz(store, value):
    app, org = store
    answer = app.api.get("/api/v1/audit-logs/histogram", as_=org.admin, query_string={"tz": value})
    error = answer.get_json()["error"]
    assert answer.status_code == 400 and error["field"] == "tz"
    assert "IANA time zone name" in error["message"] and "America/New_York" in error["message"]


def test_a_record_late_in_the_utc_day_is_the_next_day_in_kolkata_and_the_same_in_new_york(store):
    app, org = store
    app.insert(
        audit_record(org.id, created_at=LATE, path="/api/v1/pathways/late"),
        audit_record(org.id, created_at=EARLY, path="/api/v1/pathways/early", statusCode=404),
    )
    span = {"from": "2026-11-19T00:00:00Z", "to": "2026-11-23T00:00:00Z", "q": "pathways/"}
    utc = histogram(app, org, interval="day", **span)
    assert utc["timeZone"] == "UTC"
    assert by_start(utc) == {"2026-11-20T00:00:00.000Z": 1, "2026-11-21T00:00:00.000Z": 1}
    kolkata = histogram(app, org, interval="day", tz="Asia/Kolkata", **span)
    assert kolkata["timeZone"] == "Asia/Kolkata"
    # the Kolkata day of Nov 21 began at 18:30 UTC on Nov 20: both records are in it
    assert by_start(kolkata) == {"2026-11-20T18:30:00.000Z": 2}
    bucket = next(b for b in kolkata["buckets"] if b["count"])
    assert bucket["end"] == "2026-11-21T18:30:00.000Z"
    assert bucket["statusClasses"]["2xx"] == 1 and bucket["statusClasses"]["4xx"] == 1
    new_york = histogram(app, org, interval="day", tz="America/New_York", **span)
    assert by_start(new_york) == {"2026-11-20T05:00:00.000Z": 2}  # Nov 20 in New York
    # the first bucket is the zone's day that holds "from", the last the one that holds "to"
    assert new_york["buckets"][0]["start"] == "2026-11-18T05:00:00.000Z"
    assert new_york["buckets"][-1]["start"] == "2026-11-22T05:00:00.000Z"
    hours = histogram(app, org, interval="hour", tz="Asia/Kolkata", **span)
    assert by_start(hours) == {"2026-11-20T23:30:00.000Z": 1, "2026-11-21T00:30:00.000Z": 1}


def test_a_range_that_begins_in_the_future_has_no_bucket(store):
    app, org = store
    app.insert(audit_record(org.id, created_at=LATE))
    for zone in ("UTC", "Asia/Kolkata"):
        found = histogram(app, org, tz=zone, **{"from": "2099-01-01T00:00:00Z"})
        assert found["buckets"] == [] and found["partial"] is False


def test_the_day_daylight_saving_time_ends_has_25_hours_and_the_day_it_begins_23(store):
    app, org = store
    fall = datetime(2026, 11, 1, 4, tzinfo=UTC)  # midnight in New York, EDT
    app.insert(
        *(
            audit_record(org.id, created_at=fall + timedelta(minutes=30 + 60 * h))
            for h in range(25)  # every hour of Nov 1 in New York, the repeated one twice
        )
    )
    days = histogram(
        app,
        org,
        interval="day",
        tz="America/New_York",
        **{"from": "2026-11-01T04:00:00Z", "to": "2026-11-02T04:59:59Z"},
    )
    [nov1] = [b for b in days["buckets"] if b["count"]]
    assert (nov1["start"], nov1["end"], nov1["count"]) == (
        "2026-11-01T04:00:00.000Z",
        "2026-11-02T05:00:00.000Z",
        25,
    )
    hours = histogram(
        app,
        org,
        interval="hour",
        tz="America/New_York",
        **{"from": "2026-11-01T04:00:00Z", "to": "2026-11-02T04:59:59Z"},
    )
    assert [b["count"] for b in hours["buckets"]] == [1] * 25  # 1 AM twice: EDT, then EST
    spring = histogram(
        app,
        org,
        interval="day",
        tz="America/New_York",
        **{"from": "2026-03-08T05:00:00Z", "to": "2026-03-08T12:00:00Z"},
    )
    [(start, end)] = [(b["start"], b["end"]) for b in spring["buckets"]]
    length = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    assert length == timedelta(hours=23)


def test_a_zone_changes_neither_the_bounds_nor_the_total(store):
    """Two weeks of records every 37 minutes: each zone counts them all, each in the
    bucket its own clock says."""
    app, org = store
    first = datetime(2026, 11, 10, tzinfo=UTC)
    moments = [first + timedelta(minutes=37 * i) for i in range(14 * 24 * 60 // 37)]
    app.insert(*(audit_record(org.id, created_at=m, path="/api/v1/pathways/x") for m in moments))
    span = {"from": "2026-11-10T00:00:00Z", "to": "2026-11-23T23:59:59Z", "q": "pathways/x"}
    for name in ("UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu"):
        zone = ZoneInfo(name)
        found = histogram(app, org, interval="day", tz=name, **span)
        expected: dict[str, int] = {}
        for moment in moments:
            local = moment.astimezone(zone)
            midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
            key = midnight.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            expected[key] = expected.get(key, 0) + 1
        assert by_start(found) == expected, name
        assert found["partial"] is False


def test_the_web_chart_is_in_the_zone_the_page_says(store):
    from .test_web_session import login

    app, org = store
    app.insert(audit_record(org.id, created_at=LATE, path="/api/v1/pathways/late"))
    client = app.test_client()
    login(client, org.admin)
    span = {"from": "2026-11-19T00:00:00Z", "to": "2026-11-22T23:59:59Z"}
    client.set_cookie("auditLogTimeZone", "Asia/Kolkata")
    html = client.get("/organization/audit-logs", query_string=span).get_data(as_text=True)
    assert 'data-zone="Asia/Kolkata"' in html and "days in Asia/Kolkata" in html
    assert 'data-start="2026-11-20T18:30:00.000Z" data-count="1"' in html
    # the bar's link is that day of Kolkata, 24 hours to the millisecond
    assert "from=2026-11-20T18:30:00.000Z&amp;to=2026-11-21T18:29:59.999Z" in html
    # a cookie that names no zone: UTC, said so
    client.set_cookie("auditLogTimeZone", "Nowhere/Atlantis")
    html = client.get("/organization/audit-logs", query_string=span).get_data(as_text=True)
    assert (
        'data-zone="UTC"' in html and 'data-start="2026-11-20T00:00:00.000Z" data-count="1"' in html
    )
    # the chart alone, in a zone given by name (what the page's script asks for)
    alone = client.get(
        "/organization/audit-logs/activity", query_string={**span, "tz": "America/New_York"}
    )
    assert alone.status_code == 200
    text = alone.get_data(as_text=True)
    assert 'data-zone="America/New_York"' in text
    assert 'data-start="2026-11-20T05:00:00.000Z" data-count="1"' in text
    bad = client.get("/organization/audit-logs/activity", query_string={**span, "tz": "Mars/Base"})
    assert bad.status_code == 400
    assert "tz: Must be an IANA time zone name" in bad.get_data(as_text=True)


def test_the_chart_alone_needs_view_audit_log_and_shows_only_the_own_organization(store):
    from .test_web_session import login

    app, org = store
    other = make_org(app, "Other")
    app.insert(audit_record(other.id, created_at=LATE, path="/api/v1/pathways/theirs"))
    client = app.test_client()
    login(client, org.member)
    span = {"from": "2026-11-19T00:00:00Z", "to": "2026-11-22T23:59:59Z"}
    assert client.get("/organization/audit-logs/activity", query_string=span).status_code == 403
    login(client, org.admin)
    text = client.get("/organization/audit-logs/activity", query_string=span).get_data(True)
    assert 'data-count="1"' not in text  # the other organization's record is not counted


def test_counts_kept_per_utc_hour_answer_a_whole_hour_zone_and_the_records_a_half_hour_one(
    make_app,
):
    """Past the walk's cap, an unfiltered view comes from the counts kept at write time, per
    UTC hour: exact for New York's days, not for Kolkata's (they begin at :30), which are
    counted from the records, and say partial."""
    from audit_app.db import get_audit_db

    app = make_app(AUDIT_HISTOGRAM_MAX_RECORDS=50)
    org = make_org(app, "Counted")
    api = Api(app.test_client())
    api.token(org.admin)
    now = datetime.now(UTC)
    for i in range(120):  # through the app, so the writer counts them
        assert api.get("/api/v1/workspaces", as_=org.admin).status_code == 200
    settled(app)
    span = {"from": (now - timedelta(days=2)).isoformat(), "to": datetime.now(UTC).isoformat()}
    with app.app_context():
        stored = [
            r["createdAt"]
            for r in get_audit_db().audit_logs.find({"organizationId": org.id})
            if r["createdAt"] <= datetime.fromisoformat(span["to"])
        ]

    def got(**params):
        answer = api.get("/api/v1/audit-logs/histogram", as_=org.admin, query_string=params)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    new_york = got(interval="day", tz="America/New_York", **span)
    assert new_york["source"] == "counters" and new_york["partial"] is False
    assert sum(b["count"] for b in new_york["buckets"]) == len(stored)
    kolkata = got(interval="day", tz="Asia/Kolkata", **span)
    assert kolkata["source"] == "records" and kolkata["partial"] is True
    assert sum(b["count"] for b in kolkata["buckets"]) == 50


def test_the_histogram_documents_tz(api):
    document = api.get("/api/v1/openapi.json").get_json()
    operations = [
        item["get"] for path, item in document["paths"].items() if path.endswith("/histogram")
    ]
    assert operations  # the organization's, and the platform staff's under a grant
    for operation in operations:
        [tz] = [p for p in operation["parameters"] if p["name"] == "tz"]
        assert tz["schema"] == {"type": "string", "default": "UTC"}


@pytest.mark.parametrize("kind", ["mongomock", "embedded"])
@pytest.mark.parametrize("before", [5, 70])
def test_counts_kept_per_hour_leave_out_the_records_before_from_and_after_to(
    make_app, tmp_path, before, kind
):
    """Past the walk's cap an unfiltered chart comes from the counts kept per UTC hour: the
    records of ``from``'s hour before it and of ``to``'s hour after it are walked and taken
    out, so the bars count what their links list. An edge too busy to walk (more than the
    cap) leaves its hour as kept and the answer says from when its counts are whole."""
    from audit_app.audit.store.counters import HourlyTally
    from audit_app.db import get_audit_db

    extra = {}
    if kind == "embedded":
        extra = {"MONGO_CLIENT": None, "MONGO_URI": None, "EMBEDDED_STORE_DIR": str(tmp_path / "e")}
    app = make_app(AUDIT_HISTOGRAM_MAX_RECORDS=50, **extra)
    org = make_org(app, "Edges")
    app.api = Api(app.test_client())
    app.api.token(org.admin)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    start, end = hour + timedelta(minutes=30), hour + timedelta(hours=3, minutes=30)

    def at(first, count, step):
        return [first + i * step for i in range(count)]

    inside = at(start, 80, timedelta(minutes=2)) + at(
        hour + timedelta(hours=3), 3, timedelta(minutes=5)
    )
    outside = at(hour, before, timedelta(seconds=20)) + at(
        end + timedelta(minutes=1), 5, timedelta(minutes=4)
    )
    records = [audit_record(org.id, created_at=moment) for moment in inside + outside]
    tally = HourlyTally()
    with app.app_context():
        get_audit_db().audit_logs.insert_many(records)
        for record in records:  # counted as the writer counts what it stores
            tally.add(record)
        tally.flush(get_audit_db())
    found = histogram(
        app, org, interval="hour", **{"from": start.isoformat(), "to": end.isoformat()}
    )
    assert found["source"] == "counters"
    first = by_start(found)[hour.strftime("%Y-%m-%dT%H:%M:%S.000Z")]
    if before < 50:
        assert found["partial"] is False and found["countedFrom"] is None
        assert sum(b["count"] for b in found["buckets"]) == len(inside)
        assert first == 15  # from 30 past, every two minutes
    else:  # the first hour's edge is past the cap: kept whole, and said so
        assert found["partial"] is True
        assert found["countedFrom"] == (hour + timedelta(hours=1)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z"
        )
        assert sum(b["count"] for b in found["buckets"]) == len(inside) + before
