"""The ``-`` qualifiers and the hiding of a viewer's views on both stores.

- agreement: on hypothesis-generated records, an exclusion lists the same pages on the
  embedded store's table as mongomock's engine (MongoDB's semantics), and what it keeps is
  exactly the complement of what its qualifier finds, within the range, on each store;
- plans: ``EXPLAIN QUERY PLAN`` of each excluding shape walks the index its other filters
  name (``org_newest`` when none), with no sort step and no scan of a table; an excluded
  target is a primary-key probe of ``audit_targets`` per record walked;
- the app's own requests (the list, the chart's SQL counts, the export) never take the
  generic road on the embedded store.
"""

from __future__ import annotations

import json
import re

from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from audit_app.audit.actions import LOG_VIEWS
from audit_app.audit.store import embedded
from audit_app.audit.store.embedded import AuditTable, plan_search, plan_sql
from audit_app.audit.store.query import (
    EXCLUDE,
    HIDE_VIEWS_OF,
    AuditQuery,
    ListQuerySchema,
    merge_search,
    parse_query,
)
from audit_app.audit.store.repository import NEWEST_FIRST, index_for, iter_records

from .factories import Api, audit_record, make_org, settled
from .test_embedded_store import BASE, IDS, ORG, Both, _pages, _record, rows

MEMBER = ["member.invite", "member.remove", "member.roleChange"]
# each exclusion and the search it leaves out; None: a filter set directly (as the service
# resolves it), keyed by what it stands for
EXCLUSIONS = [
    "-action:member.invite",
    "-action:member.*",
    "-status:4xx",
    "-status:404",
    "-ip:10.0.0.1",
    "-requestId:r1",
    "-credential:jwt_credzero0",
    "-method:POST",
    f"-target:{IDS[0]}",
    "-path:STAR",
    "-path:/api/v1/pathways",
    "-created:>=2026-05-01T00:00:00.040Z",
    "-created:<=2026-05-01T00:00:00.020Z",
    "-actor",  # accountId IDS[0], as the service resolves an email
    "hide",  # the viewer IDS[0]'s own views of the log
]
ALSO = st.sampled_from([{}, {"method": "GET"}, {"statusCode": "4xx"}, {"q": "pathways"}])


def _filters(exclusion: str, also: dict) -> tuple[dict, dict]:
    """The excluding filters and the filters of what they leave out."""
    args = dict(also)
    if exclusion == "hide":
        kept = merge_search(parse_query(MultiDict(args), ListQuerySchema()))
        kept.pop("limit")
        return {**kept, HIDE_VIEWS_OF: IDS[0]}, {}
    if exclusion == "-actor":
        kept = merge_search(parse_query(MultiDict(args), ListQuerySchema()))
        kept.pop("limit")
        return {**kept, EXCLUDE: {"accountId": [IDS[0]]}}, {"accountId": IDS[0]}
    positive = exclusion[1:]
    q = f"{also['q']} {exclusion}" if "q" in also else exclusion
    filters = merge_search(parse_query(MultiDict({**args, "q": q}), ListQuerySchema()))
    filters.pop("limit")
    if filters[EXCLUDE].get("action") == ["member.*"]:  # as the service resolves it
        filters[EXCLUDE]["action"] = MEMBER
    left_out = merge_search(parse_query(MultiDict({"q": positive}), ListQuerySchema()))
    left_out.pop("limit")
    if left_out.get("action") == "member.*":
        left_out["action"] = MEMBER
    return filters, left_out


def _ids(db, filters) -> list[ObjectId]:
    return [r["_id"] for r in iter_records(db, ORG, AuditQuery(filters=filters).branches(), 5000)]


def _records(data):
    made = [_record(i, *row) for i, row in enumerate(data)]
    for i, record in enumerate(made):
        if i % 3 == 0:  # some reads of the log, by the viewer and by others, some on a page
            record["action"] = LOG_VIEWS[i % len(LOG_VIEWS)]
            record["authType"] = "session" if i % 2 == 0 else record["authType"]
    return made


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=rows,
    exclusion=st.sampled_from(EXCLUSIONS),
    also=ALSO,
    limit=st.integers(1, 4),
)
def test_an_exclusion_is_the_complement_of_its_search_on_both_stores(
    tmp_path_factory, data, exclusion, also, limit
):
    both = Both(tmp_path_factory.mktemp("n") / "audit.sqlite3")
    try:
        records = _records(data)
        both.insert(records)
        filters, left_out = _filters(exclusion, also)
        before = embedded.FALLBACKS[0]
        assert _pages(both.sql, filters, limit) == _pages(both.mock, filters, limit)
        assert embedded.FALLBACKS[0] == before  # answered by SQL over an index
        plain = {k: v for k, v in filters.items() if k not in (EXCLUDE, HIDE_VIEWS_OF)}
        for db in (both.sql, both.mock):
            everything = _ids(db, plain)
            kept = _ids(db, filters)
            if exclusion == "hide":
                views = {
                    r["_id"]
                    for r in records
                    if r["accountId"] == IDS[0]
                    and r["authType"] == "session"
                    and r["action"] in LOG_VIEWS
                }
            else:
                views = set(_ids(db, {**plain, **left_out}))
            assert set(kept) == set(everything) - views
            assert kept == [i for i in everything if i not in views]  # in the same order
    finally:
        both.table.close()


def _plan(connection, sql, parameters) -> list[str]:
    return [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, parameters)]


