"""Every audit log query shape as a MongoDB server receives it from the real driver.

Each test sends one request over HTTP to an app whose ``MONGO_URI`` points at a scripted
mockupdb server (``tests/wire.py``) and asserts the ``find`` the server received: the
filter, the sort, the index named by ``hint``, ``limit``, ``maxTimeMS`` and the
projection. ``docs/scaling.md`` lists each shape with its expected plan and the test here
that pins its command.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from bson import ObjectId

from audit_app.audit.export import ExportTimedOut
from audit_app.audit.store.repository import organizations_of_request
from audit_app.auth.tokens import issue_token
from audit_app.db import get_audit_db, stores

from .factories import audit_record
from .wire import app_on, member_documents

NEWEST = {"createdAt": -1, "_id": -1}


@pytest.fixture
def wired(server, tmp_path):
    """An app on the scripted server, and a JWT of an Admin of its one organization."""
    documents, organization_id = member_documents(["viewAuditLog"])
    server.documents.update(documents)
    app = app_on(server.uri, tmp_path)
    with app.app_context():
        token = issue_token(documents["accounts"][0], organization_id).token
    client = app.test_client()

    def get(path: str):
        return client.get(path, headers={"Authorization": f"Bearer {token}"})

    get.organization_id = organization_id
    get.app = app
    yield get
    for store in set(stores(app).values()):
        store.close()


def finds(server) -> list[dict]:
    return server.sent("find", "audit_logs")


def test_the_first_page_walks_org_newest_and_stops_after_limit_plus_one(server, wired):
    answer = wired("/api/v1/audit-logs?limit=20")
    assert answer.status_code == 200, answer.get_json()
    [find] = finds(server)
    assert find["filter"] == {"organizationId": wired.organization_id}
    assert find["sort"] == NEWEST
    assert find["hint"] == "org_newest"
    assert find["limit"] == 21
    assert find["maxTimeMS"] == 5000
    assert find["projection"] == {"request": 0}


def test_the_next_page_is_bounded_by_its_cursor_at_the_top_level(server, wired):
    base = datetime(2026, 11, 20, tzinfo=UTC)
    page = [
        audit_record(wired.organization_id, created_at=base - timedelta(seconds=i))
        for i in range(3)
    ]
    for record in page:
        record.pop("request")
    server.documents["audit_logs"] = page
    first = wired("/api/v1/audit-logs?limit=2").get_json()
    last = page[1]
    answer = wired(f"/api/v1/audit-logs?limit=2&cursor={first['nextCursor']}")
    assert answer.status_code == 200
    find = finds(server)[-1]
    assert find["filter"]["createdAt"] == {"$lte": last["createdAt"].replace(tzinfo=None)}
    assert find["filter"]["$and"] == [
        {
            "$or": [
                {"createdAt": {"$lt": last["createdAt"].replace(tzinfo=None)}},
                {"_id": {"$lt": last["_id"]}},
            ]
        }
    ]
    assert find["hint"] == "org_newest" and find["sort"] == NEWEST and find["limit"] == 3


@pytest.mark.parametrize(
    "query,equality,index",
    [
        ("accountId={id}", {"accountId": "id"}, "org_account_newest"),
        ("workspaceId={id}", {"workspaceId": "id"}, "org_workspace_newest"),
        ("apiKeyId={id}", {"apiKeyId": "id"}, "org_apikey_newest"),
        ("statusCode=404", {"statusCode": 404}, "org_status_newest"),
        ("statusCode=4xx", {"statusCode": {"$in": list(range(400, 500))}}, "org_status_newest"),
        ("method=DELETE", {"method": "DELETE"}, "org_method_newest"),
        ("authType=apiKey", {"authType": "apiKey"}, "org_authtype_newest"),
        ("resource=pathways", {"resource": "pathways"}, "org_resource_newest"),
        # two filters: the most selective one's index, the other checked on the way
        ("method=GET&accountId={id}", {"accountId": "id", "method": "GET"}, "org_account_newest"),
        # what support staff paste into the search bar, each on its own index
        ("q=requestId:req-42.a", {"requestId": "req-42.a"}, "org_requestid_newest"),
        ("q=credential:jwt_Ab3_x-9qq", {"credentialId": "jwt_Ab3_x-9qq"}, "org_credential_newest"),
        ("q=ip:203.0.113.7", {"ip": "203.0.113.7"}, "org_ip_newest"),
        ("q=ip:2001:DB8:0:0::1", {"ip": "2001:db8::1"}, "org_ip_newest"),
        ("q=action:member.roleChange", {"action": "member.roleChange"}, "org_action_newest"),
        # what a request acted on: the multikey index of targets.id
        ("q=target:{id}", {"targets.id": "id"}, "org_target_newest"),
        (
            "q=target:{id}%20method:post%20status:404",
            {"targets.id": "id", "method": "POST", "statusCode": 404},
            "org_target_newest",
        ),
        # a request id narrows more than a target
        (
            "q=target:{id}%20requestId:r9",
            {"targets.id": "id", "requestId": "r9"},
            "org_requestid_newest",
        ),
        (
            "q=method:delete status:404",
            {"method": "DELETE", "statusCode": 404},
            "org_status_newest",
        ),
        # combined: the request id leads, whatever else narrows
        (
            "q=requestId:r1%20ip:10.0.0.1&accountId={id}",
            {"requestId": "r1", "ip": "10.0.0.1", "accountId": "id"},
            "org_requestid_newest",
        ),
    ],
)
def test_each_filter_walks_the_index_made_for_it(server, wired, query, equality, index):
    some_id = ObjectId()
    answer = wired("/api/v1/audit-logs?" + query.format(id=some_id))
    assert answer.status_code == 200, answer.get_json()
    [find] = finds(server)
    expected = {k: (some_id if v == "id" else v) for k, v in equality.items()}
    assert find["filter"] == {**expected, "organizationId": wired.organization_id}
    assert find["hint"] == index and find["sort"] == NEWEST and find["limit"] == 51


def test_a_resources_actions_are_one_equality_walk_each_merged(server, wired):
    """``action:member.*``: no $in over the action index (a blocking sort on both stores)."""
    answer = wired("/api/v1/audit-logs?q=action:member.*")
    assert answer.status_code == 200, answer.get_json()
    sent = finds(server)
    actions = sorted(find["filter"]["action"] for find in sent)
    assert actions == [
        "member.add",
        "member.invite",
        "member.list",
        "member.remove",
        "member.removeAsked",
        "member.roleChange",
    ]
    assert all(find["hint"] == "org_action_newest" and find["limit"] == 51 for find in sent)


def test_an_actor_is_resolved_to_the_accounts_id_and_walks_its_index(server, wired):
    email = server.documents["accounts"][0]["email"]
    answer = wired(f"/api/v1/audit-logs?q=actor:{email.upper()}%20/pathways")
    assert answer.status_code == 200, answer.get_json()
    [find] = finds(server)
    assert find["filter"]["accountId"] == server.documents["accounts"][0]["_id"]
    assert find["filter"]["$and"] == [{"path": {"$regex": "/pathways", "$options": "i"}}]
    assert find["hint"] == "org_account_newest"


def test_an_actor_without_an_account_sends_no_query(server, wired):
    accounts = server.documents["accounts"]
    server.documents["accounts"] = lambda find: [  # the server answers by the filter
        account
        for account in accounts
        if all(account.get(name) == value for name, value in find["filter"].items())
    ]
    answer = wired("/api/v1/audit-logs?q=actor:nobody@nowhere.example")
    assert answer.status_code == 200 and answer.get_json()["items"] == []
    assert finds(server) == []


def test_a_date_range_is_one_range_on_created_at(server, wired):
    answer = wired("/api/v1/audit-logs?from=2026-11-01&to=2026-11-02T12:00:00Z")
    assert answer.status_code == 200
    [find] = finds(server)
    assert find["filter"]["createdAt"] == {
        "$gte": datetime(2026, 11, 1),
        "$lte": datetime(2026, 11, 2, 12),
    }
    assert find["hint"] == "org_newest"


def test_a_path_search_matches_the_keys_of_org_newest(server, wired):
    answer = wired("/api/v1/audit-logs?q=pathways/(x")
    assert answer.status_code == 200
    [find] = finds(server)
    assert find["filter"]["$and"] == [{"path": {"$regex": r"pathways/\(x", "$options": "i"}}]
    assert find["hint"] == "org_newest"


@pytest.mark.parametrize(
    "q,clause,index",
    [
        # a path's start (path:/...): anchored and case-sensitive, so a range of the index
        ("path:/api/v1/pathways/(x", {"$regex": r"^/api/v1/pathways/\(x"}, "org_path_newest"),
        # a part anywhere, in any case: path: without the slash, and plain text
        ("path:pathways/", {"$regex": "pathways/", "$options": "i"}, "org_newest"),
        ("/api/v1/pathways/", {"$regex": "/api/v1/pathways/", "$options": "i"}, "org_newest"),
        # an equality narrows more than a range of paths: its index, the start tested
        ("path:/api/v1/ method:DELETE", {"$regex": "^/api/v1/"}, "org_method_newest"),
    ],
)
def test_an_anchored_path_is_a_prefix_range_of_org_path_newest(server, wired, q, clause, index):
    answer = wired(f"/api/v1/audit-logs?{urlencode({'q': q})}")
    assert answer.status_code == 200, answer.get_json()
    [find] = finds(server)
    assert find["filter"]["$and"] == [{"path": clause}]
    assert find["hint"] == index
    assert find["sort"] == NEWEST and find["limit"] == 51


def test_an_id_search_is_four_equality_walks_never_a_path_regex(server, wired):
    target = ObjectId()
    newest = datetime(2026, 11, 20, tzinfo=UTC)
    by_field = {
        "accountId": audit_record(wired.organization_id, created_at=newest, accountId=target),
        "workspaceId": audit_record(
            wired.organization_id, created_at=newest - timedelta(seconds=2), workspaceId=target
        ),
        "apiKeyId": audit_record(
            wired.organization_id, created_at=newest - timedelta(seconds=1), apiKeyId=target
        ),
        "targets.id": audit_record(
            wired.organization_id,
            created_at=newest - timedelta(seconds=3),
            targets=[{"type": "member", "id": target, "name": None}],
        ),
    }

    def answer(find):
        field = next(name for name in by_field if name in find["filter"])
        return [by_field[field]]

    server.documents["audit_logs"] = answer
    response = wired(f"/api/v1/audit-logs?q={target}")
    assert response.status_code == 200
    sent = finds(server)
    # the request's 5000 ms budget is shared by its four walks
    assert [(f["hint"], f["limit"], f["maxTimeMS"]) for f in sent] == [
        ("org_account_newest", 51, 1250),
        ("org_apikey_newest", 51, 1250),
        ("org_workspace_newest", 51, 1250),
        ("org_target_newest", 51, 1250),
    ]
    fields = ("accountId", "apiKeyId", "workspaceId", "targets.id")
    for find, field in zip(sent, fields, strict=True):
        assert find["filter"] == {field: target, "organizationId": wired.organization_id}
        assert next(iter(find["filter"])) == field  # the searched field leads
        assert find["sort"] == NEWEST and find["projection"] == {"request": 0}
    assert "$regex" not in repr(sent)
    items = response.get_json()["items"]
    assert [item["id"] for item in items] == [
        str(by_field[f]["_id"]) for f in ("accountId", "apiKeyId", "workspaceId", "targets.id")
    ]
    assert items[-1]["matchedAs"] == ["target"]


def test_a_target_search_walks_org_target_newest_from_its_cursor(server, wired):
    """``target:<id>`` with other filters: one walk of the multikey index, led by
    ``targets.id``, the other filters tested on the way; its next page starts at the
    cursor's position, stopped after limit + 1 entries as every page is."""
    target = ObjectId()
    base = datetime(2026, 11, 20, tzinfo=UTC)
    page = [
        audit_record(
            wired.organization_id,
            created_at=base - timedelta(seconds=i),
            method="PATCH",
            targets=[{"type": "workspace", "id": target, "name": "w"}],
        )
        for i in range(3)
    ]
    for record in page:
        record.pop("request")
    server.documents["audit_logs"] = page
    query = f"/api/v1/audit-logs?limit=2&q=target:{target}%20method:PATCH%20status:2xx"
    first = wired(query)
    assert first.status_code == 200, first.get_json()
    second = wired(query + f"&cursor={first.get_json()['nextCursor']}")
    assert second.status_code == 200, second.get_json()
    opening, following = finds(server)
    for find in (opening, following):
        assert next(iter(find["filter"])) == "targets.id"
        assert find["filter"]["targets.id"] == target
        assert find["filter"]["method"] == "PATCH"
        assert find["filter"]["statusCode"] == {"$in": list(range(200, 300))}
        assert find["filter"]["organizationId"] == wired.organization_id
        assert find["hint"] == "org_target_newest" and find["sort"] == NEWEST
        assert find["limit"] == 3 and find["maxTimeMS"] == 5000
    last = page[1]["createdAt"].replace(tzinfo=None)
    assert "createdAt" not in opening["filter"]
    assert following["filter"]["createdAt"] == {"$lte": last}
    assert following["filter"]["$and"] == [
        {"$or": [{"createdAt": {"$lt": last}}, {"_id": {"$lt": page[1]["_id"]}}]}
    ]


