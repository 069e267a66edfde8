"""``GET /api/v1/audit-logs``, one record, and the exports."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from .factories import Api, audit_record

BASE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def seed(db, org, count, **fields):
    """Insert records one second apart, oldest first; return them newest first."""
    records = [
        audit_record(org.id, created_at=BASE + timedelta(seconds=i), **fields) for i in range(count)
    ]
    db.audit_logs.insert_many(records)
    return list(reversed(records))


def ids(answer):
    return [item["id"] for item in answer.get_json()["items"]]


def listing(api, org, query="", **kw):
    return api.get(f"/api/v1/audit-logs{query}", as_=org.admin, **kw)


def test_list_is_newest_first_without_request_details(api, org, db):
    records = seed(db, org, 5)
    answer = listing(api, org, "?authType=jwt&resource=pathways")
    assert answer.status_code == 200
    body = answer.get_json()
    assert ids(answer) == [str(r["_id"]) for r in records]
    assert body["nextCursor"] is None
    item = body["items"][0]
    assert "request" not in item
    assert item["createdAt"] == "2026-11-01T12:00:04.000Z"
    assert item["organizationId"] == str(org.id)


def test_record_detail_has_the_request_with_original_keys(api, org, db):
    record = audit_record(
        org.id,
        request={
            "body": {"%24where": "x", "a%2Eb": 1, "n": float("nan")},
            "bodyType": "json",
            "query": {"page": "2"},
            "params": {"pathwayId": "abc"},
            "headers": {"Accept": "*/*"},
        },
    )
    db.audit_logs.insert_one(record)
    answer = api.get(f"/api/v1/audit-logs/{record['_id']}", as_=org.admin)
    assert answer.status_code == 200
    detail = answer.get_json()
    assert detail["request"]["body"] == {"$where": "x", "a.b": 1, "n": "nan"}
    assert detail["request"]["query"] == {"page": "2"} and detail["request"]["params"] == {
        "pathwayId": "abc"
    }
    json.loads(answer.get_data(as_text=True))  # strict JSON: no NaN literal


@pytest.mark.parametrize("path", ["/api/v1/audit-logs/zzz", f"/api/v1/audit-logs/{ObjectId()}"])
def test_unknown_record_is_404(api, org, path):
    assert api.get(path, as_=org.admin).status_code == 404


def test_another_organizations_record_is_404_and_never_listed(api, org, other_org, db):
    theirs = audit_record(other_org.id, path="/api/v1/secret-of-globex")
    db.audit_logs.insert_one(theirs)
    assert api.get(f"/api/v1/audit-logs/{theirs['_id']}", as_=org.admin).status_code == 404
    for query in (
        "",
        "?q=secret-of-globex",
        f"?q={theirs['_id']}",
        f"?accountId={other_org.owner.account_id}",
    ):
        assert "globex" not in listing(api, org, query).get_data(as_text=True)


@pytest.mark.parametrize("who,status", [("owner", 200), ("admin", 200), ("member", 403)])
def test_view_audit_log_permission(api, org, who, status):
    answer = api.get("/api/v1/audit-logs", as_=getattr(org, who))
    assert answer.status_code == status
    if status == 403:
        assert "viewAuditLog" in answer.get_json()["error"]["message"]


def test_granting_view_audit_log_opens_it_to_members_and_keys(api, org):
    member_role = str(org.roles["member"]["_id"])
    key = api.post(
        "/api/v1/api-keys", as_=org.owner, json={"name": "reader", "roleId": member_role}
    ).get_json()
    assert api.get("/api/v1/audit-logs", key=key["key"]).status_code == 403
    role = api.get(f"/api/v1/roles/{member_role}", as_=org.owner).get_json()
    api.patch(
        f"/api/v1/roles/{member_role}",
        as_=org.owner,
        json={"permissions": [*role["permissions"], "viewAuditLog"]},
    )
    assert api.get("/api/v1/audit-logs", as_=org.member).status_code == 200
    assert api.get("/api/v1/audit-logs", key=key["key"]).status_code == 200
    assert api.get("/api/v1/audit-logs/export?format=ndjson", key=key["key"]).status_code == 200


@pytest.mark.parametrize(
    "query,field",
    [
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=ten", "limit"),
        ("?accountId=123", "accountId"),
        ("?workspaceId=" + "g" * 24, "workspaceId"),
        ("?apiKeyId=x", "apiKeyId"),
        ("?from=yesterday", "from"),
        ("?to=2026-13-01", "to"),
        ("?from=2026-11-02&to=2026-11-01", "from"),
        ("?statusCode=99", "statusCode"),
        ("?statusCode=6xx", "statusCode"),
        ("?method=FETCH", "method"),
        ("?authType=password", "authType"),
        ("?resource=a%20b", "resource"),
        ("?q=" + "x" * 201, "q"),
        ("?path=" + "x" * 201, "path"),
        ("?colour=red", "colour"),
        ("?cursor=abc", "cursor"),
        ("?limit=1&limit=2", "limit"),
    ],
)
def test_each_bad_parameter_is_a_400_naming_it(api, org, query, field):
    answer = listing(api, org, query)
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert error["field"] == field and field in error["message"]


def test_filters(api, org, db):
    account, workspace, key = ObjectId(), ObjectId(), ObjectId()
    db.audit_logs.insert_many(
        [
            audit_record(org.id, created_at=BASE, accountId=account, method="POST", statusCode=201),
            audit_record(
                org.id, created_at=BASE + timedelta(hours=1), workspaceId=workspace, statusCode=404
            ),
            audit_record(
                org.id,
                created_at=BASE + timedelta(hours=2),
                apiKeyId=key,
                authType="apiKey",
                statusCode=500,
                resource="workspaces",
                path="/api/v1/workspaces",
            ),
        ]
    )

    def paths(query):
        if "to=" not in query:  # leave out the records of this test's own requests (dated today)
            query += "&to=2026-11-10"
        answer = listing(api, org, query)
        assert answer.status_code == 200, answer.get_json()
        return [(i["method"], i["statusCode"]) for i in answer.get_json()["items"]]

    assert paths(f"?accountId={account}") == [("POST", 201)]
    assert paths(f"?workspaceId={workspace}") == [("GET", 404)]
    assert paths(f"?apiKeyId={key}") == [("GET", 500)]
    assert paths("?method=POST") == [("POST", 201)]
    assert paths("?statusCode=404") == [("GET", 404)]
    assert paths("?statusCode=4xx") == [("GET", 404)]
    assert paths("?statusCode=5XX") == [("GET", 500)]
    assert paths("?authType=apiKey") == [("GET", 500)]
    assert paths("?resource=workspaces") == [("GET", 500)]
    assert paths("?from=2026-11-01T12:30:00Z") == [("GET", 500), ("GET", 404)]
    assert paths("?to=2026-11-01T12:30:00%2B00:00") == [("POST", 201)]
    assert paths("?from=2026-11-01T13:00:00&to=2026-11-01T13:00:00Z") == [("GET", 404)]
    assert paths("?from=2026-11-02&to=2026-11-10") == []


def test_search_is_literal(api, org, db):
    db.audit_logs.insert_many(
        [
            audit_record(org.id, created_at=BASE, path="/api/v1/pathways/(draft)*"),
            audit_record(
                org.id, created_at=BASE + timedelta(seconds=1), path="/api/v1/pathwaysXdraft"
            ),
            audit_record(org.id, created_at=BASE + timedelta(seconds=2), path="/api/v1/Path.ways"),
            audit_record(org.id, created_at=BASE + timedelta(seconds=3), path="/api/v1/pathways/a"),
        ]
    )

    def found(query):
        return [i["path"] for i in listing(api, org, query).get_json()["items"]]

    assert found("?q=(draft)*") == ["/api/v1/pathways/(draft)*"]
    assert found("?q=.ways") == ["/api/v1/Path.ways"]
    assert found("?path=PATHWAYS/") == ["/api/v1/pathways/a", "/api/v1/pathways/(draft)*"]
    assert found("?q=%5Ba-z%5D") == []  # [a-z] is text, not a class
    assert found("?q=.*") == []


def test_object_id_search_matches_account_workspace_and_key_and_path_finds_the_path(api, org, db):
    """A 24-hex search is an id (three index walks merged); the path parameter finds it in
    paths. The two are never OR-ed: that would scan every key of the organization."""
    target = ObjectId()
    db.audit_logs.insert_many(
        [
            audit_record(org.id, created_at=BASE, accountId=target, path="/a"),
            audit_record(
                org.id, created_at=BASE + timedelta(seconds=1), workspaceId=target, path="/b"
            ),
            audit_record(
                org.id, created_at=BASE + timedelta(seconds=2), apiKeyId=target, path="/c"
            ),
            audit_record(
                org.id, created_at=BASE + timedelta(seconds=3), path=f"/api/v1/pathways/{target}"
            ),
            audit_record(org.id, created_at=BASE + timedelta(seconds=4), path="/unrelated"),
        ]
    )
    found = [i["path"] for i in listing(api, org, f"?q={target}").get_json()["items"]]
    assert found == ["/c", "/b", "/a"]
    found = [i["path"] for i in listing(api, org, f"?path={target}").get_json()["items"]]
    assert found == [f"/api/v1/pathways/{target}"]
    paged = listing(api, org, f"?q={target}&limit=2").get_json()
    assert [i["path"] for i in paged["items"]] == ["/c", "/b"]
    rest = listing(api, org, f"?q={target}&limit=2&cursor={paged['nextCursor']}").get_json()
    assert [i["path"] for i in rest["items"]] == ["/a"] and rest["nextCursor"] is None


def test_pages_have_no_gap_and_no_overlap_while_records_keep_arriving(api, org, db):
    seed(db, org, 23)
    seen, order, cursor, pages = [], [], None, 0
    while True:
        query = "?limit=5" + (f"&cursor={cursor}" if cursor else "")
        body = listing(api, org, query).get_json()
        seen += [i["id"] for i in body["items"]]
        order += [(i["createdAt"], i["id"]) for i in body["items"]]
        pages += 1
        # new records arrive between pages (the reads themselves are recorded too)
        db.audit_logs.insert_one(
            audit_record(org.id, created_at=BASE + timedelta(days=1, seconds=pages))
        )
        cursor = body["nextCursor"]
        if cursor is None:
            break
    expected = [
        r["_id"]
        for r in db.audit_logs.find(
            {"organizationId": org.id, "createdAt": {"$lt": BASE + timedelta(days=1)}}
        )
    ]
    assert len(seen) == len(set(seen))
    assert set(seen) >= {str(i) for i in expected}
    assert order == sorted(order, reverse=True)  # newest first across all pages


def test_records_with_the_same_time_page_by_id(api, org, db):
    same = [audit_record(org.id, created_at=BASE) for _ in range(7)]
    db.audit_logs.insert_many(same)
    first = listing(api, org, "?limit=4&to=2026-11-10").get_json()
    second = listing(api, org, f"?limit=4&to=2026-11-10&cursor={first['nextCursor']}").get_json()
    got = [i["id"] for i in first["items"] + second["items"]]
    assert sorted(got, reverse=True) == got
    assert set(got) == {str(r["_id"]) for r in same} and second["nextCursor"] is None


def test_forged_and_foreign_cursors_are_refused(app, api, org, other_org, db):
    seed(db, org, 6)
    seed(db, other_org, 6)
    cursor = listing(api, org, "?limit=2").get_json()["nextCursor"]
    payload, _, signature = cursor.rpartition(".")
    tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    assert listing(api, org, f"?limit=2&cursor={tampered}").status_code == 400
    other = api.get(f"/api/v1/audit-logs?limit=2&cursor={cursor}", as_=other_org.admin)
    assert other.status_code == 400 and other.get_json()["error"]["field"] == "cursor"
    changed = listing(api, org, f"?limit=2&method=POST&cursor={cursor}")
    assert changed.status_code == 400 and "filters" in changed.get_json()["error"]["message"]
    from itsdangerous import URLSafeSerializer

    forged = URLSafeSerializer("not-our-key", salt="audit-log-cursor").dumps(
        [str(other_org.id), "x", 0, str(ObjectId())]
    )
    assert listing(api, org, f"?cursor={forged}").status_code == 400


def test_reading_the_log_is_itself_recorded(api, org, db):
    listing(api, org, "?statusCode=4xx")
    record = db.audit_logs.find_one({"path": "/api/v1/audit-logs"})
    assert record["resource"] == "auditLogs" and record["accountId"] == org.admin.account_id
    assert record["request"]["query"] == {"statusCode": "4xx"}


# Export ------------------------------------------------------------------------------------


def test_csv_export(api, org, db):
    db.audit_logs.insert_many(
        [
            audit_record(
                org.id,
                created_at=BASE,
                path="/api/v1/pathways/ünïcödé",
                userAgent='=HYPERLINK("x")',
                accountEmail="+cmd@evil.example",
            ),
            audit_record(
                org.id, created_at=BASE + timedelta(seconds=1), userAgent="@SUM(1)", statusCode=404
            ),
            audit_record(org.id, created_at=BASE + timedelta(days=5), path="/later"),
        ]
    )
    answer = api.get("/api/v1/audit-logs/export?format=csv&to=2026-11-02", as_=org.admin)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        answer.headers["Content-Disposition"]
        == 'attachment; filename="audit-log_acme_start_2026-11-02.csv"'
    )
    text = answer.get_data().decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [r["statusCode"] for r in rows] == ["404", "200"]
    assert rows[0]["userAgent"] == "'@SUM(1)"
    assert (
        rows[1]["userAgent"] == '\'=HYPERLINK("x")'
        and rows[1]["accountEmail"] == "'+cmd@evil.example"
    )
    assert rows[1]["path"] == "/api/v1/pathways/ünïcödé"
    assert json.loads(rows[1]["request"])["bodyType"] == "empty"


def test_ndjson_export_parses_line_by_line(api, org, db):
    seed(db, org, 3, path="/api/v1/çà")
    answer = api.get("/api/v1/audit-logs/export?format=ndjson&path=%C3%A7", as_=org.admin)
    assert answer.headers["Content-Type"].startswith("application/x-ndjson")
    lines = answer.get_data().decode("utf-8").splitlines()
    parsed = [json.loads(line) for line in lines]
    assert len(parsed) == 3 and all(p["path"] == "/api/v1/çà" and "request" in p for p in parsed)


@pytest.mark.parametrize(
    "query,field",
    [
        ("", "format"),
        ("?format=xml", "format"),
        ("?format=csv&limit=5", "limit"),
        ("?format=csv&from=nope", "from"),
    ],
)
def test_export_parameters_are_validated(api, org, query, field):
    answer = api.get(f"/api/v1/audit-logs/export{query}", as_=org.admin)
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == field


def test_export_is_streamed_and_recorded(app, api, org, db, monkeypatch):
    seed(db, org, 1200)
    from audit_app.audit.store import repository

    fetched = []
    original = repository.iter_records

    def counting(*args, **kwargs):
        for record in original(*args, **kwargs):
            fetched.append(record["_id"])
            yield record

    monkeypatch.setattr(repository, "iter_records", counting)
    from audit_app.audit import service

    monkeypatch.setattr(service, "iter_records", counting)
    answer = api.get("/api/v1/audit-logs/export?format=ndjson", as_=org.admin, buffered=False)
    assert answer.is_streamed
    stream = answer.response
    first = next(iter(stream))
    assert first and len(fetched) < 1200  # the first bytes left before the cursor was exhausted
    rest = b"".join(stream)
    assert (first + rest).count(b"\n") >= 1200
    answer.close()
    record = db.audit_logs.find_one({"path": "/api/v1/audit-logs/export"})
    assert record["statusCode"] == 200 and record["request"]["query"] == {"format": "ndjson"}


def test_cli_export(app, org, db, tmp_path):
    seed(db, org, 5, statusCode=500)
    seed(db, org, 2, statusCode=200)
    runner = app.test_cli_runner()
    out = tmp_path / "out.csv"
    result = runner.invoke(
        args=[
            "export",
            "--organization",
            str(org.id),
            "--format",
            "csv",
            "--status-code",
            "5xx",
            "--output",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8").lstrip("\ufeff"))))
    assert len(rows) == 5 and {r["statusCode"] for r in rows} == {"500"}
    assert "Exported 5 records" in result.output
    started, ended = db.audit_logs.find({"method": "CLI"}).sort("createdAt", 1)
    assert started["organizationId"] == ended["organizationId"] == org.id
    assert started["authType"] == ended["authType"] == "cli"
    assert started["request"]["params"]["statusCode"] == "5xx"
    assert started["request"]["export"] == {"format": "csv", "outcome": "started"}
    assert ended["request"]["export"] == {
        "format": "csv",
        "rowsWritten": 5,
        "outcome": "completed",
        "startRecordId": started["_id"],
    }
    ndjson = runner.invoke(args=["export", "--organization", str(org.id), "--format", "ndjson"])
    assert ndjson.exit_code == 0
    # the 7 seeded, the first export's two records, and this export's start
    assert sum(1 for line in ndjson.stdout.splitlines() if line.startswith("{")) == 10


@pytest.mark.parametrize(
    "args,hint",
    [
        (["--status-code", "9"], "--status-code"),
        (["--from", "x"], "--from"),
        (["--account-id", "1"], "--account-id"),
    ],
)
def test_cli_export_bad_filters(app, org, args, hint):
    result = app.test_cli_runner().invoke(
        args=["export", "--organization", str(org.id), "--format", "csv", *args]
    )
    assert result.exit_code != 0 and hint in result.output


def test_api_walkthrough_with_a_permitted_key(api, org):
    """Page through with nextCursor, filter, export: as a script would."""
    client_api = Api(api.client)
    for index in range(7):
        client_api.post(
            "/api/v1/pathways",
            as_=org.member,
            workspace=org.workspace["_id"],
            json={"name": f"n{index}"},
        )
    key = api.post(
        "/api/v1/api-keys",
        as_=org.owner,
        json={"name": "siem", "roleId": str(org.roles["admin"]["_id"])},
    ).get_json()["key"]
    seen, cursor = [], None
    while True:
        url = "/api/v1/audit-logs?limit=3&path=pathways" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(url, key=key).get_json()
        seen += body["items"]
        cursor = body["nextCursor"]
        if not cursor:
            break
    assert len(seen) == 7 and {i["accountEmail"] for i in seen} == {org.member.email}
    by_account = api.get(
        f"/api/v1/audit-logs?accountId={org.member.account_id}", key=key
    ).get_json()["items"]
    assert len(by_account) >= 7
    exported = api.get(
        f"/api/v1/audit-logs/export?format=ndjson&workspaceId={org.workspace['_id']}", key=key
    )
    assert len(exported.get_data().splitlines()) == 7
