"""The real pymongo driver against mockupdb (MongoDB's wire-protocol test server) on
127.0.0.1: the commands the app sends, exactly as a MongoDB server receives them."""

from __future__ import annotations

import pytest
from mockupdb import MockupDB, OpMsg, going

from audit_app.db import stores

from .wire import app_on


@pytest.fixture
def server():
    mock = MockupDB(auto_ismaster={"maxWireVersion": 21, "minWireVersion": 0})
    mock.run()
    yield mock
    mock.stop()


@pytest.fixture
def wired(server, tmp_path):
    def build(**overrides):
        app = app_on(server.uri, tmp_path, **overrides)
        built.append(app)
        return app

    built: list = []
    yield build
    for app in built:
        for store in set(stores(app).values()):
            store.close()


def _answer_one_insert(server, client_call):
    with going(client_call) as answered:
        insert = server.receives(OpMsg("insert", "audit_logs"), timeout=10)
        insert.ok(n=1)
    return insert, answered()


def test_an_audit_record_is_written_with_majority_and_journal_by_default(server, wired):
    client = wired().test_client()
    insert, response = _answer_one_insert(server, lambda: client.get("/api/v1/no-such-thing"))
    assert response.status_code == 404
    assert insert.doc["writeConcern"] == {"w": "majority", "j": True}
    assert insert.doc["$db"] == "auditdb"
    [document] = insert.doc["documents"]
    assert document["path"] == "/api/v1/no-such-thing" and document["statusCode"] == 404


def test_the_write_concern_is_a_setting(server, wired):
    client = wired(AUDIT_WRITE_CONCERN="1", AUDIT_WRITE_JOURNAL=False).test_client()
    insert, _ = _answer_one_insert(server, lambda: client.get("/api/v1/no-such-thing"))
    assert insert.doc["writeConcern"] == {"w": 1, "j": False}


def test_the_login_limiter_keeps_its_counters_in_the_apps_database(server, wired):
    app = wired(RATELIMIT_STORAGE_URI=None, RATELIMIT_ENABLED=False)
    assert app.config["RATELIMIT_STORAGE_URI"].startswith("mongodb://")
    assert app.config["RATELIMIT_STORAGE_OPTIONS"]["database_name"] == "auditdb"


def test_the_ttl_index_of_an_earlier_version_is_dropped_not_rebuilt(server):
    """A TTL index deletes whatever an organization's legal hold says: ensure-indexes drops
    it (cheap: no rebuild, no collMod) and creates none."""
    import pymongo

    from audit_app.audit.store.repository import TTL_INDEX, drop_ttl, ensure_audit_indexes

    listed = {
        "id": 0,
        "ns": "auditdb.audit_logs",
        "firstBatch": [
            {"v": 2, "key": {"_id": 1}, "name": "_id_"},
            {"v": 2, "key": {"createdAt": 1}, "name": TTL_INDEX, "expireAfterSeconds": 400 * 86400},
        ],
    }
    seen: list[str] = []

    def serve(until_quiet: float) -> None:
        """Answer as a server would; collMod is refused as for a readWrite user."""
        while True:
            try:
                request = server.receives(timeout=until_quiet)
            except AssertionError:  # nothing more came
                return
            name = next(iter(request.doc))
            if name == "createIndexes":
                seen.append(request.doc["indexes"][0]["name"])
            elif name == "dropIndexes":
                seen.append(f"drop {request.doc['index']}")
            else:
                seen.append(name)
            request.ok(cursor=listed) if name == "listIndexes" else request.ok()

    client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=5000)
    try:
        removed_after = []

        def ensure(db):
            return ensure_audit_indexes(db) + drop_ttl(db, removed_after.append)

        with going(ensure, client["auditdb"]) as names:
            serve(until_quiet=2)
        assert removed_after == [400 * 86400]  # what it removed, anchored before it goes
        assert f"drop {TTL_INDEX}" in seen and "collMod" not in seen
        assert TTL_INDEX not in seen and names()[-1] == TTL_INDEX
        assert "org_stored" in seen
    finally:
        client.close()


# The write path against a scripted server ------------------------------------------------

NOT_PRIMARY = {"code": 10107, "errmsg": "not primary"}


@pytest.fixture
def scripted(tmp_path):
    from .wire import ScriptedServer

    server = ScriptedServer().start()
    apps: list = []

    def build(**overrides):
        app = app_on(server.uri, tmp_path, **overrides)
        apps.append(app)
        return app

    yield server, build
    for app in apps:
        for store in set(stores(app).values()):
            store.close()
    server.stop()