def test_a_query_the_server_stops_at_max_time_ms_is_a_503_saying_what_to_do(server, wired):
    server.fail("find", "audit_logs", code=50, errmsg="operation exceeded time limit")
    answer = wired("/api/v1/audit-logs?q=rare")
    assert answer.status_code == 503
    error = answer.get_json()["error"]
    assert error["code"] == "query_timeout" and "narrow" in error["message"]
    # and the refused request has its audit record, written after the answer
    [insert] = server.sent("insert", "audit_logs")
    assert insert["documents"][0]["statusCode"] == 503


def test_the_export_has_its_own_time_budget_and_walks_the_same_index(server, wired):
    wired.app.config["AUDIT_EXPORT_TIMEOUT_MS"] = 60000
    answer = wired("/api/v1/audit-logs/export?format=ndjson&method=DELETE")
    assert answer.status_code == 200
    [find] = finds(server)
    assert find["filter"] == {"method": "DELETE", "organizationId": wired.organization_id}
    assert find["hint"] == "org_method_newest" and find["sort"] == NEWEST
    assert find["maxTimeMS"] == 60000 and "limit" not in find


def test_an_export_the_server_stops_before_its_first_batch_is_a_503(server, wired):
    server.fail("find", "audit_logs", code=50, errmsg="operation exceeded time limit")
    answer = wired("/api/v1/audit-logs/export?format=csv")
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "query_timeout"


