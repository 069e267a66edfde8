"""What a request acted on (``targets.id``), searched by id: an index walk on both stores.

On MongoDB ``org_target_newest`` is a multikey index (``tests/test_wire_*.py`` pin what
the server receives, ``tests/test_real_mongo.py`` its plan). On the embedded store it is
the side table ``audit_targets`` (one row per distinct target id of a record) and its index
of the same name; here:

- plans: a branch led by ``targets.id`` walks ``org_target_newest`` and joins each entry to
  its record by rowid, with no temporary B-tree for the sort, newest or oldest first, paged
  or not, with the branch's other filters; a target beside another walked id is a primary
  key probe of the side table;
- the request path never falls back to mongomock's engine for ``q=<id>``, ``target:<id>``
  or ``target:<id>`` with other filters and a cursor, and answers as mongomock does;
- a record naming one id twice (two types) is listed once;
- the side table keeps in step with every write: inserts, the retention purge,
  ``delete_many``, rewrites, an operator's ``DELETE``; verification reports an edited row;
- a table of an earlier version is filled from its records' BSON, a bounded batch per
  transaction, resuming after an interruption.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import mongomock
import pytest
from bson import ObjectId
from werkzeug.datastructures import MultiDict

from audit_app.audit.store import embedded
from audit_app.audit.store.embedded import AuditLogCollection, AuditTable, plan_sql
from audit_app.audit.store.query import AuditQuery, ListQuerySchema, merge_search, parse_query
from audit_app.audit.store.repository import (
    NEWEST_FIRST,
    OLDEST_FIRST,
    delete_records,
    index_for,
    iter_records,
    search_records,
)

ORG, OTHER = ObjectId(), ObjectId()
X, Y, Z = ObjectId(), ObjectId(), ObjectId()
BASE = datetime(2026, 5, 1, tzinfo=UTC)


def _record(i: int, org: ObjectId = ORG, targets=(), **fields) -> dict:
    return {
        "_id": ObjectId(),
        "organizationId": org,
        "createdAt": BASE + timedelta(milliseconds=(i // 3) * 7),  # ties on purpose
        "storedAt": BASE + timedelta(milliseconds=(i // 3) * 7 + 2),
        "accountId": None,
        "apiKeyId": None,
        "workspaceId": None,
        "statusCode": (200, 404, 201, 500)[i % 4],
        "method": ("GET", "POST", "PATCH")[i % 3],
        "authType": "jwt",
        "resource": "members",
        "path": f"/api/v1/members/{i}",
        "requestId": f"r{i % 5}",
        "targets": [{"type": kind, "id": target, "name": None} for kind, target in targets],
        **fields,
    }


def _story(count: int = 60) -> list[dict]:
    """Records naming X, Y or both, X sometimes twice (two types), some by X or Y."""
    records = []
    for i in range(count):
        targets = []
        if i % 2 == 0:
            targets.append(("member", X))
        if i % 3 == 0:
            targets.append(("workspace", X))  # X twice when i % 6 == 0
        if i % 5 == 0:
            targets.append(("role", Y))
        if i % 7 == 0:
            targets.append(("pathway", None))  # a target without an id
        account = X if i % 11 == 0 else (Y if i % 13 == 0 else None)
        records.append(_record(i, ORG if i % 9 else OTHER, targets, accountId=account))
    return records


@pytest.fixture
def stores(tmp_path):
    """The same records in the SQLite table and in a mongomock collection."""
    table = AuditTable(str(tmp_path / "targets.sqlite3"))
    sql = {"audit_logs": AuditLogCollection(table)}
    mock = mongomock.MongoClient(tz_aware=True).db
    records = _story()
    sql["audit_logs"].insert_many([dict(r) for r in records])
    mock.audit_logs.insert_many([dict(r) for r in records])
    yield sql, mock, records, table
    table.close()


def _filters(args: dict) -> dict:
    """The filters of these API parameters, as the list's view builds them."""
    filters = merge_search(parse_query(MultiDict(args), ListQuerySchema()))
    filters.pop("limit")
    if filters.get("action") == "member.*":  # as the service resolves it
        filters["action"] = ["member.invite", "member.remove", "member.roleChange"]
    return filters


