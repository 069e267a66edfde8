"""``GET /api/v1/audit-logs/histogram``: activity per hour or day by status class, for
the log's own filters, at bounded cost (PRODUCT.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .factories import audit_record, settled

DAY = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def records(db, org, other_org):
    made = []
    for day, statuses in ((0, [200, 200, 404]), (1, [201, 500]), (3, [401, 401, 401, 200])):
        for i, status in enumerate(statuses):
            at = DAY + timedelta(days=day, hours=9 + i)
            made.append(audit_record(org.id, created_at=at, statusCode=status, method="GET"))
    made.append(audit_record(other_org.id, created_at=DAY, statusCode=200))  # not counted
    db.audit_logs.insert_many(made)
    return made


def get(api, org, **params):
    answer = api.get("/api/v1/audit-logs/histogram", as_=org.admin, query_string=params)
    return answer.status_code, answer.get_json()


def test_days_by_status_class_for_the_range(api, org, records):
    status, found = get(api, org, interval="day", **{"from": "2026-11-20", "to": "2026-11-23"})
    assert status == 200 and found["partial"] is False and found["interval"] == "day"
    by_day = {b["start"][:10]: b for b in found["buckets"]}
    assert list(by_day) == ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"]
    assert [by_day[d]["count"] for d in by_day] == [3, 2, 0, 4]
    assert by_day["2026-11-20"]["statusClasses"] == {
        "1xx": 0,
        "2xx": 2,
        "3xx": 0,
        "4xx": 1,
        "5xx": 0,
    }
    assert by_day["2026-11-23"]["statusClasses"]["4xx"] == 3
    assert sum(b["count"] for b in found["buckets"]) == 9  # the other organization's: no


def test_the_filters_and_qualifiers_apply(api, org, records):
    _, found = get(
        api,
        org,
        interval="hour",
        q="status:4xx",
        **{"from": "2026-11-23T00:00:00Z", "to": "2026-11-23T23:59:59Z"},
    )
    assert len(found["buckets"]) == 24
    assert [b["count"] for b in found["buckets"] if b["count"]] == [1, 1, 1]  # 9, 10, 11 h
    _, found = get(api, org, statusCode="5xx", **{"from": "2026-11-20", "to": "2026-11-23"})
    assert sum(b["count"] for b in found["buckets"]) == 1


def test_a_filtered_range_with_more_than_it_counts_says_partial(make_app, org, db):
    from .factories import Api

    app = make_app(AUDIT_HISTOGRAM_MAX_RECORDS=100)
    db.audit_logs.insert_many(
        [audit_record(org.id, created_at=DAY + timedelta(minutes=i)) for i in range(150)]
    )
    answer = (
        Api(app.test_client())
        .get(
            "/api/v1/audit-logs/histogram",
            as_=org.admin,
            query_string={
                "interval": "hour",
                "from": "2026-11-20",
                "to": "2026-11-20",
                "method": "GET",
            },
        )
        .get_json()
    )
    assert answer["partial"] is True and sum(b["count"] for b in answer["buckets"]) == 100
    assert answer["source"] == "records"
    # newest first: the counts are whole from countedFrom on, which says so
    assert answer["countedFrom"] == "2026-11-20T00:49:00.000Z"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"interval": "week"}, "interval"),
        ({"interval": "hour", "from": "2025-01-01", "to": "2026-11-01"}, "interval"),
        ({"from": "yesterday"}, "from"),
        ({"q": "who:me"}, "q"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(api, org, params, field):
    status, found = get(api, org, **params)
    assert status == 400 and found["error"]["field"] == field


def test_the_chart_above_the_list_links_each_bar_to_its_range(app, org, records):
    from .test_web_session import login

    client = app.test_client()
    login(client, org.admin)
    html = client.get(
        "/organization/audit-logs", query_string={"from": "2026-11-20", "to": "2026-11-23"}
    ).get_data(as_text=True)
    assert 'id="activity"' in html and "Activity per day" in html
    assert 'data-count="4"' in html and "from=2026-11-23T00:00:00.000Z" in html
    assert 'id="activity-table"' in html  # the numbers behind the chart, for screen readers


# Counts kept at write time: an organization's unfiltered view past the walk's cap ----------


def _histogram(app, person, **params):
    answer = app.api.get("/api/v1/audit-logs/histogram", as_=person, query_string=params)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


@pytest.fixture(params=["mongomock", "embedded"])
def busy(request, make_app, tmp_path):
    """The demo organization: requests made through the app over the last 14 days."""
    from audit_app.demo import DEMO_LOGINS, seed_demo

    from .factories import Api, Person

    store = {}
    if request.param == "embedded":
        store = {"MONGO_CLIENT": None, "MONGO_URI": None, "EMBEDDED_STORE_DIR": str(tmp_path / "e")}
    app = make_app(AUDIT_HISTOGRAM_MAX_RECORDS=100, **store)
    summary = seed_demo(app, 300)
    login = DEMO_LOGINS[1]
    admin = Person(login["email"], login["password"], None, "admin")
    app.api = Api(app.test_client())
    app.api.token(admin)  # logged in before anything is counted
    return app, summary, admin


def test_an_unfiltered_view_past_the_cap_is_counted_whole_from_the_write_time_counts(busy):
    from bson import ObjectId

    from audit_app.db import get_audit_db

    app, summary, admin = busy
    now = datetime.now(UTC)
    params = {
        "interval": "day",
        "from": (now - timedelta(days=15)).isoformat(),
        "to": now.isoformat(),
    }
    organization_id = ObjectId(summary["organizationId"])
    settled(app)
    with app.app_context():
        stored = get_audit_db().audit_logs.count_documents(
            {"organizationId": organization_id, "createdAt": {"$lte": now}}
        )
    assert stored > 200  # far past the cap of 100
    answer = _histogram(app, admin, **params)
    assert answer["source"] == "counters" and answer["partial"] is False
    assert sum(b["count"] for b in answer["buckets"]) == stored
    assert len([b for b in answer["buckets"] if b["count"]]) >= 10  # spread over the days
    # hour by hour, for the two busiest days, the same totals: the records walked count
    # from "from" to the millisecond, the counts kept from its whole hour (a demo record
    # in between, seeded at a fixed age, made this fail at 35 past every hour)
    since = now - timedelta(days=2)
    by_hour = _histogram(
        app, admin, interval="hour", **{"from": since.isoformat(), "to": params["to"]}
    )
    first = datetime.fromisoformat(by_hour["buckets"][0]["start"].replace("Z", "+00:00"))
    first = first if by_hour["source"] == "counters" else since
    with app.app_context():
        in_range = get_audit_db().audit_logs.count_documents(
            {"organizationId": organization_id, "createdAt": {"$gte": first, "$lte": now}}
        )
    assert sum(b["count"] for b in by_hour["buckets"]) == in_range
    # a filter is not what the counts count: the bounded walk, partial
    filtered = _histogram(app, admin, statusCode="2xx", **params)
    assert filtered["source"] == "records" and filtered["partial"] is True


def test_an_organization_older_than_the_counts_says_from_when_they_are_whole(busy):
    from bson import ObjectId

    from audit_app.db import get_db

    app, summary, admin = busy
    began = datetime.now(UTC) - timedelta(days=10)  # further back than a walk of 100 goes
    with app.app_context():
        get_db().app_upgrades.update_one({"_id": "counters-since"}, {"$set": {"at": began}})
        get_db().organizations.update_one(
            {"_id": ObjectId(summary["organizationId"])},
            {"$set": {"createdAt": began - timedelta(days=30)}},
        )
    now = datetime.now(UTC)
    answer = _histogram(
        app,
        admin,
        interval="day",
        **{"from": (now - timedelta(days=14)).isoformat(), "to": now.isoformat()},
    )
    assert answer["source"] == "counters" and answer["partial"] is True
    whole = began.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert answer["countedFrom"] == whole.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_a_failed_flush_keeps_the_tally_for_the_next():
    from bson import ObjectId
    from pymongo.errors import AutoReconnect

    from audit_app.audit.store.counters import HourlyTally

    class Down:
        def update_one(self, *args, **kwargs):
            raise AutoReconnect("store down")

    class Up:
        sent: list = []

        def update_one(self, key, change, upsert):
            self.sent.append((key, change, upsert))

    tally = HourlyTally()
    org = ObjectId()
    for status in (200, 201, 404):
        tally.add({"organizationId": org, "createdAt": DAY, "statusCode": status})
    tally.add({"organizationId": None, "createdAt": DAY, "statusCode": 200})  # not anyone's
    assert tally.flush({"audit_counters": Down()}) == 0  # logged; nothing applied, all kept
    up = Up()
    assert tally.flush({"audit_counters": up}) == 1
    [(key, change, upsert)] = up.sent
    assert key == {"organizationId": org, "day": DAY} and upsert is True
    assert change == {
        "$inc": {
            "count": 3,
            "statusClasses.2xx": 2,
            "statusClasses.4xx": 1,
            "hours.00.count": 3,
            "hours.00.statusClasses.2xx": 2,
            "hours.00.statusClasses.4xx": 1,
        }
    }
    assert tally.flush({"audit_counters": up}) == 0


def test_a_flush_waits_for_the_one_under_way_so_a_chart_never_reads_short():
    """The background task's flush takes the tally and is still sending when a chart's
    flush runs: the chart's must not return (and the chart read the store) before the
    counts it found taken have landed."""
    import threading

    from bson import ObjectId

    from audit_app.audit.store.counters import HourlyTally

    sending, release = threading.Event(), threading.Event()

    class Slow:
        applied: list = []

        def update_one(self, key, change, upsert):
            sending.set()
            release.wait(10)
            self.applied.append(change)

    store = {"audit_counters": Slow()}
    tally = HourlyTally()
    tally.add({"organizationId": ObjectId(), "createdAt": DAY, "statusCode": 200})
    background = threading.Thread(target=tally.flush, args=(store,))
    background.start()
    assert sending.wait(10)  # the background flush holds the taken tally, mid-send
    chart = threading.Thread(target=tally.flush, args=(store,))
    chart.start()
    chart.join(0.3)
    assert chart.is_alive()  # waiting for the background flush, not reading yet
    release.set()
    chart.join(10)
    background.join(10)
    assert not chart.is_alive() and len(Slow.applied) == 1