def test_an_id_search_the_filters_already_pin_is_one_walk(server, wired):
    """q=A with accountId=A: the other branches are subsets of the account's records, and
    walking them by the account index would read all of it for nothing."""
    target = ObjectId()
    assert wired(f"/api/v1/audit-logs?q={target}&accountId={target}").status_code == 200
    [find] = finds(server)
    assert find["filter"] == {"accountId": target, "organizationId": wired.organization_id}
    assert find["hint"] == "org_account_newest" and find["maxTimeMS"] == 5000


def test_each_id_branch_walks_the_index_of_the_id_it_searches(server, wired):
    searched, workspace = ObjectId(), ObjectId()
    assert wired(f"/api/v1/audit-logs?q={searched}&workspaceId={workspace}").status_code == 200
    sent = finds(server)
    assert [
        (
            f["hint"],
            f["filter"].get("accountId"),
            f["filter"].get("apiKeyId"),
            f["filter"].get("targets.id"),
        )
        for f in sent
    ] == [
        ("org_account_newest", searched, None, None),
        ("org_apikey_newest", None, searched, None),
        ("org_target_newest", None, None, searched),
    ]
    assert all(f["filter"]["workspaceId"] == workspace for f in sent)


def test_an_id_search_with_a_target_filter_tests_the_target_on_each_id_walk(server, wired):
    """``q=<id> target:<other>``: the target is a filter of every id branch (each walks
    its own id's index); the pasted id as a second target walks the qualifier's target
    and tests the pasted one on each record (the two ids of one role change)."""
    searched, target = ObjectId(), ObjectId()
    answer = wired(f"/api/v1/audit-logs?q={searched}%20target:{target}")
    assert answer.status_code == 200, answer.get_json()
    sent = finds(server)
    assert [f["hint"] for f in sent] == [
        "org_account_newest",
        "org_apikey_newest",
        "org_workspace_newest",
        "org_target_newest",
    ]
    assert all(f["filter"]["targets.id"] == target for f in sent)
    assert {"targets.id": searched} in sent[-1]["filter"]["$and"]