def _spooled_lines(tmp_path) -> int:
    return sum(len(path.read_text().splitlines()) for path in (tmp_path / "spool").glob("*.ndjson"))


def test_a_record_the_primary_refuses_is_spooled_then_stored_exactly_once(scripted, tmp_path):
    server, build = scripted
    app = build()
    server.fail("insert", "audit_logs", **NOT_PRIMARY)  # (a standalone: no driver retry)
    answer = app.test_client().get("/api/v1/no-such-thing")
    assert answer.status_code == 404  # the response is not turned into an error
    attempts = server.sent("insert", "audit_logs")
    assert len(attempts) == 1 and _spooled_lines(tmp_path) == 1
    record_id = attempts[0]["documents"][0]["_id"]

    result = app.test_cli_runner().invoke(args=["replay-spool", "--json"])
    assert result.exit_code == 0, result.output
    replayed = server.sent("insert", "audit_logs")[1:]
    assert [doc["documents"][0]["_id"] for doc in replayed] == [record_id]
    assert replayed[0]["writeConcern"] == {"w": "majority", "j": True}
    assert _spooled_lines(tmp_path) == 0
    again = app.test_cli_runner().invoke(args=["replay-spool", "--json"])
    assert again.exit_code == 0 and len(server.sent("insert", "audit_logs")) == 2


def test_a_duplicate_on_replay_leaves_the_spool_only_once_a_majority_holds_it(scripted, tmp_path):
    """A copy acknowledged with w:1 before a failover can still be rolled back: the spool
    entry is the only other copy, so it goes only after a majority read finds the record."""
    server, build = scripted
    app = build()
    server.fail("insert", "audit_logs", **NOT_PRIMARY)
    app.test_client().get("/api/v1/no-such-thing")
    record_id = server.sent("insert", "audit_logs")[0]["documents"][0]["_id"]
    duplicate = {"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"}]}

    server.answer("insert", "audit_logs", n=0, **duplicate)
    server.documents["audit_logs"] = []  # the majority read does not see it (yet)
    result = app.test_cli_runner().invoke(args=["replay-spool", "--json"])
    assert result.exit_code == 1 and "not yet majority-committed" in result.output
    [read] = server.sent("find", "audit_logs")
    assert read["filter"] == {"_id": record_id, "organizationId": None}  # (unattributed 404)
    assert read["readConcern"] == {"level": "majority"}
    assert _spooled_lines(tmp_path) == 1  # kept

    server.answer("insert", "audit_logs", n=0, **duplicate)
    server.documents["audit_logs"] = [{"_id": record_id}]  # replicated now
    result = app.test_cli_runner().invoke(args=["replay-spool", "--json"])
    assert result.exit_code == 0, result.output
    assert '"duplicates": 1' in result.output
    assert _spooled_lines(tmp_path) == 0


def test_migrate_store_reads_and_writes_a_mongodb_target_by_id_only(make_app):
    """Against MongoDB, the copy asks the target by _id (its index) in batches, inserts
    unordered, and never counts a collection: the same commands at a billion records."""
    from .factories import make_org
    from .wire import ScriptedServer

    target = ScriptedServer().start()
    try:
        app = make_app()
        make_org(app, "Moving")
        app.test_client().get("/api/v1/no-such-thing")  # an audit record to copy
        result = app.test_cli_runner().invoke(
            args=["migrate-store", "--to", target.uri + "/auditdb", "--no-verify", "--json"]
        )
        assert result.exit_code == 0, result.output
        # (the target's ensure-indexes step also reads its upgrade markers, and the
        # memberships still without their email when that marker is missing)
        finds = [
            d
            for d in target.sent("find")
            if d["find"] not in ("audit_leases", "app_upgrades")
            and d["filter"] != {"emailLower": {"$exists": False}}
        ]
        lookups = [d for d in finds if set(d["filter"]) == {"_id"}]
        assert lookups and all(list(d["filter"]["_id"]) == ["$in"] for d in lookups)
        assert all(len(d["filter"]["_id"]["$in"]) <= 1000 for d in lookups)
        others = [d for d in finds if d not in lookups]
        assert all(d["filter"] == {} and d.get("projection") == {"_id": 1} for d in others)
        inserts = target.sent("insert")
        assert inserts and all(d["ordered"] is False for d in inserts)
        assert target.sent("aggregate") == [] and target.sent("count") == []
        assert {d["insert"] for d in inserts} >= {"organizations", "accounts", "audit_logs"}
    finally:
        target.stop()
