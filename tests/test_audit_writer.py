"""The write path: a failing or unreachable audit store loses nothing and breaks nothing."""

import errno
import json
import logging
import os
import threading
import time

import pytest
from bson import ObjectId

from audit_app.audit.capture.hooks import WRITER_KEY
from audit_app.audit.capture.spool import Spool, dumps
from audit_app.ids import utcnow

from .factories import Api
from .fakes import FlakyClient


@pytest.fixture
def flaky(mongo):
    return FlakyClient(mongo)


@pytest.fixture
def flaky_app(make_app, flaky):
    # no background sealing: its inserts (digests, the integrity state) into the same
    # client, at a moment of its own, are not the writer's that these tests count
    return make_app(AUDIT_MONGO_CLIENT=flaky, AUDIT_SEAL_IN_BACKGROUND=False)


def spooled_lines(app):
    spool = app.extensions[WRITER_KEY].spool
    return sum(len(p.read_text().splitlines()) for p in spool.pending_files())


def test_requests_answer_while_the_audit_store_fails_then_replay_stores_each_once(
    flaky_app, flaky, org, mongo
):
    api = Api(flaky_app.test_client())
    token = api.token(org.admin)  # recorded while the store is up
    flaky.down = True
    answers = [api.get("/api/v1/workspaces", token=token) for _ in range(5)]
    answers.append(api.post("/api/v1/workspaces", token=token, json={"name": "During outage"}))
    assert [a.status_code for a in answers] == [200] * 5 + [201]
    audit = mongo["audit_app"].audit_logs
    assert audit.count_documents({"path": "/api/v1/workspaces"}) == 0
    assert spooled_lines(flaky_app) == 6
    flaky.down = False
    result = flaky_app.test_cli_runner().invoke(args=["replay-spool", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["stored"] == 6
    stored = list(audit.find({"path": "/api/v1/workspaces"}))
    assert len(stored) == 6 == len({r["_id"] for r in stored})
    assert {r["requestId"] for r in stored} == {a.headers["X-Request-Id"] for a in answers}
    created = next(r for r in stored if r["method"] == "POST")
    assert created["createdAt"].tzinfo is not None and isinstance(
        created["organizationId"], ObjectId
    )
    assert created["request"]["body"] == {"name": "During outage"}
    again = json.loads(flaky_app.test_cli_runner().invoke(args=["replay-spool", "--json"]).output)
    assert again["stored"] == 0
    assert audit.count_documents({"path": "/api/v1/workspaces"}) == 6


def test_replay_skips_records_that_were_stored_after_all(flaky_app, flaky, org, mongo):
    writer = flaky_app.extensions[WRITER_KEY]
    record = {"_id": ObjectId(), "organizationId": org.id, "createdAt": utcnow(), "path": "/x"}
    writer.spool.append(record)
    mongo["audit_app"].audit_logs.insert_one(dict(record))  # the "timed out" write did land
    result = writer.replay()
    assert (result.stored, result.duplicates) == (0, 1)
    assert mongo["audit_app"].audit_logs.count_documents({"_id": record["_id"]}) == 1


def test_after_a_failure_the_store_is_skipped_for_a_while(flaky_app, flaky, org):
    api = Api(flaky_app.test_client())
    token = api.token(org.admin)
    flaky.down = True
    attempts = flaky.insert_attempts
    for _ in range(4):
        assert api.get("/api/v1/organization", token=token).status_code == 200
    assert flaky.insert_attempts == attempts + 1  # one failed try, then straight to the spool


def test_unreachable_audit_mongo_uri(make_app, org, mongo, tmp_path):
    app = make_app(AUDIT_MONGO_URI="mongodb://127.0.0.1:9/audit", AUDIT_WRITE_TIMEOUT_MS=300)
    api = Api(app.test_client())
    token = api.token(org.owner)
    answers = [api.get("/api/v1/organization", token=token) for _ in range(3)]
    assert all(a.status_code == 200 for a in answers)
    assert spooled_lines(app) == 4
    assert app.test_client().get("/readyz").get_json()["checks"]["auditStore"] == "unreachable"
    # the store is back (a store on the same spool directory): every record exactly once
    recovered = make_app(AUDIT_MONGO_URI="mongomock://localhost/audit_app")
    result = recovered.extensions[WRITER_KEY].replay()
    assert result.stored == 4
    from audit_app.db import get_audit_db

    with recovered.app_context():
        ids = [
            r["requestId"] for r in get_audit_db().audit_logs.find({"path": "/api/v1/organization"})
        ]
    assert sorted(ids) == sorted(a.headers["X-Request-Id"] for a in answers)


def test_unwritable_spool_logs_the_record_and_fails_readiness(
    make_app, flaky, org, tmp_path, caplog
):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the spool directory should be")
    app = make_app(AUDIT_MONGO_CLIENT=flaky, AUDIT_SPOOL_DIR=str(blocked / "spool"))
    api = Api(app.test_client())
    token = api.token(org.admin)
    flaky.down = True
    caplog.set_level(logging.CRITICAL, logger="audit_app.audit")
    answer = api.get("/api/v1/organization", token=token)
    assert answer.status_code == 200
    lines = [r.getMessage() for r in caplog.records if "AUDIT_RECORD_UNSPOOLED" in r.getMessage()]
    assert len(lines) == 1 and answer.headers["X-Request-Id"] in lines[0]
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    assert "spool" in ready.get_json()["reason"]


def test_background_replayer_stores_spooled_records_by_itself(make_app, flaky, org, mongo):
    app = make_app(AUDIT_MONGO_CLIENT=flaky, AUDIT_REPLAY_INTERVAL=1)
    writer = app.extensions[WRITER_KEY]
    flaky.down = True
    app.test_client().get("/api/v1/organization")  # starts the replayer and spools the record
    assert spooled_lines(app) == 1
    flaky.down = False
    writer._skip_store_until = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not mongo["audit_app"].audit_logs.count_documents({}):
        time.sleep(0.1)
    assert mongo["audit_app"].audit_logs.count_documents({"path": "/api/v1/organization"}) == 1
    writer._replayer_pid = None  # stop the thread


def test_spool_survives_concurrent_appends_while_replaying(tmp_path):
    spool = Spool(tmp_path / "spool")
    stored, lock = {}, threading.Lock()

    def insert(record):
        with lock:
            if record["_id"] in stored:
                from pymongo.errors import DuplicateKeyError

                raise DuplicateKeyError("dup")
            stored[record["_id"]] = record

    ids = [[ObjectId() for _ in range(150)] for _ in range(4)]

    def writer(batch):
        for oid in batch:
            spool.append({"_id": oid, "createdAt": utcnow(), "n": 1})

    threads = [threading.Thread(target=writer, args=(batch,)) for batch in ids]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        spool.replay(insert)
    spool.replay(insert)
    assert set(stored) == {oid for batch in ids for oid in batch}
    assert spool.pending_files() == []


def test_torn_lines_are_set_aside_not_lost_nor_fatal(tmp_path):
    spool = Spool(tmp_path)
    good = {"_id": ObjectId(), "createdAt": utcnow()}
    spool.append(good)
    with open(spool.active_path, "a") as handle:
        handle.write(dumps({"_id": ObjectId()})[:15])  # a crash mid-line
    stored = []
    result = spool.replay(stored.append)
    assert [r["_id"] for r in stored] == [good["_id"]]
    assert result.rejected == 1
    assert len(list(tmp_path.glob("rejected-*.ndjson"))) == 1


def test_spool_preserves_bson_types(tmp_path):
    spool = Spool(tmp_path)
    record = {
        "_id": ObjectId(),
        "createdAt": utcnow(),
        "big": 2**40,
        "nan": float("nan"),
        "nested": {"%24where": "x"},
    }
    spool.append(record)
    replayed = []
    spool.replay(replayed.append)
    back = replayed[0]
    assert back["_id"] == record["_id"] and back["createdAt"] == record["createdAt"]
    assert (
        back["createdAt"].tzinfo is not None and back["big"] == 2**40 and back["nan"] != back["nan"]
    )
    assert back["nested"] == {"%24where": "x"}


def test_spool_file_is_private(tmp_path):
    spool = Spool(tmp_path / "s")
    spool.append({"_id": ObjectId()})
    assert os.stat(spool.active_path).st_mode & 0o077 == 0


class _FailingDisk:
    """os.write for the spool: short writes, then a full disk (ENOSPC) or an I/O error."""

    def __init__(self, real, mode):
        self.real, self.mode, self.calls = real, mode, 0

    def __call__(self, fd, data):
        self.calls += 1
        if self.mode == "short" or self.calls % 2:
            return self.real(fd, bytes(data[: max(1, len(data) // 3)]))  # a short write
        raise OSError(errno.ENOSPC if self.mode == "enospc" else errno.EIO, self.mode)


@pytest.mark.parametrize("mode", ["short", "enospc", "eio"])
def test_every_answered_request_is_recoverable_by_its_request_id_whatever_the_disk_does(
    flaky_app, flaky, org, caplog, monkeypatch, mode
):
    """The store down and the spool's disk failing: each record is spooled whole or logged."""
    from audit_app.audit.capture import spool as spool_module

    api = Api(flaky_app.test_client())
    token = api.token(org.admin)
    flaky.down = True
    caplog.set_level(logging.CRITICAL, logger="audit_app.audit")
    monkeypatch.setattr(spool_module.os, "write", _FailingDisk(os.write, mode))
    ids = [
        api.get(f"/api/v1/{path}", token=token).headers["X-Request-Id"]
        for path in ("organization", "nowhere", "members", "workspaces")
    ]
    monkeypatch.undo()
    logged = " ".join(r.getMessage() for r in caplog.records)
    spool = flaky_app.extensions[WRITER_KEY].spool
    lines = [line for p in spool.pending_files() for line in p.read_text().splitlines()]
    spooled = {json.loads(line)["requestId"] for line in lines}  # every line whole
    for request_id in ids:
        assert request_id in spooled or f"AUDIT_RECORD_UNSPOOLED requestId={request_id}" in logged
    if mode == "short":
        assert spooled == set(ids)  # short writes are completed, not lost
    flaky.down = False
    result = flaky_app.extensions[WRITER_KEY].replay()
    assert result.rejected == 0