def test_a_mongos_time_limit_is_a_503_query_timeout_too(server, wired):
    # ExceededTimeLimit is retryable for reads: the driver tries once more
    for _ in range(2):
        server.fail("find", "audit_logs", code=262, errmsg="operation exceeded time limit")
    answer = wired("/api/v1/audit-logs?q=rare")
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "query_timeout"


def test_an_export_cut_by_its_budget_says_so_in_the_file_and_in_its_record(server, wired):
    """Past the first batch the 200 is sent: the file itself must say it is cut, and the
    export's outcome record says the budget (not the client) ended it."""
    server.documents["audit_logs"] = [audit_record(wired.organization_id) for _ in range(2)]
    server.cursor_ids["audit_logs"] = 42  # the first batch says more follow ...
    server.fail("getMore", 42, code=50, errmsg="operation exceeded time limit")  # ... not
    answer = wired("/api/v1/audit-logs/export?format=ndjson")
    assert answer.status_code == 200
    received = []
    with pytest.raises(ExportTimedOut):  # the stream is cut after the marker line
        for chunk in answer.response:
            received.append(chunk)
    lines = [json.loads(line) for line in b"".join(received).splitlines()]
    assert len(lines) == 3 and "exportIncomplete" in lines[-1]
    assert lines[-1]["exportIncomplete"]["rowsWritten"] == 2
    answer.close()
    outcomes = [
        doc["documents"][0]["request"].get("export")
        for doc in server.sent("insert", "audit_logs")
        if doc["documents"][0]["request"].get("export")
    ]
    assert outcomes == [{"format": "ndjson", "rowsWritten": 2, "outcome": "timedOut"}]