def _plan(connection, branch, order=NEWEST_FIRST) -> str:
    sql, parameters = plan_sql({**branch, "organizationId": ORG}, order, index_for(branch))
    rows = connection.execute("EXPLAIN QUERY PLAN " + sql + " LIMIT 51", parameters)
    return " | ".join(row[3] for row in rows)


TARGET_SHAPES = [
    {"q": str(X)},  # the id search's fourth branch
    {"q": f"target:{X}"},
    {"q": f"target:{X} method:POST status:4xx /members"},
    {"q": f"target:{X} created:>=2026-05-01 created:<=2026-05-02"},
    {"q": f"target:{X}", "workspaceId": str(Y)},
    {"q": f"target:{X} {X}"},  # the search pins the target already: one walk
]


@pytest.mark.parametrize("args", TARGET_SHAPES)
@pytest.mark.parametrize("paged", [None, "after", "before"])
def test_a_target_branch_walks_org_target_newest_with_no_sort_step(tmp_path, args, paged):
    table = AuditTable(str(tmp_path / "plan.sqlite3"))
    connection = table.connection()
    position = (BASE, ObjectId())
    query = AuditQuery(
        filters=_filters(args),
        after=position if paged == "after" else None,
        before=position if paged == "before" else None,
    )
    order = OLDEST_FIRST if paged == "before" else NEWEST_FIRST
    walked = [branch for branch in query.branches() if next(iter(branch)) == "targets.id"]
    assert len(walked) == 1
    [branch] = walked
    assert index_for(branch) == "org_target_newest"
    plan = _plan(connection, branch, order)
    assert "SEARCH t USING COVERING INDEX org_target_newest (organization_id=? AND target_id=?" in (
        plan
    ), plan
    assert "SEARCH l USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
    assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan
    sql, _ = plan_sql({**branch, "organizationId": ORG}, order, "org_target_newest")
    assert "CROSS JOIN" in sql and sql.endswith(
        "ORDER BY t.created_at DESC, t.id DESC"
        if order == NEWEST_FIRST
        else "ORDER BY t.created_at ASC, t.id ASC"
    )
    table.close()


def test_a_target_beside_another_walked_id_is_a_primary_key_probe(tmp_path):
    """``q=<id>`` with ``target:<other id>``: the id branches walk their own indexes and
    test the target on the way, by the side table's primary key, never by a scan; the
    pasted id as a second target of the same record walks the qualifier's target and
    probes the pasted one."""
    table = AuditTable(str(tmp_path / "plan.sqlite3"))
    branches = AuditQuery(filters=_filters({"q": f"target:{X} {Y}"})).branches()
    assert [next(iter(b)) for b in branches] == [
        "accountId",
        "apiKeyId",
        "workspaceId",
        "targets.id",
    ]
    for branch in branches:
        plan = _plan(table.connection(), branch)
        assert f"INDEX {index_for(branch)} (" in plan, plan  # covering or not
        assert "USING PRIMARY KEY (log_rowid=? AND target_id=?)" in plan, plan
        assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan
    table.close()


def test_sql_indexes_hold_the_target_index_and_every_declared_one():
    from audit_app.audit.store.repository import INDEXES

    declared = {options["name"] for _, options in INDEXES}
    assert "org_target_newest" in embedded.SQL_INDEXES
    # but the paths' range, which the trigram index serves here (tests/test_path_index.py)
    assert declared - {embedded.PATH_INDEX} <= embedded.SQL_INDEXES


