"""The two write modes on MongoDB, at the wire (the real pymongo driver against mockupdb):
``sync`` (the default there) inserts each request's record before the response, with a
majority; ``journal`` sends nothing while answering and one ``insert`` a batch."""

from __future__ import annotations

import pytest

from audit_app.audit.capture.hooks import WRITER_KEY
from audit_app.db import stores

from .wire import ScriptedServer, app_on


@pytest.fixture
def scripted(tmp_path):
    server = ScriptedServer().start()
    apps: list = []

    def build(**overrides):
        app = app_on(server.uri, tmp_path, AUDIT_JOURNAL_DIR=str(tmp_path / "journal"), **overrides)
        apps.append(app)
        return app

    yield server, build
    for app in apps:
        for store in set(stores(app).values()):
            store.close()
    server.stop()


def test_sync_is_mongodb_s_default_one_majority_insert_per_request(scripted):
    server, build = scripted
    app = build()
    assert app.extensions[WRITER_KEY].mode == "sync"
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/v1/no-such-thing").status_code == 404
    inserts = server.sent("insert", "audit_logs")
    assert [len(i["documents"]) for i in inserts] == [1, 1, 1]
    assert all(i["writeConcern"] == {"w": "majority", "j": True} for i in inserts)


def test_journal_mode_sends_nothing_while_answering_and_one_insert_a_batch(scripted):
    server, build = scripted
    app = build(AUDIT_WRITE_MODE="journal")
    writer = app.extensions[WRITER_KEY]
    assert writer.mode == "journal"
    client = app.test_client()
    for _ in range(5):
        assert client.get("/api/v1/no-such-thing").status_code == 404
    assert server.sent("insert", "audit_logs") == []  # the requests sent nothing
    result = writer.fold()
    assert (result.stored, result.errors) == (5, [])
    [insert] = server.sent("insert", "audit_logs")
    assert len(insert["documents"]) == 5
    assert insert["ordered"] is False  # a duplicate stops nothing
    assert insert["writeConcern"] == {"w": "majority", "j": True}
    assert {d["path"] for d in insert["documents"]} == {"/api/v1/no-such-thing"}
    assert all("storedAt" in d for d in insert["documents"])


def test_journal_mode_a_refused_batch_goes_to_the_spool(scripted, tmp_path):
    server, build = scripted
    app = build(AUDIT_WRITE_MODE="journal")
    writer = app.extensions[WRITER_KEY]
    for _ in range(3):
        app.test_client().get("/api/v1/no-such-thing")
    server.fail("insert", "audit_logs", code=10107, errmsg="not primary")
    result = writer.fold()
    assert (result.stored, result.spooled) == (0, 3)
    spooled = sum(len(p.read_text().splitlines()) for p in (tmp_path / "spool").glob("*.ndjson"))
    assert spooled == 3 and not writer.journal.pending()
    replayed = app.test_cli_runner().invoke(args=["replay-spool", "--json"])
    assert replayed.exit_code == 0, replayed.output
    assert '"stored": 3' in replayed.output


def test_journal_mode_a_duplicate_in_a_batch_waits_for_a_majority_to_hold_it(scripted):
    """A fold that died after its insert was acknowledged by the primary alone: folded
    again, the duplicate is believed only once a majority read finds it."""
    server, build = scripted
    app = build(AUDIT_WRITE_MODE="journal")
    writer = app.extensions[WRITER_KEY]
    app.test_client().get("/api/v1/no-such-thing")
    duplicate = {"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"}]}
    server.answer("insert", "audit_logs", n=0, **duplicate)
    server.documents["audit_logs"] = []  # the majority read does not see it
    result = writer.fold()
    assert result.stored == 0 and result.spooled == 1  # kept, in the spool now
    [read] = server.sent("find", "audit_logs")
    assert read["readConcern"] == {"level": "majority"}
