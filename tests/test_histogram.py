"""``GET /api/v1/audit-logs/histogram``: activity per hour or day by status class, for
the log's own filters, at bounded cost (PRODUCT.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .factories import audit_record

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


def test_a_range_with_more_than_it_counts_says_partial(make_app, org, db):
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
            query_string={"interval": "hour", "from": "2026-11-20", "to": "2026-11-20"},
        )
        .get_json()
    )
    assert answer["partial"] is True and sum(b["count"] for b in answer["buckets"]) == 100
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