def _walk(db, filters, limit):
    """Every page forwards with cursors, the page before the last, and the export."""
    pages, query = [], AuditQuery(filters=filters, limit=limit)
    for _ in range(60):
        items, more = search_records(db, ORG, query.branches(), limit, 2000)
        pages.append([r["_id"] for r in items])
        if not more:
            break
        last = items[-1]
        query = AuditQuery(filters=filters, limit=limit, after=(last["createdAt"], last["_id"]))
    back = None
    if len(pages) > 1:
        first = next(r for r in db["audit_logs"].find({"_id": pages[-1][0]}))
        query = AuditQuery(filters=filters, limit=limit, before=(first["createdAt"], first["_id"]))
        back = [
            r["_id"]
            for r in search_records(db, ORG, query.branches(), limit, 2000, towards_newer=True)[0]
        ]
    exported = [
        r["_id"] for r in iter_records(db, ORG, AuditQuery(filters=filters).branches(), 2000)
    ]
    counted = [
        r["createdAt"]
        for r in iter_records(
            db,
            ORG,
            AuditQuery(filters=filters).branches(),
            2000,
            projection={"createdAt": 1, "statusCode": 1},
        )
    ]
    return pages, back, exported, counted


@pytest.mark.parametrize(
    "args",
    [
        {"q": str(X)},
        {"q": str(Y)},
        {"q": f"target:{X}"},
        {"q": f"target:{Y}"},
        {"q": f"target:{Z}"},  # named by no record
        {"q": f"target:{X} method:POST"},
        {"q": f"target:{X} status:4xx /members/"},
        {"q": f"target:{X} requestId:r2"},
        {"q": f"target:{X} {Y}"},
        {"q": f"target:{X} created:>=2026-05-01T00:00:00.030Z"},
        {"q": f"target:{Y}", "method": "GET", "to": "2026-05-01T00:00:00.100Z"},
        {"q": f"target:{X} action:member.remove"},
    ],
)
@pytest.mark.parametrize("limit", [1, 4])
def test_target_searches_never_fall_back_and_agree_with_mongodb_s_engine(stores, args, limit):
    sql, mock, _, _ = stores
    filters = _filters(args)
    before = embedded.FALLBACKS[0]
    found = _walk(sql, filters, limit)
    assert embedded.FALLBACKS[0] == before  # every branch answered by SQL over an index
    assert found == _walk(mock, filters, limit)
    listed = [record_id for page in found[0] for record_id in page]
    assert len(listed) == len(set(listed))  # X twice in a record: listed once


def test_a_record_naming_a_target_twice_is_listed_once(tmp_path):
    table = AuditTable(str(tmp_path / "twice.sqlite3"))
    collection = AuditLogCollection(table)
    twice = _record(1, targets=[("member", X), ("workspace", X), ("role", Y)], accountId=X)
    collection.insert_one(dict(twice))
    rows = table.connection().execute("SELECT target_id FROM audit_targets").fetchall()
    assert sorted(row[0] for row in rows) == sorted([X.binary, Y.binary])
    before = embedded.FALLBACKS[0]
    for args in ({"q": f"target:{X}"}, {"q": str(X)}):  # the target branch, and the actor's
        items, more = search_records(
            {"audit_logs": collection}, ORG, AuditQuery(filters=_filters(args)).branches(), 5, 2000
        )
        assert [item["_id"] for item in items] == [twice["_id"]] and not more
    assert embedded.FALLBACKS[0] == before
    table.close()


def _target_rows(table) -> int:
    return table.connection().execute("SELECT count(*) FROM audit_targets").fetchone()[0]