def test_the_histogram_walks_the_lists_index_for_two_fields_in_its_range(server, wired):
    answer = wired(
        "/api/v1/audit-logs/histogram?interval=day&from=2026-11-01&to=2026-11-14&q=status:5xx"
    )
    assert answer.status_code == 200, answer.get_json()
    [find] = finds(server)
    assert find["projection"] == {"createdAt": 1, "statusCode": 1}
    assert find["filter"]["createdAt"] == {
        "$gte": datetime(2026, 11, 1),
        "$lte": datetime(2026, 11, 14, 23, 59, 59, 999000),
    }
    assert find["filter"]["statusCode"] == {"$in": list(range(500, 600))}
    assert find["hint"] == "org_status_newest" and find["sort"] == NEWEST
    assert find["maxTimeMS"] == 5000 and "limit" not in find


def test_a_streams_next_batch_walks_org_stored_from_its_cursor(server, wired):
    """The deliverer's read: the organization's records after the cursor in stored order,
    up to the settle time, on ``org_stored``, one batch, within the time budget."""
    from audit_app.audit.store.repository import stored_after
    from audit_app.db import get_audit_db

    at, after_id = datetime(2026, 11, 20, 9, tzinfo=UTC), ObjectId()
    until = datetime(2026, 11, 20, 10, tzinfo=UTC)
    with wired.app.app_context():
        stored_after(get_audit_db(), wired.organization_id, (at, after_id), until, 500, 5000)
    [find] = finds(server)
    assert find["filter"] == {
        "storedAt": {"$gte": at.replace(tzinfo=None), "$lte": until.replace(tzinfo=None)},
        "$and": [
            {"$or": [{"storedAt": {"$gt": at.replace(tzinfo=None)}}, {"_id": {"$gt": after_id}}]}
        ],
        "organizationId": wired.organization_id,
    }
    assert find["sort"] == {"storedAt": 1, "_id": 1} and find["hint"] == "org_stored"
    assert find["limit"] == 500 and find["maxTimeMS"] == 5000


def test_the_deliverer_finds_due_streams_on_their_index(server, wired):
    from audit_app.db import get_db
    from audit_app.streams.repository import due_streams

    now = datetime(2026, 11, 20, 9, tzinfo=UTC)
    with wired.app.app_context():
        due_streams(get_db(), now)
    [find] = server.sent("find", "audit_streams")
    assert find["filter"] == {
        "state": "active",
        "nextAttemptAt": {"$lte": now.replace(tzinfo=None)},
    }
    assert find["hint"] == "state_due" and find["limit"] == 100