PLANNED = [
    ({"q": "-action:auditLog.list"}, "org_newest"),
    ({"q": "-status:4xx -status:404 -method:GET"}, "org_newest"),
    ({"q": f"-target:{IDS[0]}"}, "org_newest"),
    ({"q": "-path:roles -path:/api/v1/x"}, "org_newest"),
    ({"q": "-created:>=2026-05-02"}, "org_newest"),
    ({"q": "method:GET -status:404"}, "org_method_newest"),
    ({"q": "status:4xx -action:member.invite"}, "org_statusclass_newest"),
    ({"q": f"target:{IDS[0]} -action:member.invite -path:x"}, "org_target_newest"),
    ({"q": "-action:member.invite", "accountId": str(IDS[1])}, "org_account_newest"),
    ({"q": "roles -ip:10.0.0.1"}, "org_newest"),  # a path search beside: its walk too
]


def test_each_excluding_shape_walks_its_index_with_no_sort_and_no_scan(tmp_path):
    table = AuditTable(str(tmp_path / "plan.sqlite3"))
    connection = table.connection()
    shapes = [(merge_search(parse_query(MultiDict(a), ListQuerySchema())), i) for a, i in PLANNED]
    shapes.append(({HIDE_VIEWS_OF: IDS[0]}, "org_newest"))
    shapes.append(({HIDE_VIEWS_OF: IDS[0], "method": "GET"}, "org_method_newest"))
    for filters, index in shapes:
        filters.pop("limit", None)
        for after in (None, (BASE, ObjectId())):
            [branch] = AuditQuery(filters=filters, after=after).branches()
            scoped = {**branch, "organizationId": ORG}
            hint = index_for(branch)
            sql, parameters = plan_sql(scoped, NEWEST_FIRST, hint)
            plan = _plan(connection, sql + " LIMIT 51", parameters)
            assert any(re.search(rf"USING (COVERING )?INDEX {index}\b", p) for p in plan), plan
            assert not any("TEMP B-TREE" in p for p in plan), plan
            # nothing reads a whole table: every SCAN is of an index (a probe of the
            # targets by primary key is a SEARCH)
            assert all("USING" in p for p in plan if p.startswith("SCAN")), plan
            search = plan_search(scoped, NEWEST_FIRST, hint)
            if search is not None:  # a path search's bounded walk, with the exclusions
                walk = _plan(connection, *search.walk(None, 4000))
                assert any(f"INDEX {index}" in p for p in walk), walk
                assert not any("TEMP B-TREE" in p for p in walk), walk
    table.close()


def test_the_apps_requests_with_exclusions_never_take_the_generic_road(make_app, tmp_path):
    app = make_app(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(tmp_path / "e"))
    org = make_org(app, "Emb")
    api = Api(app.test_client())
    api.token(org.owner)
    settled(app)
    from audit_app.db import get_audit_db

    with app.app_context():
        get_audit_db().audit_logs.insert_many(
            [
                audit_record(org.id, statusCode=404, path="/api/v1/roles", action="role.view"),
                audit_record(org.id, statusCode=200, path="/api/v1/roles", action="role.list"),
            ]
        )
    before = embedded.FALLBACKS[0]
    q = f"-status:4xx -action:ROLE.LIST -target:{ObjectId()} -path:zzz -actor:{org.owner.email}"
    for path, extra in (
        ("/api/v1/audit-logs", {}),
        ("/api/v1/audit-logs/histogram", {"interval": "hour"}),
        ("/api/v1/audit-logs/export", {"format": "ndjson"}),
    ):
        answer = api.get(path, as_=org.admin, query_string={"q": q, **extra})
        assert answer.status_code == 200, answer.get_data(as_text=True)
    items = api.get("/api/v1/audit-logs", as_=org.admin, query_string={"q": q}).get_json()["items"]
    assert items and all(i["statusCode"] != 404 and i["action"] != "role.list" for i in items)
    assert all(i.get("accountId") != str(org.owner.account_id) for i in items)
    assert embedded.FALLBACKS[0] == before


def test_the_page_hiding_its_viewers_views_never_takes_the_generic_road(make_app, tmp_path):
    """The web list's default on the embedded store: the list, its chart (the SQL counts)
    and the export from the page, with the viewer's views left out, each over an index."""
    from .test_web_pages import login

    app = make_app(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(tmp_path / "e"))
    org = make_org(app, "Emb")
    client = app.test_client()
    login(client, org.owner)
    for _ in range(3):
        assert client.get("/organization/audit-logs").status_code == 200
    before = embedded.FALLBACKS[0]
    page = client.get("/organization/audit-logs", query_string={"q": "action:auditLog.list"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="chart-empty"' in html  # the owner's views were all there was
    exported = client.get("/organization/audit-logs/export?format=ndjson&q=-status:5xx")
    assert exported.status_code == 200
    lines = [json.loads(line) for line in exported.get_data(as_text=True).splitlines()]
    owner = str(org.owner.account_id)
    assert not [r for r in lines if r.get("accountId") == owner and r.get("action") in LOG_VIEWS]
    assert any(r.get("accountId") == owner for r in lines)  # (its login: no view)
    shown = client.get(
        "/organization/audit-logs", query_string={"q": "action:auditLog.list", "myViews": "shown"}
    ).get_data(as_text=True)
    assert shown.count("View Details") >= 3 and 'id="chart-empty"' not in shown
    assert embedded.FALLBACKS[0] == before
