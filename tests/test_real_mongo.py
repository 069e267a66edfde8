"""The same checks against a real MongoDB server, when one is given in TEST_MONGO_URI.

mongomock and the embedded store cannot prove that index definitions, collMod, the
client-side timeout, BSON dates and the query plans behave on a real server. No mongod can
be installed on the CI machines, so these run wherever TEST_MONGO_URI points at one, e.g.
``TEST_MONGO_URI=mongodb://localhost:27017/audit_test make test`` next to
``docker compose up mongo``. Each test uses a database of its own and drops it.
"""

import os
import uuid

import pytest
from bson import ObjectId
from pymongo import monitoring

from audit_app.audit.capture.hooks import WRITER_KEY
from audit_app.db import get_audit_db

from .factories import Api, make_org

URI = os.environ.get("TEST_MONGO_URI")
pytestmark = pytest.mark.skipif(
    not URI, reason="needs a MongoDB server: set TEST_MONGO_URI (no mongod on the CI machines)"
)


@pytest.fixture
def real_app(make_app):
    base = URI.rsplit("/", 1)[0] if URI.count("/") > 2 else URI
    name = f"audit_test_{uuid.uuid4().hex[:8]}"
    app = make_app(MONGO_CLIENT=None, MONGO_URI=f"{base}/{name}")
    yield app
    from audit_app.db import stores

    stores(app)["main"].client.drop_database(name)


def test_indexes_exist_with_their_definitions(real_app):
    # on MongoDB the app only checks its indexes: the deploy step builds them
    built = real_app.test_cli_runner().invoke(args=["ensure-indexes"])
    assert built.exit_code == 0, built.output
    with real_app.app_context():
        info = get_audit_db().audit_logs.index_information()
    assert not [name for name, index in info.items() if "expireAfterSeconds" in index]
    assert info["org_newest"]["key"][:3] == [("organizationId", 1), ("createdAt", -1), ("_id", -1)]
    assert info["org_target_newest"]["key"] == [
        ("organizationId", 1),
        ("targets.id", 1),
        ("createdAt", -1),
        ("_id", -1),
    ]


def test_a_ttl_index_of_an_earlier_version_is_dropped(real_app):
    from audit_app.audit.store.repository import TTL_INDEX, drop_ttl

    with real_app.app_context():
        db = get_audit_db()
        db.audit_logs.create_index([("createdAt", 1)], name=TTL_INDEX, expireAfterSeconds=86400)
        removed_after = []
        assert drop_ttl(db, removed_after.append) == [TTL_INDEX] and removed_after == [86400]
        assert TTL_INDEX not in db.audit_logs.index_information()


def test_the_purge_batch_is_a_covered_walk_of_org_stored(big, real_app):
    """The retention purge's read: one organization's oldest records, ids only, stopped by
    the limit; the delete then names exactly those ids."""
    from datetime import UTC, datetime

    from audit_app.audit.store.repository import stored_before

    with real_app.app_context():
        db = get_audit_db()
        command = {
            "find": "audit_logs",
            "filter": {
                "organizationId": big.id,
                "storedAt": {"$lt": datetime(2030, 1, 1, tzinfo=UTC)},
            },
            "projection": {"_id": 1, "storedAt": 1},
            "sort": {"storedAt": 1, "_id": 1},
            "hint": "org_stored",
            "limit": 50,
        }
        assert len(stored_before(db, big.id, datetime(2030, 1, 1, tzinfo=UTC), 50)) == 50
    stats = _explain(real_app, command)
    stages = list(_stages(stats["executionStages"]))
    assert "SORT" not in {s["stage"] for s in stages}
    assert {s["indexName"] for s in stages if s["stage"] == "IXSCAN"} == {"org_stored"}
    assert stats["totalDocsExamined"] == 0  # covered: the index holds every field it needs
    assert stats["totalKeysExamined"] <= 51


def test_a_request_is_recorded_with_real_bson_types(real_app):
    org = make_org(real_app, "Real")
    api = Api(real_app.test_client())
    api.get("/api/v1/organization", as_=org.owner)
    with real_app.app_context():
        record = get_audit_db().audit_logs.find_one({"path": "/api/v1/organization"})
    assert isinstance(record["_id"], ObjectId) and isinstance(record["organizationId"], ObjectId)
    assert record["createdAt"].tzinfo is not None