def test_the_target_rows_follow_every_write_and_delete(tmp_path):
    table = AuditTable(str(tmp_path / "follow.sqlite3"))
    collection = AuditLogCollection(table)
    database = {"audit_logs": collection}
    kept = _record(0, targets=[("member", X)])
    purged = [_record(i, targets=[("member", X), ("role", Y)]) for i in range(1, 6)]
    collection.insert_one(dict(kept))
    collection.insert_many([dict(r) for r in purged])
    assert _target_rows(table) == 1 + 2 * 5

    # a duplicate is refused whole: no second set of target rows
    from pymongo.errors import DuplicateKeyError

    with pytest.raises(DuplicateKeyError):
        collection.insert_one({**kept, "targets": [{"type": "role", "id": Z, "name": None}]})
    assert _target_rows(table) == 11

    # the retention purge's batch (by ids, on the app's road)
    before = embedded.FALLBACKS[0]
    assert delete_records(database, ORG, [r["_id"] for r in purged[:3]]) == 3
    assert embedded.FALLBACKS[0] == before
    assert _target_rows(table) == 1 + 2 * 2

    # an ad-hoc delete, a rewrite that names other targets, an operator's DELETE
    assert collection.delete_many({"_id": purged[3]["_id"]}).deleted_count == 1
    assert _target_rows(table) == 1 + 2
    collection.replace_one(
        {"_id": purged[4]["_id"]}, {**purged[4], "targets": [{"type": "role", "id": Z}]}
    )
    collection.update_one({"_id": kept["_id"]}, {"$push": {"targets": {"type": "x", "id": Y}}})

    def listed(target):
        query = AuditQuery(filters={"target": target})
        return {r["_id"] for r in search_records(database, ORG, query.branches(), 50, 2000)[0]}

    assert listed(X) == {kept["_id"]}
    assert listed(Y) == {kept["_id"]}
    assert listed(Z) == {purged[4]["_id"]}
    writer = table.writer()
    writer.execute("DELETE FROM audit_logs WHERE id = ?", (embedded._key(kept["_id"]),))
    assert listed(X) == set() and _target_rows(table) == 1
    assert collection.column_mismatches(ORG) == []
    table.close()


def test_verification_reports_an_edited_target_row_and_another_tenant_stays_out(tmp_path):
    table = AuditTable(str(tmp_path / "edited.sqlite3"))
    collection = AuditLogCollection(table)
    mine = _record(0, targets=[("member", X)])
    theirs = _record(1, OTHER, targets=[("member", X)])
    collection.insert_many([dict(mine), dict(theirs)])
    assert collection.column_mismatches(ORG) == [] and collection.column_mismatches(OTHER) == []
    writer = table.writer()

    # an edit that would hide my record from a search for X, then one that plants Y on it
    rowid = writer.execute(
        "SELECT rowid FROM audit_logs WHERE id = ?", (embedded._key(mine["_id"]),)
    ).fetchone()[0]
    writer.execute("DELETE FROM audit_targets WHERE log_rowid = ?", (rowid,))
    assert collection.column_mismatches(ORG) == [str(mine["_id"])]
    writer.execute(
        "INSERT INTO audit_targets VALUES (?, ?, ?, ?, ?)",
        (
            rowid,
            X.binary,
            ORG.binary,
            embedded._millis(mine["createdAt"]),
            embedded._key(mine["_id"]),
        ),
    )
    assert collection.column_mismatches(ORG) == []
    writer.execute(
        "INSERT INTO audit_targets VALUES (?, ?, ?, ?, ?)",
        (
            rowid,
            Y.binary,
            ORG.binary,
            embedded._millis(mine["createdAt"]),
            embedded._key(mine["_id"]),
        ),
    )
    assert collection.column_mismatches(ORG) == [str(mine["_id"])]

    # a row that claims another organization's record for mine: never listed in mine
    their_rowid = writer.execute(
        "SELECT rowid FROM audit_logs WHERE id = ?", (embedded._key(theirs["_id"]),)
    ).fetchone()[0]
    writer.execute(
        "INSERT INTO audit_targets VALUES (?, ?, ?, ?, ?)",
        (their_rowid, Z.binary, ORG.binary, 0, embedded._key(theirs["_id"])),
    )
    query = AuditQuery(filters={"target": Z})
    assert search_records({"audit_logs": collection}, ORG, query.branches(), 50, 2000)[0] == []
    table.close()


def _old_table(path: str, records: list[dict]) -> None:
    """A table as the previous version left it: records, no ``audit_targets``."""
    old = sqlite3.connect(path)
    old.executescript(embedded.TABLE.split("-- what each record acted on")[0])
    old.executemany(embedded._INSERT, [embedded._row(r) for r in records])
    old.commit()
    old.close()


