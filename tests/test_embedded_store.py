"""The embedded store's audit table: the same answers as MongoDB's engine, from an index.

- conformance: every query shape, filter, search text and cursor, run on the table and on
  mongomock over the same (hypothesis-generated) records, lists the same pages in the same
  order; ties in time and case-insensitive non-ASCII paths included;
- plans: ``EXPLAIN QUERY PLAN`` of each shape the API sends walks the index the ``hint``
  names, with no temporary B-tree for the sort, so a regression to a scan fails here;
- types: every BSON type a record holds round-trips byte for byte and hashes the same;
- the app's own queries never fall back to the slow generic road.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta

import bson
import mongomock
import pytest
from bson import Decimal128, Int64, ObjectId
from bson.binary import Binary
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from audit_app.audit.integrity.canonical import record_hash_v2
from audit_app.audit.store import embedded
from audit_app.audit.store.embedded import AuditLogCollection, AuditTable, fold, plan_sql
from audit_app.audit.store.query import AuditQuery, ListQuerySchema, merge_search, parse_query
from audit_app.audit.store.repository import NEWEST_FIRST, index_for, iter_records, search_records
from audit_app.errors import ApiError

ORG, OTHER = ObjectId(), ObjectId()
IDS = [ObjectId() for _ in range(3)]
BASE = datetime(2026, 5, 1, tzinfo=UTC)
# "\u017f" is the long s, which a case-insensitive regex takes for an s
WORDS = [
    "pathways",
    "Straße",
    "ÉTÉ",
    "été",
    "ΣΑΣ",
    "σας",
    "members",
    "\u017ftar",
    "KELVIN",
    "\u0130stanbul",
]


class Both:
    """The same records in the SQLite table and in a mongomock collection."""

    def __init__(self, path):
        self.table = AuditTable(str(path))
        self.sql = {"audit_logs": AuditLogCollection(self.table)}
        self.mock = mongomock.MongoClient(tz_aware=True).db

    def insert(self, records):
        if records:
            self.sql["audit_logs"].insert_many([dict(r) for r in records])
            self.mock.audit_logs.insert_many([dict(r) for r in records])


def _record(i, org, account, workspace, key, status, method, word, auth, targets=()):
    return {
        "_id": ObjectId(),
        "organizationId": org,
        "createdAt": BASE + timedelta(milliseconds=(i // 3) * 11),  # ties on purpose
        "storedAt": BASE + timedelta(milliseconds=(i // 3) * 11 + 5),
        "accountId": IDS[account] if account is not None else None,
        "workspaceId": IDS[workspace] if workspace is not None else None,
        "apiKeyId": IDS[key] if key is not None else None,
        "statusCode": status,
        "method": method,
        "authType": auth,
        "resource": "pathways" if i % 2 else "members",
        "path": f"/api/v1/{word}/{i}",
        "ip": ("10.0.0.1", "10.0.0.2", "2001:db8::1")[i % 3],
        "requestId": f"r{i % 4}",
        "action": ("member.invite", "member.remove", "pathway.create")[(i // 2) % 3],
        "credentialId": ("jwt_credzero0", "key_credone11")[(i // 3) % 2],
        # what it acted on: an id may repeat under two types, or be missing (a path's id
        # that was no ObjectId); a record listed for a target is listed once
        "targets": [
            {"type": kind, "id": IDS[which] if which is not None else None, "name": None}
            for kind, which in targets
        ],
        "request": {"body": {"n": i}},
    }


maybe = st.one_of(st.none(), st.integers(0, 2))
rows = st.lists(
    st.tuples(
        st.sampled_from([ORG, ORG, OTHER]),
        maybe,
        maybe,
        maybe,
        st.sampled_from([200, 201, 404, 409, 500]),
        st.sampled_from(["GET", "POST", "DELETE"]),
        st.sampled_from(WORDS),
        st.sampled_from(["jwt", "apiKey"]),
        st.lists(st.tuples(st.sampled_from(["member", "workspace"]), maybe), max_size=3),
    ),
    max_size=30,
)
CHOICES = {
    "q": st.sampled_from(
        [str(i) for i in IDS]
        + ["pathways", "STRASSE", "straße", "été", "σας", "star", "k"]
        + ["ip:10.0.0.1", "ip:2001:DB8::1", "requestId:r1", "action:member.invite"]
        + ["action:member.*", "credential:jwt_credzero0", "ip:10.0.0.2 status:4xx"]
        + ["requestId:r2 k", "credential:key_credone11 method:POST"]
        # what a request acted on: alone, and with filters that other indexes serve
        + [f"target:{IDS[0]}", f"target:{IDS[1]} method:POST", f"target:{IDS[2]} status:4xx k"]
        + [f"target:{IDS[0]} {IDS[1]}", f"target:{IDS[2]} requestId:r1"]
    ),
    "path": st.sampled_from(["/API/V1/", "ΣΑΣ/1", "kelvin", "Star"]),
    "accountId": st.sampled_from([str(i) for i in IDS]),
    "workspaceId": st.sampled_from([str(i) for i in IDS]),
    "statusCode": st.sampled_from(["4xx", "2xx", "404", "5xx"]),
    "method": st.sampled_from(["GET", "DELETE"]),
    "authType": st.sampled_from(["jwt", "apiKey"]),
    "resource": st.sampled_from(["pathways", "members"]),
    "from": st.sampled_from(["2026-05-01T00:00:00.020Z"]),
    "to": st.sampled_from(["2026-05-01T00:00:00.060Z"]),
}
# at most two filters at a time, so most queries match something
parameters = st.lists(st.sampled_from(sorted(CHOICES)), max_size=2, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({name: CHOICES[name] for name in names})
)


def _pages(db, filters, limit):
    """Every page of a query, forwards with cursors; and the page before the last."""
    pages, query = [], AuditQuery(filters=filters, limit=limit)
    for _ in range(40):
        items, more = search_records(db, ORG, query.branches(), limit, 2000)
        pages.append([(r["_id"], r["createdAt"], "request" in r) for r in items])
        if not more:
            break
        last = items[-1]
        query = AuditQuery(filters=filters, limit=limit, after=(last["createdAt"], last["_id"]))
    back = None
    if len(pages) > 1:
        first_id, first_at, _ = pages[-1][0]
        query = AuditQuery(filters=filters, limit=limit, before=(first_at, first_id))
        back = [
            r["_id"]
            for r in search_records(db, ORG, query.branches(), limit, 2000, towards_newer=True)[0]
        ]
    exported = [
        r["_id"] for r in iter_records(db, ORG, AuditQuery(filters=filters).branches(), 2000)
    ]
    return pages, back, exported


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=rows, args=parameters, limit=st.integers(1, 4))
def test_the_table_answers_every_shape_as_mongodb_s_engine_does(
    tmp_path_factory, records, args, limit
):
    """Targets included: a record that names a target twice is listed once."""
    both = Both(tmp_path_factory.mktemp("c") / "audit.sqlite3")
    both.insert([_record(i, *row) for i, row in enumerate(records)])
    try:
        filters = merge_search(parse_query(MultiDict(args), ListQuerySchema()))
    except ApiError:  # a qualifier that contradicts a parameter: a 400, no query to compare
        assume(False)
    filters.pop("limit")
    if filters.get("action") == "member.*":  # as the service resolves it
        filters["action"] = ["member.invite", "member.remove", "member.roleChange"]
    before = embedded.FALLBACKS[0]
    assert _pages(both.sql, filters, limit) == _pages(both.mock, filters, limit)
    assert embedded.FALLBACKS[0] == before  # every shape answered by SQL over an index
    both.table.close()


@settings(max_examples=300, deadline=None)
@given(a=st.characters(), b=st.characters())
def test_folding_agrees_with_a_case_insensitive_regex(a, b):
    assert (fold(a) == fold(b)) == bool(re.fullmatch(re.escape(a), b, re.IGNORECASE))


API_SHAPES = [
    ({}, "org_newest"),
    ({"accountId": str(IDS[0])}, "org_account_newest"),
    ({"workspaceId": str(IDS[0])}, "org_workspace_newest"),
    ({"apiKeyId": str(IDS[0])}, "org_apikey_newest"),
    ({"statusCode": "404"}, "org_status_newest"),
    ({"statusCode": "4xx"}, "org_statusclass_newest"),
    ({"method": "DELETE"}, "org_method_newest"),
    ({"authType": "apiKey"}, "org_authtype_newest"),
    ({"resource": "members"}, "org_resource_newest"),
    ({"from": "2026-05-01", "to": "2026-05-02"}, "org_newest"),
    ({"q": "pathways"}, "org_newest"),
    ({"path": "Straße"}, "org_newest"),
    ({"q": str(IDS[1])}, None),  # four branches, each on its id index (targets too)
    # what a request acted on: the side table's index, joined to each record by rowid
    ({"q": f"target:{IDS[0]}"}, "org_target_newest"),
    ({"q": f"target:{IDS[0]} method:GET status:4xx /pathways"}, "org_target_newest"),
    ({"q": f"target:{IDS[0]}", "accountId": str(IDS[1])}, "org_target_newest"),
    # the qualifiers support staff paste, each on its own index
    ({"q": "requestId:4f1c2a"}, "org_requestid_newest"),
    ({"q": "credential:jwt_abcdefgh12"}, "org_credential_newest"),
    ({"q": "ip:203.0.113.7"}, "org_ip_newest"),
    ({"q": "action:member.roleChange"}, "org_action_newest"),
    ({"q": "action:member.*"}, "org_action_newest"),  # one walk per action of members
    ({"q": "ip:203.0.113.7 status:4xx /pathways"}, "org_ip_newest"),
    ({"q": "requestId:r1 credential:key_1234 method:GET"}, "org_requestid_newest"),
]


@pytest.mark.parametrize("args,index", API_SHAPES)
@pytest.mark.parametrize("paged", [False, True])
def test_each_shape_walks_its_index_with_no_sort_step(tmp_path, args, index, paged):
    table = AuditTable(str(tmp_path / "plan.sqlite3"))
    connection = table.connection()
    filters = merge_search(parse_query(MultiDict(args), ListQuerySchema()))
    filters.pop("limit")
    if filters.get("action") == "member.*":  # as the service resolves it
        filters["action"] = ["member.invite", "member.remove", "member.roleChange"]
    after = (BASE, ObjectId()) if paged else None
    for branch in AuditQuery(filters=filters, after=after).branches():
        scoped = {**branch, "organizationId": ORG}
        sql, parameters = plan_sql(scoped, NEWEST_FIRST, index_for(branch))
        plan = " | ".join(
            row[3]
            for row in connection.execute("EXPLAIN QUERY PLAN " + sql + " LIMIT 51", parameters)
        )
        expected = (
            index
            or {
                "accountId": "org_account_newest",
                "workspaceId": "org_workspace_newest",
                "apiKeyId": "org_apikey_newest",
                "targets.id": "org_target_newest",
            }[next(iter(branch))]  # an id search's branch leads with the id it searches
        )
        # the side table's index holds every column its walk reads: a covering index
        assert re.search(f"USING (COVERING )?INDEX {expected}\\b", plan), plan
        assert "TEMP B-TREE" not in plan, plan
        assert "SCAN" not in plan or f"USING INDEX {expected}" in plan, plan
    table.close()


def test_sealing_and_retention_walk_their_indexes(tmp_path):
    table = AuditTable(str(tmp_path / "plan.sqlite3"))
    connection = table.connection()
    window = {"organizationId": ORG, "storedAt": {"$gte": BASE, "$lt": BASE + timedelta(hours=1)}}
    sql, parameters = plan_sql(window, [("storedAt", 1), ("_id", 1)], None)
    plan = " ".join(r[3] for r in connection.execute("EXPLAIN QUERY PLAN " + sql, parameters))
    assert "org_stored" in plan and "TEMP B-TREE" not in plan
    at = BASE + timedelta(minutes=5)  # a stream's next batch: past its cursor, in stored order
    batch = {
        "organizationId": ORG,
        "storedAt": {"$gte": at, "$lte": BASE + timedelta(hours=1)},
        "$and": [{"$or": [{"storedAt": {"$gt": at}}, {"_id": {"$gt": ObjectId()}}]}],
    }
    sql, parameters = plan_sql(batch, [("storedAt", 1), ("_id", 1)], "org_stored")
    plan = " ".join(r[3] for r in connection.execute("EXPLAIN QUERY PLAN " + sql, parameters))
    assert "USING INDEX org_stored" in plan and "TEMP B-TREE" not in plan
    # the retention purge's batch: the organization's oldest stored records, then their ids
    purge = {"organizationId": ORG, "storedAt": {"$lt": BASE}}
    sql, parameters = plan_sql(purge, [("storedAt", 1), ("_id", 1)], "org_stored")
    plan = " ".join(r[3] for r in connection.execute("EXPLAIN QUERY PLAN " + sql, parameters))
    assert "USING INDEX org_stored" in plan and "TEMP B-TREE" not in plan
    batch = {"organizationId": ORG, "_id": {"$in": [ObjectId(), ObjectId()]}}
    sql, parameters = plan_sql(batch, [], None)
    plan = " ".join(r[3] for r in connection.execute("EXPLAIN QUERY PLAN " + sql, parameters))
    assert "SCAN" not in plan, plan
    table.close()


EVERY_TYPE = {
    "_id": ObjectId(),
    "organizationId": ORG,
    "createdAt": datetime(2026, 5, 1, 12, 30, 45, 123000, tzinfo=UTC),
    "storedAt": datetime(2026, 5, 1, 12, 30, 45, 124000, tzinfo=UTC),
    "statusCode": 201,
    "durationMs": 1.25,
    "big": Int64(2**40),
    "int32": 7,
    "decimal": Decimal128("1.10"),
    "flag": True,
    "nothing": None,
    "bytes": Binary(b"\x00\xff\x10"),
    "uuid": Binary(b"0123456789abcdef", 4),
    "text": "naïve ✓ 日本",
    "list": [1, "two", {"three": 3.0}, [None]],
    "nested": {"a": {"b": {"c": [datetime(1999, 1, 1, tzinfo=UTC)]}}},
    "regexLike": {"$lit": "not an operator"},
    "path": "/api/v1/pathways",
}


def test_every_bson_type_round_trips_exactly_and_hashes_the_same(tmp_path):
    both = Both(tmp_path / "types.sqlite3")
    both.insert([EVERY_TYPE])
    from_sql = both.sql["audit_logs"].find_one({"_id": EVERY_TYPE["_id"]})
    from_mock = both.mock.audit_logs.find_one({"_id": EVERY_TYPE["_id"]})
    assert bson.encode(from_sql) == bson.encode(EVERY_TYPE) == bson.encode(from_mock)
    # decoded as the real driver decodes (binary subtype 0 is ``bytes``), the same BSON
    assert record_hash_v2(from_sql) == record_hash_v2(from_mock)
    assert type(from_sql["big"]) is Int64 and from_sql["createdAt"].tzinfo is not None
    both.table.close()


def test_a_duplicate_id_is_a_duplicate_key_error_and_nothing_changes(tmp_path):
    from pymongo.errors import DuplicateKeyError

    table = AuditTable(str(tmp_path / "dup.sqlite3"))
    collection = AuditLogCollection(table)
    record = _record(0, ORG, 0, None, None, 200, "GET", "pathways", "jwt")
    collection.insert_one(dict(record))
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({**record, "path": "/changed"})
    assert collection.find_one({"_id": record["_id"]})["path"] == record["path"]
    table.close()


def test_ad_hoc_filters_and_updates_still_work_through_the_generic_road(tmp_path):
    """What an operator or a test asks that no index serves: answered, just not fast."""
    table = AuditTable(str(tmp_path / "adhoc.sqlite3"))
    collection = AuditLogCollection(table)
    records = [_record(i, ORG, 0, None, None, 200 + i, "GET", "pathways", "jwt") for i in range(5)]
    collection.insert_many([dict(r) for r in records])
    assert collection.count_documents({"durationMs": {"$exists": False}}) == 5
    collection.update_one({"_id": records[0]["_id"]}, {"$set": {"statusCode": 599}})
    assert collection.find_one({"statusCode": 599})["_id"] == records[0]["_id"]
    assert [
        r["statusCode"]
        for r in collection.find({"statusCode": {"$gte": 203}}).sort("statusCode", -1)
    ] == [
        599,
        204,
        203,
    ]
    assert collection.delete_many({"statusCode": 599}).deleted_count == 1
    assert collection.count_documents({}) == 4
    table.close()


def test_a_query_past_its_time_budget_stops_as_mongodb_does(tmp_path):
    from pymongo.errors import ExecutionTimeout

    table = AuditTable(str(tmp_path / "slow.sqlite3"))
    collection = AuditLogCollection(table)
    collection.insert_many(
        [_record(i, ORG, None, None, None, 200, "GET", "pathways", "jwt") for i in range(3000)]
    )
    [branch] = AuditQuery(filters={"q": "no-such-text"}).branches()
    cursor = collection.find({**branch, "organizationId": ORG}).hint("org_newest")
    with pytest.raises(ExecutionTimeout):  # a budget already spent when the scan starts
        list(cursor.sort(NEWEST_FIRST).max_time_ms(1e-6))
    table.close()


def test_the_budget_counts_the_store_s_work_not_the_reader_s(tmp_path):
    """An export read slowly by its client does not run out of time."""
    import time

    table = AuditTable(str(tmp_path / "reader.sqlite3"))
    collection = AuditLogCollection(table)
    collection.insert_many(
        [_record(i, ORG, None, None, None, 200, "GET", "pathways", "jwt") for i in range(30)]
    )
    records = iter_records({"audit_logs": collection}, ORG, [{}], max_time_ms=200, batch_size=5)
    seen = 0
    for _ in records:
        seen += 1
        if seen % 5 == 0:
            time.sleep(0.06)  # 6 batches x 60 ms of reading: more than the 200 ms budget
    assert seen == 30
    table.close()


def test_records_of_an_earlier_version_move_into_the_table(make_app, tmp_path):
    import litemongo

    store = tmp_path / "legacy-store"
    legacy = litemongo.connect(str(store), tz_aware=True)
    old = [_record(i, ORG, None, None, None, 200, "GET", "pathways", "jwt") for i in range(7)]
    legacy["audit_app"].audit_logs.insert_many([dict(r) for r in old])
    legacy.close()
    app = make_app(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(store))
    from audit_app.db import get_audit_db

    with app.app_context():
        db = get_audit_db()
        assert db.audit_logs.count_documents({"organizationId": ORG}) == 7
        assert "audit_logs" not in db._database.list_collection_names()
    assert (
        sqlite3.connect(str(store / "audit_app.audit_logs.sqlite3"))
        .execute("SELECT count(*) FROM audit_logs")
        .fetchone()[0]
        >= 7
    )


@pytest.mark.parametrize(
    "text", ["star", "STRASSE", "straße", "ÉTÉ", "σας", "ΣΑΣ", "k", "1", "istanbul"]
)
def test_non_ascii_case_insensitive_search_matches_mongodb_s_engine(tmp_path, text):
    both = Both(tmp_path / "fold.sqlite3")
    both.insert(
        [
            _record(i, ORG, None, None, None, 200, "GET", word, "jwt")
            for i, word in enumerate(WORDS * 2)
        ]
    )
    for filters in ({"q": text}, {"path": text}):
        query = AuditQuery(filters=filters)
        found = {
            name: [r["path"] for r in search_records(db, ORG, query.branches(), 50, 2000)[0]]
            for name, db in (("sql", both.sql), ("mock", both.mock))
        }
        assert found["sql"] == found["mock"], found
        assert found["sql"] or text == "STRASSE"  # ß is not "ss" to a regex
    both.table.close()


@settings(max_examples=200, deadline=None)
@given(
    drop=st.sets(st.sampled_from(["route", "ip", "accountEmail", "durationMs", "request"])),
    text=st.text(max_size=10),
    number=st.integers(100, 599),
    duration=st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
)
def test_the_fast_presenter_gives_what_the_schemas_give(drop, text, number, duration):
    from audit_app.audit.schemas import AuditLogDetailSchema, AuditLogSchema, present

    record = _record(1, ORG, 0, 1, None, number, "GET", "pathways", "jwt")
    record.update(ip=text, accountEmail=None, durationMs=duration, route=text or None)
    record["request"] = {"body": {"k": text, "at": BASE, "id": IDS[0]}, "query": {}}
    for name in drop:
        record.pop(name)
    assert present(record) == AuditLogSchema().dump(record)
    assert present(record, details=True) == AuditLogDetailSchema().dump(record)


def test_a_sealed_window_with_records_verifies_on_the_embedded_store(make_app, tmp_path):
    """Chunk entries hold storedAt in ms, an int64 that reads back as bson.Int64 (as from
    MongoDB): verify once called every such window tampered."""
    import json

    from audit_app.db import get_audit_db, get_db
    from audit_app.ids import utcnow

    from .factories import make_org

    app = make_app(
        MONGO_CLIENT=None,
        MONGO_URI=None,
        EMBEDDED_STORE_DIR=str(tmp_path / "store"),
        AUDIT_SEAL_IN_BACKGROUND=False,
    )
    org = make_org(app, "Sealed")
    with app.app_context():
        earlier = utcnow() - timedelta(seconds=30)
        # windows start at the organization's creation, floored to the hour: created two
        # hours ago, so a run just after an hour boundary still has a window to seal
        get_db().organizations.update_one(
            {"_id": org.id}, {"$set": {"createdAt": earlier - timedelta(hours=2)}}
        )
        get_audit_db().audit_logs.insert_many(
            [
                _record(i, org.id, 0, None, None, 200, "GET", "pathways", "jwt")
                | {"createdAt": earlier, "storedAt": earlier}
                for i in range(5)
            ]
        )
    runner = app.test_cli_runner()
    sealed = runner.invoke(args=["seal", "--organization", str(org.id), "--now", "--json"])
    assert sealed.exit_code == 0, sealed.output
    verified = runner.invoke(args=["verify", "--organization", str(org.id), "--json"])
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.output)
    assert report["ok"] is True and report["windows"] >= 1, report


def test_a_write_while_this_thread_streams_an_export_does_not_fail(tmp_path):
    """The export's cursor holds a snapshot; another process commits; this thread's
    record of the request must still be stored, not refused as "database is locked"."""
    import threading

    table = AuditTable(str(tmp_path / "snapshot.sqlite3"))
    collection = AuditLogCollection(table)
    collection.insert_many(
        [_record(i, ORG, None, None, None, 200, "GET", "pathways", "jwt") for i in range(600)]
    )
    records = iter_records({"audit_logs": collection}, ORG, [{}], 5000, batch_size=500)
    next(records)  # the first batch is read: a read snapshot is open on this thread

    def elsewhere():
        other = AuditLogCollection(AuditTable(str(tmp_path / "snapshot.sqlite3")))
        other.insert_one(_record(900, ORG, None, None, None, 200, "GET", "pathways", "jwt"))
        other.table.close()

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    collection.insert_one(_record(901, ORG, None, None, None, 201, "GET", "pathways", "jwt"))
    assert sum(1 for _ in records) == 599
    assert collection.count_documents({}) == 602
    table.close()


def test_retention_purges_one_organization_in_batches(tmp_path):
    from audit_app.audit.store.embedded import FALLBACKS
    from audit_app.audit.store.repository import delete_records, stored_before

    table = AuditTable(str(tmp_path / "purge.sqlite3"))
    collection = AuditLogCollection(table)
    database = {"audit_logs": collection}
    other = ObjectId()
    records = [
        _record(i, ORG, None, None, None, 200, "GET", "pathways", "jwt") for i in range(2500)
    ]
    records += [
        _record(i, other, None, None, None, 200, "GET", "pathways", "jwt") for i in range(9)
    ]
    collection.insert_many(records)
    fallbacks = FALLBACKS[0]
    removed = 0
    while batch := stored_before(database, ORG, BASE + timedelta(days=30), 1000):
        assert len(batch) <= 1000 and [at for _, at in batch] == sorted(at for _, at in batch)
        removed += delete_records(database, ORG, [record_id for record_id, _ in batch])
    assert removed == 2500 and FALLBACKS[0] == fallbacks  # index walks, never mongomock's scan
    assert collection.count_documents({"organizationId": ORG}) == 0
    assert collection.count_documents({"organizationId": other}) == 9
    table.close()


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE audit_logs SET method = 'GET', status_code = 200, status_class = 2 WHERE id = ?",
        "UPDATE audit_logs SET account_id = NULL, path_fold = '/x' WHERE id = ?",
        "UPDATE audit_logs SET created_at = 0 WHERE id = ?",
        "UPDATE audit_logs SET doc = CAST(x'ffff0000' || substr(doc, 5) AS BLOB) WHERE id = ?",
    ],
)
def test_editing_the_table_s_columns_to_hide_a_record_is_caught_by_verify(make_app, tmp_path, edit):
    """Filters read the columns, verification the BSON: a full verification checks that
    they agree, so an edit that makes searches miss a sealed record is reported."""
    import json

    from audit_app.db import get_audit_db
    from audit_app.ids import utcnow

    from .factories import make_org

    store = tmp_path / "store"
    app = make_app(
        MONGO_CLIENT=None,
        MONGO_URI=None,
        EMBEDDED_STORE_DIR=str(store),
        AUDIT_SEAL_IN_BACKGROUND=False,
    )
    org = make_org(app, "Hidden")
    earlier = utcnow() - timedelta(seconds=30)
    target = _record(1, org.id, 0, None, None, 403, "DELETE", "members", "jwt") | {
        "createdAt": earlier,
        "storedAt": earlier,
    }
    with app.app_context():
        get_audit_db().audit_logs.insert_one(dict(target))
    runner = app.test_cli_runner()
    assert runner.invoke(args=["seal", "--organization", str(org.id), "--now"]).exit_code == 0
    clean = runner.invoke(args=["verify", "--organization", str(org.id), "--json"])
    assert clean.exit_code == 0, clean.output
    database = sqlite3.connect(str(store / "audit_app.audit_logs.sqlite3"))
    database.execute(edit, (embedded._key(target["_id"]),))
    database.commit()
    database.close()
    tampered = runner.invoke(args=["verify", "--organization", str(org.id), "--json"])
    assert tampered.exit_code == 1, tampered.output
    assert "Traceback" not in tampered.output
    report = json.loads(tampered.output)
    assert report["ok"] is False


def test_a_record_whose_bson_was_destroyed_is_listed_not_a_500(make_app, tmp_path):
    from .factories import Api, make_org, settled

    store = tmp_path / "store"
    app = make_app(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(store))
    org = make_org(app, "Broken")
    api = Api(app.test_client())
    api.get("/api/v1/organization", as_=org.admin)
    settled(app)
    database = sqlite3.connect(str(store / "audit_app.audit_logs.sqlite3"))
    database.execute("UPDATE audit_logs SET doc = x'ffff0000'")
    database.commit()
    database.close()
    answer = api.get("/api/v1/audit-logs?limit=1", as_=org.admin)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["items"] and answer.get_json()["nextCursor"]


def test_a_table_of_the_previous_version_gains_the_new_columns_filled(tmp_path):
    """An installation upgraded in place: its records are found by ip: and requestId: at
    once, and verification does not take the filled columns for edits."""
    import sqlite3

    import bson

    path = str(tmp_path / "old.sqlite3")
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE audit_logs (rowid INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, "
        "organization_id BLOB, created_at INTEGER, stored_at INTEGER, account_id BLOB, "
        "workspace_id BLOB, api_key_id BLOB, status_code NUMERIC, status_class INTEGER, "
        "method TEXT, auth_type TEXT, resource TEXT, path_fold TEXT, doc BLOB NOT NULL)"
    )
    record = _record(1, ORG, 0, None, None, 200, "GET", "pathways", "jwt")
    del record["action"], record["credentialId"]  # as records were before these fields
    row = embedded._row(record)
    old.execute(
        "INSERT INTO audit_logs (id, organization_id, created_at, stored_at, account_id, "
        "workspace_id, api_key_id, status_code, status_class, method, auth_type, resource, "
        "path_fold, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*row[:13], bson.encode(record)),
    )
    old.commit()
    old.close()
    table = AuditTable(path)
    collection = AuditLogCollection(table)
    for qualifier in (f"ip:{record['ip']}", f"requestId:{record['requestId']}"):
        filters = merge_search({"q": qualifier})
        [branch] = AuditQuery(filters=filters).branches()
        items, _ = search_records({"audit_logs": collection}, ORG, [branch], 10, 2000)
        assert [r["_id"] for r in items] == [record["_id"]]
    assert collection.column_mismatches(ORG) == []
    table.close()
    AuditTable(path).close()  # opening again: nothing left to do


def test_threads_opening_a_new_store_at_once_all_succeed(tmp_path):
    """Each thread of a process has its own connection to each collection file (the
    sealer, the purger, the streams and the requests' threads): opened together on a new
    folder they must all work. litemongo alone lets two of them create the folder, set the
    journal mode and note the file's key format at once ("File exists", "database is
    locked", "UNIQUE constraint failed: info.key"); this failed in most rounds before."""
    import threading

    from audit_app import sorted_store
    from audit_app.indexes import sorted_indexes

    for round_ in range(8):
        folder = str(tmp_path / f"store{round_}")
        barrier, errors = threading.Barrier(6), []

        def open_and_write(worker: int, folder: str = folder, barrier=barrier, errors=errors):
            client = sorted_store.connect(folder, sorted_indexes())
            try:
                barrier.wait(10)
                database = client["audit_app"]
                database["audit_leases"].insert_one({"_id": f"lease {worker}"})
                database["workspaces"].insert_one({"_id": worker, "name": f"w{worker}"})
            except Exception as error:  # the test reports every one
                errors.append(error)
            finally:
                client.close()

        threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        client = sorted_store.connect(folder, sorted_indexes())
        assert client["audit_app"]["audit_leases"].count_documents({}) == 6
        assert client["audit_app"]["workspaces"].count_documents({}) == 6
        client.close()
