"""The real pymongo driver against mockupdb (MongoDB's wire-protocol test server) on
127.0.0.1: the commands the app sends, exactly as a MongoDB server receives them."""

from __future__ import annotations

import pytest
from mockupdb import MockupDB, OpMsg, going

from audit_app import create_app
from audit_app.db import stores

from .conftest import TEST_SECRET


@pytest.fixture
def server():
    mock = MockupDB(auto_ismaster={"maxWireVersion": 21, "minWireVersion": 0})
    mock.run()
    yield mock
    mock.stop()


@pytest.fixture
def wired(server, tmp_path):
    def build(**overrides):
        config = {
            "TESTING": True,
            "SECRET_KEY": TEST_SECRET,
            "MONGO_URI": server.uri + "/auditdb",
            "AUDIT_ENSURE_INDEXES_ON_START": False,
            "AUDIT_SEAL_IN_BACKGROUND": False,
            "AUDIT_REPLAY_INTERVAL": 0,
            "AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "RATELIMIT_STORAGE_URI": "memory://",
            **overrides,
        }
        app = create_app(config)
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