def test_a_table_of_the_previous_version_is_filled_in_bounded_resumable_batches(
    tmp_path, monkeypatch
):
    path = str(tmp_path / "old.sqlite3")
    records = _story(25)
    _old_table(path, records)
    monkeypatch.setattr(embedded, "BACKFILL_BATCH", 4)
    transactions = []
    real = embedded._target_rows

    def interrupted(*args):  # the process is killed while filling its third batch
        transactions.append(args[0])
        if len(transactions) == 9:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(embedded, "_target_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        AuditTable(path).connection()
    progress = sqlite3.connect(path)
    assert progress.execute("SELECT next_rowid, last_rowid FROM audit_backfills").fetchone() == (
        8,
        25,
    )  # two batches of four committed, the third rolled back
    assert progress.execute("SELECT max(log_rowid) FROM audit_targets").fetchone()[0] <= 8
    progress.close()

    monkeypatch.setattr(embedded, "_target_rows", real)
    table = AuditTable(path)
    collection = AuditLogCollection(table)
    later = _record(99, targets=[("member", X)])
    collection.insert_one(dict(later))  # stored after the upgrade: with its rows at once
    state = table.connection().execute("SELECT next_rowid, last_rowid FROM audit_backfills")
    assert state.fetchone() == (25, 25)
    mock = mongomock.MongoClient(tz_aware=True).db
    mock.audit_logs.insert_many([dict(r) for r in [*records, later]])
    before = embedded.FALLBACKS[0]
    for target in (X, Y):
        filters = {"target": target}
        assert _walk({"audit_logs": collection}, filters, 3) == _walk(mock, filters, 3)
    assert embedded.FALLBACKS[0] == before
    assert collection.column_mismatches(ORG) == [] and collection.column_mismatches(OTHER) == []
    table.close()
    reopened = AuditTable(path)  # done: opening again fills nothing
    assert _target_rows(reopened) == _target_rows_expected([*records, later])
    reopened.close()


def _target_rows_expected(records) -> int:
    return sum(len(embedded._target_ids(r)) for r in records)


def test_a_new_file_notes_an_empty_fill(tmp_path):
    table = AuditTable(str(tmp_path / "new.sqlite3"))
    state = table.connection().execute("SELECT next_rowid, last_rowid FROM audit_backfills")
    assert state.fetchone() == (0, 0)
    table.close()


def test_records_of_litemongo_move_in_with_their_targets(tmp_path):
    table = AuditTable(str(tmp_path / "moved.sqlite3"))
    records = _story(10)
    assert embedded._insert_missing(table, records) == 10
    assert embedded._insert_missing(table, records) == 0  # a resumed move skips them
    assert _target_rows(table) == _target_rows_expected(records)
    table.close()


def test_target_searches_through_the_api_never_fall_back(make_app, tmp_path):
    """The whole request path on the embedded store: a pasted id, ``target:`` alone, with
    other filters, and its next page by cursor."""
    from .factories import Api, make_org

    app = make_app(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(tmp_path / "store"))
    org = make_org(app, "Targets")
    api = Api(app.test_client())
    workspace = org.workspace["_id"]
    for name in ("a", "b", "c"):
        answer = api.patch(f"/api/v1/workspaces/{workspace}", as_=org.admin, json={"name": name})
        assert answer.status_code == 200, answer.get_json()
    api.get("/api/v1/workspaces", as_=org.admin)
    before = embedded.FALLBACKS[0]
    pasted = api.get(f"/api/v1/audit-logs?q={workspace}", as_=org.admin).get_json()["items"]
    assert len([i for i in pasted if "target" in i["matchedAs"]]) == 3
    first = api.get(
        f"/api/v1/audit-logs?q=target:{workspace}%20method:PATCH%20status:2xx&limit=2",
        as_=org.admin,
    ).get_json()
    assert len(first["items"]) == 2 and first["nextCursor"]
    rest = api.get(
        f"/api/v1/audit-logs?q=target:{workspace}%20method:PATCH%20status:2xx&limit=2"
        f"&cursor={first['nextCursor']}",
        as_=org.admin,
    ).get_json()
    assert len(rest["items"]) == 1 and rest["nextCursor"] is None
    assert embedded.FALLBACKS[0] == before