def test_the_retention_purge_walks_org_stored_and_deletes_exactly_its_batch(server, wired):
    """``flask purge`` as the server sees it: a covered walk of ``org_stored`` from the
    oldest, stopped by the batch's limit, within a time budget; then a delete of exactly
    those ids in the organization, acknowledged by a majority, journaled; then the chunks
    of the windows that ended before the cut-off, and the activity counts of those days."""
    organization_id = wired.organization_id
    batch = [{"_id": ObjectId(), "storedAt": datetime(2025, 1, 1)} for _ in range(3)]
    walks = []

    def oldest(find):  # the first walk finds three, the next one nothing
        walks.append(find)
        return batch if len(walks) == 1 else []

    server.documents["audit_logs"] = oldest
    server.answer("delete", "audit_logs", n=3)
    result = wired.app.test_cli_runner().invoke(args=["purge", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["deleted"] == 3  # as the server counted them
    assert len(walks) == 1  # fewer than a batch: that was the last
    first = walks[0]
    cutoff = first["filter"]["storedAt"]["$lt"]
    assert first["filter"] == {"storedAt": {"$lt": cutoff}, "organizationId": organization_id}
    assert first["projection"] == {"_id": 1, "storedAt": 1}
    assert first["sort"] == {"storedAt": 1, "_id": 1} and first["hint"] == "org_stored"
    assert first["limit"] == 1000 and first["maxTimeMS"] == 30000
    expected = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=400)
    assert expected - timedelta(days=1) <= cutoff <= expected  # the default, to the day
    [delete] = server.sent("delete", "audit_logs")
    ids = [record["_id"] for record in batch]
    assert delete["deletes"] == [
        {"q": {"_id": {"$in": ids}, "organizationId": organization_id}, "limit": 0}
    ]
    assert delete["writeConcern"] == {"w": "majority", "j": True}
    [chunks] = server.sent("delete", "audit_digest_chunks")
    assert chunks["deletes"][0]["q"] == {
        "windowEnd": {"$lt": cutoff},
        "organizationId": organization_id,
    }
    [counts] = server.sent("delete", "audit_counters")  # org_day_unique: the purged days
    assert counts["deletes"][0]["q"] == {
        "day": {"$lte": cutoff - timedelta(days=1)},
        "organizationId": organization_id,
    }


def test_the_activity_counts_are_added_in_one_bulk_and_read_on_their_index(server, wired):
    """The writer's tally goes to ``audit_counters`` as ``$inc`` upserts (one document per
    organization and day, its hours inside), unordered, in one round trip acknowledged by
    a majority; the histogram reads the days of its range on ``org_day_unique``, bounded by
    their number."""
    from audit_app.audit.store import counters
    from audit_app.db import get_audit_db

    organization_id = wired.organization_id
    hour = datetime(2026, 11, 20, 9, tzinfo=UTC)
    day = datetime(2026, 11, 20)
    tally = counters.HourlyTally()
    for minute, status in ((1, 200), (2, 404), (3, 200)):
        tally.add(
            {
                "organizationId": organization_id,
                "createdAt": hour.replace(minute=minute),
                "statusCode": status,
            }
        )
    with wired.app.app_context():
        assert tally.flush(get_audit_db()) == 1
        counters.counted(
            get_audit_db(), organization_id, hour, hour + timedelta(days=3), timedelta(hours=1)
        )
    [update] = server.sent("update", "audit_counters")
    assert update["ordered"] is False and update["writeConcern"] == {"w": "majority"}
    assert update["updates"] == [
        {
            "q": {"organizationId": organization_id, "day": day},
            "u": {
                "$inc": {
                    "count": 3,
                    "statusClasses.2xx": 2,
                    "hours.09.count": 3,
                    "hours.09.statusClasses.2xx": 2,
                    "statusClasses.4xx": 1,
                    "hours.09.statusClasses.4xx": 1,
                }
            },
            "multi": False,
            "upsert": True,
        }
    ]
    [find] = server.sent("find", "audit_counters")
    assert find["filter"] == {
        "day": {"$gte": day, "$lte": (hour + timedelta(days=3)).replace(tzinfo=None)},
        "organizationId": organization_id,
    }
    assert find["sort"] == {"day": 1} and find["hint"] == "org_day_unique"
    assert find["limit"] == 5 and find["maxTimeMS"] == 2000


def test_the_staff_lookup_of_a_request_id_seeks_each_organization_on_its_index(server, wired):
    """One seek of ``requestid_org`` per organization past the last one found: records of
    no organization (null sorts first) are never read, nor an organization's many records."""
    with wired.app.app_context():
        assert organizations_of_request(get_audit_db(), "req-shared", 21) == []
    [find] = finds(server)
    assert find["filter"] == {
        "requestId": "req-shared",
        "organizationId": {"$gt": ObjectId("0" * 24)},
    }
    assert find["hint"] == "requestid_org" and find["sort"] == {"organizationId": 1}
    assert find["limit"] == 1