def test_odd_keys_and_deep_bodies_are_accepted_by_the_server(real_app):
    org = make_org(real_app, "Odd")
    api = Api(real_app.test_client())
    deep = current = {}
    for _ in range(150):
        current["n"] = {}
        current = current["n"]
    api.post("/api/v1/workspaces", as_=org.admin, json={"$where": 1, "a.b": deep})
    writer = real_app.extensions[WRITER_KEY]
    assert writer.stats["spooled"] == 0 and writer.stats["stored"] >= 2


# Query plans on 200k records -------------------------------------------------------------
# Every find the app sends for a shape is captured (a pymongo command listener) and asked
# back to the server as ``explain`` with executionStats: the plan must walk the hinted
# index in order (no blocking SORT) and stop after limit + 1 documents.

RECORDS = 200_000
RARE_ACCOUNT, RARE_KEY, RARE_WORKSPACE = ObjectId(), ObjectId(), ObjectId()
# what the records acted on: every record names COMMON_TARGET, the rare ones RARE_TARGET
# too, twice (as a member and as a workspace): one to three targets, two distinct ids
COMMON_TARGET, RARE_TARGET = ObjectId(), ObjectId()


class _Finds(monitoring.CommandListener):
    """Records each ``find`` on audit_logs as sent (a pymongo command listener)."""

    def __init__(self):
        self.commands: list[dict] = []

    def started(self, event):
        if event.command_name == "find" and event.command.get("find") == "audit_logs":
            self.commands.append(dict(event.command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture(scope="module")
def finds():
    listener = _Finds()
    monitoring.register(listener)  # clients created from here on report to it
    return listener


@pytest.fixture
def big(real_app, finds):
    """One organization holding RECORDS records, a few of them rare in each filter; the
    audit indexes built as the deploy step builds them (the app only checks them)."""
    from datetime import UTC, datetime, timedelta

    from audit_app.audit.store.repository import ensure_audit_indexes

    from .factories import audit_record

    org = make_org(real_app, "Big")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    methods = ["GET"] * 8 + ["POST", "PATCH"]
    with real_app.app_context():
        collection = get_audit_db().audit_logs
        batch = []
        for i in range(RECORDS):
            rare = i % 20_000 == 7
            targets = [{"type": "pathway", "id": COMMON_TARGET, "name": "p"}]
            if rare:
                targets += [
                    {"type": "member", "id": RARE_TARGET, "name": None},
                    {"type": "workspace", "id": RARE_TARGET, "name": None},
                ]
            batch.append(
                audit_record(
                    org.id,
                    created_at=start + timedelta(milliseconds=250 * i),
                    accountId=RARE_ACCOUNT if rare else org.admin.account_id,
                    apiKeyId=RARE_KEY if rare else None,
                    workspaceId=RARE_WORKSPACE if rare else org.workspace["_id"],
                    method="DELETE" if rare else methods[i % 10],
                    statusCode=418 if rare else (404 if i % 50 == 0 else 200),
                    authType="apiKey" if rare else "jwt",
                    resource="members" if rare else "pathways",
                    path=f"/api/v1/{'members' if rare else 'pathways'}/{ObjectId()}",
                    storedAt=start + timedelta(milliseconds=250 * i + 3),
                    targets=targets,
                )
            )
            if len(batch) == 10_000:
                collection.insert_many(batch, ordered=False)
                batch = []
        ensure_audit_indexes(get_audit_db())
    finds.commands.clear()
    return org


def _stages(stage: dict):
    yield stage
    for child in [stage.get("inputStage"), *stage.get("inputStages", [])]:
        if child:
            yield from _stages(child)


def _explain(real_app, command: dict) -> dict:
    keep = ("find", "filter", "sort", "hint", "limit", "projection", "maxTimeMS")
    with real_app.app_context():
        db = get_audit_db()
        return db.command(
            "explain", {k: command[k] for k in keep if k in command}, verbosity="executionStats"
        )["executionStats"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "accountId={account}",
        "apiKeyId={key}",
        "workspaceId={workspace}",
        "method=DELETE",
        "statusCode=418",
        "statusCode=4xx",
        "authType=apiKey",
        "resource=members",
        "from=2026-01-01T01:00:00Z&to=2026-01-01T02:00:00Z",
        "q={account}",
        "q={target}",
        "q=target:{target}",
        "q=target:{common}",  # every record: the sort must come from the index
    ],
)
def test_each_shape_is_an_index_walk_that_stops_after_limit_plus_one(big, real_app, finds, query):
    url = "/api/v1/audit-logs?limit=5&" + query.format(
        account=RARE_ACCOUNT,
        key=RARE_KEY,
        workspace=RARE_WORKSPACE,
        target=RARE_TARGET,
        common=COMMON_TARGET,
    )
    answer = Api(real_app.test_client()).get(url, as_=big.admin)
    assert answer.status_code == 200, answer.get_json()
    assert finds.commands
    for command in finds.commands:
        stats = _explain(real_app, command)
        stages = list(_stages(stats["executionStages"]))
        assert "SORT" not in {s["stage"] for s in stages}, command
        assert {s["indexName"] for s in stages if s["stage"] == "IXSCAN"} == {command["hint"]}
        assert stats["totalDocsExamined"] <= 6, (command, stats["totalDocsExamined"])
        assert stats["totalKeysExamined"] <= 6 + 100, (command, stats["totalKeysExamined"])


def test_a_target_branch_is_an_ixscan_of_the_multikey_index_with_no_sort(big, real_app, finds):
    """Every record names COMMON_TARGET: a sort that did not come from the index would
    read all 200,000. The walk of the multikey index comes out newest first (the sort keys
    follow the equality on ``targets.id``), so the first page, its next page and the
    target branch of a pasted id each stop after limit + 1; a record naming RARE_TARGET
    twice has one key for it, and is listed once."""
    api = Api(real_app.test_client())
    url = f"/api/v1/audit-logs?limit=5&q=target:{COMMON_TARGET}"
    first = api.get(url, as_=big.admin).get_json()
    assert len(first["items"]) == 5 and first["nextCursor"]
    api.get(url + f"&cursor={first['nextCursor']}", as_=big.admin)
    rare = api.get(f"/api/v1/audit-logs?limit=5&q={RARE_TARGET}", as_=big.admin).get_json()
    listed = [item["id"] for item in rare["items"]]
    assert len(listed) == 5 and len(set(listed)) == 5
    walks = [c for c in finds.commands if c["hint"] == "org_target_newest"]
    assert len(walks) == 3
    for command in walks:
        assert next(iter(command["filter"])) == "targets.id" and command["limit"] == 6
        stats = _explain(real_app, command)
        stages = list(_stages(stats["executionStages"]))
        assert "SORT" not in {s["stage"] for s in stages}, command
        [scan] = [s for s in stages if s["stage"] == "IXSCAN"]
        assert scan["indexName"] == "org_target_newest" and scan["isMultiKey"] is True
        assert scan["direction"] == "forward"
        assert stats["totalKeysExamined"] <= 7, (command, stats["totalKeysExamined"])
        assert stats["totalDocsExamined"] <= 6, (command, stats["totalDocsExamined"])


def test_page_fifty_costs_what_page_one_costs(big, real_app, finds):
    api, cursor = Api(real_app.test_client()), None
    for _ in range(50):
        url = "/api/v1/audit-logs?limit=20" + (f"&cursor={cursor}" if cursor else "")
        cursor = api.get(url, as_=big.admin).get_json()["nextCursor"]
    stats = _explain(real_app, finds.commands[-1])
    assert stats["totalKeysExamined"] <= 22 and stats["totalDocsExamined"] <= 21


def test_a_path_search_fetches_only_matching_documents(big, real_app, finds):
    answer = Api(real_app.test_client()).get("/api/v1/audit-logs?q=/members", as_=big.admin)
    assert answer.status_code == 200
    stats = _explain(real_app, finds.commands[-1])
    stages = {s["stage"] for s in _stages(stats["executionStages"])}
    assert "SORT" not in stages  # the regex is tested on index keys, in order
    assert stats["totalDocsExamined"] == stats["nReturned"]


@pytest.mark.parametrize(
    "start,matches",
    [
        ("/api/v1/members/", 10),  # the ten rare records of 200,000
        ("/api/v1/nothing/", 0),
        ("/API/v1/members/", 0),  # exact case: a range cannot be case-insensitive
    ],
)
def test_an_anchored_path_reads_only_the_keys_of_its_range(big, real_app, finds, start, matches):
    """``path:/...`` is a range of ``org_path_newest``: the server reads the keys of the
    paths that start so and sorts those newest first (a SORT of the matches, not of the
    organization), where the unanchored search reads every key of the organization when
    its text matches few records."""
    url = f"/api/v1/audit-logs?limit=5&q=path:{start}"
    answer = Api(real_app.test_client()).get(url, as_=big.admin)
    assert answer.status_code == 200, answer.get_json()
    assert len(answer.get_json()["items"]) == min(matches, 5)
    [command] = [c for c in finds.commands if c.get("hint") == "org_path_newest"]
    stats = _explain(real_app, command)
    [scan] = [s for s in _stages(stats["executionStages"]) if s["stage"] == "IXSCAN"]
    assert scan["indexName"] == "org_path_newest"
    assert any(start in bound for bound in scan["indexBounds"]["path"]), scan["indexBounds"]
    assert stats["totalKeysExamined"] <= matches + 2, stats["totalKeysExamined"]
    assert stats["totalDocsExamined"] <= matches, stats["totalDocsExamined"]


# Fail points (a server started with --setParameter enableTestCommands=1) ----------------


def _fail_point(real_app, **command):
    from pymongo.errors import OperationFailure

    with real_app.app_context():
        admin = get_audit_db().client.admin
        try:
            admin.command({"configureFailPoint": command.pop("name"), **command})
        except OperationFailure as error:  # test commands are off on this server
            pytest.skip(f"fail points need enableTestCommands=1: {error}")


def test_max_time_expired_is_a_503_query_timeout(real_app):
    org = make_org(real_app, "Slow")
    _fail_point(real_app, name="maxTimeAlwaysTimeOut", mode="alwaysOn")
    try:
        answer = Api(real_app.test_client()).get("/api/v1/audit-logs", as_=org.admin)
    finally:
        _fail_point(real_app, name="maxTimeAlwaysTimeOut", mode="off")
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "query_timeout"


def test_an_insert_the_server_holds_too_long_is_spooled_then_stored_once(make_app):
    base = URI.rsplit("/", 1)[0] if URI.count("/") > 2 else URI
    name = f"audit_test_{uuid.uuid4().hex[:8]}"
    app = make_app(MONGO_CLIENT=None, MONGO_URI=f"{base}/{name}", AUDIT_WRITE_TIMEOUT_MS=300)
    org = make_org(app, "Held")
    _fail_point(
        app,
        name="failCommand",
        mode={"times": 1},
        data={
            "failCommands": ["insert"],
            "blockConnection": True,
            "blockTimeMS": 2000,
            "appName": "organization-audit-log",
        },
    )
    answer = Api(app.test_client()).get("/api/v1/organization", as_=org.admin)
    assert answer.status_code == 200
    writer = app.extensions[WRITER_KEY]
    assert writer.stats["spooled"] == 1
    import time

    time.sleep(2.5)  # the held insert may still land: replay must not duplicate it
    assert writer.replay().errors == []
    with app.app_context():
        stored = get_audit_db().audit_logs.count_documents({"path": "/api/v1/organization"})
    assert stored == 1
    from audit_app.db import stores

    stores(app)["main"].client.drop_database(name)


def test_a_read_write_user_builds_the_indexes_and_the_limiter_works(real_app):
    """A user scoped to the app's database (readWrite) can run ensure-indexes (no collMod
    any more); the limiter keeps its counters in that database."""
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure

    from audit_app.audit.store.repository import ensure_audit_indexes

    with real_app.app_context():
        db = get_audit_db()
        user, password = f"rw_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        db.command("createUser", user, pwd=password, roles=["readWrite"])
        scoped = MongoClient(URI, username=user, password=password, authSource=db.name)
        try:
            try:  # a harmless command a readWrite user lacks the right for
                scoped[db.name].command("serverStatus")
                pytest.skip("this server does not enforce access control (--auth)")
            except OperationFailure:
                pass
            assert "org_stored" in ensure_audit_indexes(scoped[db.name])
            scoped[db.name].limiter_probe.insert_one({"ok": 1})  # readWrite suffices
        finally:
            scoped.close()
            db.command("dropUser", user)


def test_the_journal_mode_folds_a_batch_with_a_majority_and_each_record_once(make_app):
    """AUDIT_WRITE_MODE=journal on a real server: the requests insert nothing, the fold
    one unordered batch; a fold run again over the same entries (a crash before the
    journal's file went) meets duplicate keys and stores nothing twice."""
    from audit_app.audit.capture import journal as journal_module

    base = URI.rsplit("/", 1)[0] if URI.count("/") > 2 else URI
    name = f"audit_test_{uuid.uuid4().hex[:8]}"
    app = make_app(MONGO_CLIENT=None, MONGO_URI=f"{base}/{name}", AUDIT_WRITE_MODE="journal")
    try:
        writer = app.extensions[WRITER_KEY]
        org = make_org(app, "Journaled")
        api = Api(app.test_client())
        for _ in range(4):
            api.get("/api/v1/organization", as_=org.admin)
        with app.app_context():
            assert get_audit_db().audit_logs.count_documents({"organizationId": org.id}) == 0
        copy = writer.journal.active_path.read_bytes()
        assert writer.fold().stored >= 4
        writer.journal.active_path.write_bytes(copy)  # the same entries, folded again
        again = writer.fold()
        assert again.stored == 0 and again.duplicates >= 4 and again.errors == []
        with app.app_context():
            stored = get_audit_db().audit_logs.count_documents(
                {"organizationId": org.id, "path": "/api/v1/organization"}
            )
        assert stored == 4
        assert journal_module.BATCH >= 4
    finally:
        from audit_app.db import stores

        stores(app)["main"].client.drop_database(name)


class _ProofCommands(monitoring.CommandListener):
    """Every ``find`` on the verifiable log's collections, as sent (a command listener)."""

    COLLECTIONS = (
        "audit_logs",
        "audit_digests",
        "audit_digest_chunks",
        "audit_log_trees",
        "audit_checkpoints",
        "audit_log_tiles",
    )

    def __init__(self):
        self.commands: list[dict] = []

    def started(self, event):
        if event.command_name == "find" and event.command.get("find") in self.COLLECTIONS:
            self.commands.append(dict(event.command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_a_proofs_reads_walk_their_indexes(make_app, monkeypatch):
    """``GET .../proof`` on a real server: the chunk holding the record is found on
    ``org_digest_last``, the newest checkpoint on ``org_tree_size_unique``, the window's
    digest on ``org_window_unique``, and the tiles by ``_id`` (IDHACK or an IXSCAN of _id_),
    each without a blocking SORT."""
    from datetime import timedelta

    from audit_app import verifier
    from audit_app.audit.capture.hooks import store_journaled
    from audit_app.audit.integrity import sealing
    from audit_app.db import stores

    listener = _ProofCommands()
    monitoring.register(listener)  # the app's client, created below, reports to it
    monkeypatch.setattr(sealing, "UP_TO_NOW_MARGIN", timedelta(0))
    base = URI.rsplit("/", 1)[0] if URI.count("/") > 2 else URI
    name = f"audit_test_{uuid.uuid4().hex[:8]}"
    app = make_app(
        MONGO_CLIENT=None,
        MONGO_URI=f"{base}/{name}",
        AUDIT_SEAL_INTERVAL=1,
        AUDIT_SEAL_DELAY=0,
        AUDIT_LOG_ORIGIN="audit.test",
    )
    try:
        assert app.test_cli_runner().invoke(args=["ensure-indexes"]).exit_code == 0
        org = make_org(app, "Proved")
        api = Api(app.test_client())
        token = api.token(org.owner)
        for _ in range(5):
            assert api.get("/api/v1/workspaces", token=token).status_code == 200
        with app.app_context():
            store_journaled()
        sealing.seal_now(app, only=org.id, up_to_now=True)
        items = api.get(
            "/api/v1/audit-logs", token=token, query_string={"path": "/api/v1/workspaces"}
        ).get_json()["items"]
        listener.commands.clear()
        proof = api.get(f"/api/v1/audit-logs/{items[0]['id']}/proof", token=token).get_json()
        verifier.verify_record_proof(proof, verifier.VerifierKey.parse(proof["publicKey"]))
        sent = {command["find"]: command for command in listener.commands}

        def plan(collection: str) -> list[dict]:
            stats = _explain(app, sent[collection])
            stages = list(_stages(stats["executionStages"]))
            assert not [s for s in stages if s["stage"] == "SORT"], stages
            assert not [s for s in stages if s["stage"] == "COLLSCAN"], stages
            return stages

        def walks(collection: str) -> set[str]:
            return {s["indexName"] for s in plan(collection) if s["stage"] == "IXSCAN"}

        assert walks("audit_digest_chunks") == {"org_digest_last"}
        assert walks("audit_checkpoints") == {"org_tree_size_unique"}
        assert walks("audit_digests") == {"org_window_unique"}
        assert walks("audit_log_trees") == {"org_unique"}
        tiles = plan("audit_log_tiles")
        assert {s["stage"] for s in tiles} & {"IDHACK", "IXSCAN", "EXPRESS_IXSCAN"}
        assert {s["indexName"] for s in tiles if "indexName" in s} <= {"_id_"}
    finally:
        monitoring._LISTENERS.command_listeners.remove(listener)
        stores(app)["main"].client.drop_database(name)
