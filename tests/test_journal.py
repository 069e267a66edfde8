"""The journal write mode: the request hands its record to a local file and answers; a
background writer folds the file into the store in batches (audit/capture/journal.py, writer.py)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from bson import ObjectId

from audit_app import create_app
from audit_app.audit.capture import journal as journal_module
from audit_app.audit.capture import writer as writer_module
from audit_app.audit.capture.hooks import WRITER_KEY
from audit_app.audit.capture.journal import MAGIC, encode
from audit_app.audit.capture.writer import write_mode
from audit_app.audit.store.embedded import AuditLogCollection, AuditTable
from audit_app.config import ConfigError, load_settings
from audit_app.db import get_audit_db

from .conftest import TEST_SECRET
from .factories import Api, audit_record, make_org, settled


class Commits:
    """Every write the audit table takes (one transaction, or one statement that commits
    on its own), by thread: the request's thread must take none."""

    def __init__(self, monkeypatch):
        self.by_thread: dict[int, int] = {}
        self.batches: list[int] = []
        real_write, real_many = AuditTable.write, AuditLogCollection.insert_many
        real_one = AuditLogCollection.insert_one

        def write(table):
            self._count()
            return real_write(table)

        def insert_one(collection, document, *args, **kwargs):
            self._count()
            return real_one(collection, document, *args, **kwargs)

        def insert_many(collection, documents, *args, **kwargs):
            documents = list(documents)
            self.batches.append(len(documents))
            return real_many(collection, documents, *args, **kwargs)

        monkeypatch.setattr(AuditTable, "write", write)
        monkeypatch.setattr(AuditLogCollection, "insert_one", insert_one)
        monkeypatch.setattr(AuditLogCollection, "insert_many", insert_many)

    def _count(self):
        ident = threading.get_ident()
        self.by_thread[ident] = self.by_thread.get(ident, 0) + 1


def _stored(app, **filter_) -> list[dict]:
    with app.app_context():
        return list(get_audit_db().audit_logs.find(filter_))


def test_the_embedded_store_journals_by_default_and_mongodb_writes_at_once():
    assert write_mode(None, "embedded") == "journal"
    assert write_mode(None, "mongodb") == "sync"
    assert write_mode(None, "injected") == "sync"
    assert write_mode("sync", "embedded") == "sync"
    assert write_mode("journal", "mongodb") == "journal"
    with pytest.raises(ValueError, match="AUDIT_WRITE_MODE must be sync or journal"):
        write_mode("later", "embedded")


def test_an_unknown_write_mode_is_refused_at_start_naming_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIT_WRITE_MODE", "eventually")
    with pytest.raises(ConfigError, match="AUDIT_WRITE_MODE must be sync or journal"):
        load_settings(tmp_path)
    monkeypatch.setenv("AUDIT_WRITE_MODE", "Journal")
    assert load_settings(tmp_path)["AUDIT_WRITE_MODE"] == "journal"


def test_the_request_thread_commits_nothing_and_the_fold_stores_one_batch(embedded, monkeypatch):
    app = embedded()
    org = make_org(app, "Acme")
    api = Api(app.test_client())
    api.token(org.admin)
    settled(app)  # what setting up wrote
    writer = app.extensions[WRITER_KEY]
    assert writer.mode == "journal"
    commits = Commits(monkeypatch)
    appended = writer.journal.appended
    for _ in range(5):
        assert api.get("/api/v1/organization", as_=org.admin).status_code == 200
    # five answers, five hand-offs, and not one write of the store on the request's thread
    assert writer.journal.appended - appended == 5
    assert commits.by_thread == {} and commits.batches == []
    assert _stored(app, path="/api/v1/organization") == []
    result = writer.fold()
    # the token requests of the five (JWTs are cached per person) and the five reads: one
    # insert_many, one transaction
    assert result.stored >= 5 and result.errors == []
    assert commits.batches == [result.stored]
    assert sum(commits.by_thread.values()) == 1
    stored = _stored(app, path="/api/v1/organization")
    assert len(stored) == 5
    assert all(r["storedAt"] >= r["createdAt"] for r in stored)


def test_a_reader_sees_every_request_answered_before_its_own(embedded):
    app = embedded()
    org = make_org(app, "Acme")
    api = Api(app.test_client())
    created = api.post("/api/v1/workspaces", as_=org.admin, json={"name": "Fresh"})
    assert created.status_code == 201
    # no fold ran (no background runner in tests until a request starts it: the page
    # itself folds what waits before it reads)
    page = api.get("/api/v1/audit-logs?q=path:/api/v1/workspaces", as_=org.admin).get_json()
    assert [r["method"] for r in page["items"]][:1] == ["POST"]
    one = api.get(f"/api/v1/audit-logs/{page['items'][0]['id']}", as_=org.admin)
    assert one.status_code == 200
    exported = api.get("/api/v1/audit-logs/export?format=ndjson", as_=org.admin)
    lines = [json.loads(line) for line in exported.get_data(as_text=True).splitlines()]
    assert any(line.get("path") == "/api/v1/workspaces" for line in lines)


def test_the_background_writer_folds_within_its_interval(embedded):
    app = embedded(AUDIT_FOLD_INTERVAL_MS=50)
    org = make_org(app, "Acme")
    api = Api(app.test_client())
    api.get("/api/v1/organization", as_=org.admin)  # starts the runner, and is journaled
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _stored(app, path="/api/v1/organization"):
        time.sleep(0.05)
    assert len(_stored(app, path="/api/v1/organization")) == 1
    app.extensions["audit_app.background"].stop()


def test_a_fold_that_stops_half_way_stores_each_record_once_when_run_again(embedded, monkeypatch):
    app = embedded()
    writer = app.extensions[WRITER_KEY]
    organization_id = ObjectId()
    records = [audit_record(organization_id, requestId=f"half-{n}") for n in range(7)]
    for record in records:
        record.pop("storedAt", None)
        writer.write(record)
    monkeypatch.setattr(journal_module, "BATCH", 3)
    real = writer_module.insert_records
    calls = {"n": 0}

    def crash_on_the_second_batch(db, batch, concern=None):
        calls["n"] += 1
        if calls["n"] == 2:
            real(db, batch[:1], concern)  # part of it committed, then the process "died"
            raise KeyboardInterrupt("killed")
        return real(db, batch, concern)

    monkeypatch.setattr(writer_module, "insert_records", crash_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        writer.fold()
    assert len(_stored(app, organizationId=organization_id)) == 4  # a batch and a part
    monkeypatch.setattr(writer_module, "insert_records", real)
    before = dict(writer.tally._pending)
    result = writer.fold()
    assert (result.stored, result.duplicates, result.errors) == (3, 4, [])
    stored = _stored(app, organizationId=organization_id)
    assert sorted(r["requestId"] for r in stored) == sorted(r["requestId"] for r in records)
    # counted once each: the duplicates are not counted again
    assert sum(writer.tally._pending.values()) - sum(before.values()) == 3
    assert not writer.journal.pending()


def test_a_fold_that_dies_before_removing_its_file_duplicates_nothing(embedded, monkeypatch):
    app = embedded()
    writer = app.extensions[WRITER_KEY]
    organization_id = ObjectId()
    for n in range(4):
        record = audit_record(organization_id, requestId=f"unlink-{n}")
        record.pop("storedAt", None)
        writer.write(record)

    def dies(path):
        raise KeyboardInterrupt("killed before the file went")

    monkeypatch.setattr(journal_module.os, "unlink", dies)
    with pytest.raises(KeyboardInterrupt):
        writer.fold()
    monkeypatch.undo()
    result = writer.fold()
    assert (result.stored, result.duplicates) == (0, 4)
    assert len(_stored(app, organizationId=organization_id)) == 4


def test_a_torn_entry_is_set_aside_and_the_entries_after_it_are_stored(embedded, tmp_path):
    app = embedded()
    writer = app.extensions[WRITER_KEY]
    organization_id = ObjectId()
    good = [audit_record(organization_id, requestId=f"torn-{n}") for n in range(3)]
    for record in good:
        record.pop("storedAt", None)
    journal = writer.journal
    journal.append(good[0])
    torn = encode(audit_record(organization_id, requestId="torn-cut"), journal.key)
    with open(journal.active_path, "ab") as handle:
        handle.write(torn[: len(torn) // 2])  # a write the machine's crash cut short
        handle.write(b"garbage\x00\x01")
    journal.append(good[1])
    journal.append(good[2])
    result = writer.fold()
    assert (result.stored, result.rejected) == (3, 1)
    stored = {r["requestId"] for r in _stored(app, organizationId=organization_id)}
    assert stored == {"torn-0", "torn-1", "torn-2"}
    [rejected] = list(writer.journal.directory.glob("rejected-*.bin"))
    assert rejected.read_bytes().startswith(MAGIC) and b"garbage" in rejected.read_bytes()


def test_a_batch_the_store_refuses_goes_to_the_spool_and_from_there_to_the_store(
    embedded, monkeypatch
):
    app = embedded()
    writer = app.extensions[WRITER_KEY]
    organization_id = ObjectId()
    for n in range(3):
        record = audit_record(organization_id, requestId=f"down-{n}")
        record.pop("storedAt", None)
        writer.write(record)

    def down(*args, **kwargs):
        raise OSError("the store's disk went away")

    monkeypatch.setattr(writer_module, "insert_records", down)
    result = writer.fold()
    assert (result.stored, result.spooled, result.errors) == (0, 3, [])
    assert not writer.journal.pending() and writer.spool.pending_files()
    assert _stored(app, organizationId=organization_id) == []
    monkeypatch.undo()
    assert writer.replay().stored == 3
    stored = _stored(app, organizationId=organization_id)
    assert len(stored) == 3 and all("spooledAt" in r for r in stored)


def test_a_record_left_in_the_journal_for_long_verifies_through_the_replay_ledger(
    embedded, monkeypatch
):
    """A worker killed before its fold, and nothing served for an hour: its records are
    stored an hour after they were received. Stored as they are, verification would name
    them (stored long after received, nothing explains it); through the spool, the replay
    ledger confirms the wait."""
    app = embedded(AUDIT_SEAL_DELAY=0)
    org = make_org(app, "Acme")
    api = Api(app.test_client())
    api.get("/api/v1/organization", as_=org.admin)
    settled(app)
    writer = app.extensions[WRITER_KEY]
    hour_ago = writer_module.utcnow() - timedelta(hours=1)
    record = audit_record(org.id, requestId="left-behind", createdAt=hour_ago)
    record.pop("storedAt", None)
    with open(writer.journal.active_path, "ab") as handle:
        handle.write(
            encode(record, writer.journal.key, handed_off=hour_ago + timedelta(milliseconds=3))
        )
    result = writer.fold()
    assert result.spooled == 1 and result.stored == 0
    [stored] = _stored(app, requestId="left-behind")  # replayed at once, through the ledger
    assert stored["spooledAt"] == hour_ago + timedelta(milliseconds=3)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["seal", "--now"]).exit_code == 0
    verified = runner.invoke(args=["verify", "--organization", str(org.id)])
    assert verified.exit_code == 0, verified.output
    assert "suspicious" not in verified.output.lower()


def test_a_journal_that_cannot_be_written_stores_the_record_at_once(embedded, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the journal's directory should be")
    app = embedded(AUDIT_JOURNAL_DIR=str(blocked))
    org = make_org(app, "Acme")
    api = Api(app.test_client())
    assert api.get("/api/v1/organization", as_=org.admin).status_code == 200
    writer = app.extensions[WRITER_KEY]
    assert writer.last_journal_error is not None and writer.stats["stored"] >= 1
    assert len(_stored(app, path="/api/v1/organization")) == 1
    checks = app.test_client().get("/readyz").get_json()["checks"]
    assert checks["auditWriteMode"] == "journal" and checks["auditJournal"] == "unwritable"


def test_an_operator_command_is_stored_before_the_command_ends(embedded):
    app = embedded()
    org = make_org(app, "Acme")
    result = app.test_cli_runner().invoke(
        args=["create-api-key", "--organization", str(org.id), "--name", "ops", "--role", "Admin"]
    )
    assert result.exit_code == 0, result.output
    assert not app.extensions[WRITER_KEY].journal.pending()
    assert len(_stored(app, authType="cli", action="apiKey.create")) == 1


def test_fold_journal_command_says_what_it_stored(embedded):
    app = embedded()
    org = make_org(app, "Acme")
    Api(app.test_client()).get("/api/v1/organization", as_=org.admin)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["fold-journal", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["mode"] == "journal" and report["stored"] >= 1 and report["errors"] == []
    again = json.loads(runner.invoke(args=["fold-journal", "--json"]).output)
    assert again["stored"] == 0 and again["files"] == 0
    synced = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": TEST_SECRET,
            "MONGO_URI": "mongomock://localhost/x",
            "INSTANCE_PATH": str(app.config["INSTANCE_PATH"]),
            "PASSWORD_HASH_PROFILE": "fast",
        }
    )
    said = synced.test_cli_runner().invoke(args=["fold-journal"])
    assert said.exit_code == 0 and "sync" in said.output


@pytest.mark.slow
def test_a_sigkill_of_every_process_between_hand_off_and_fold_loses_and_duplicates_nothing(
    tmp_path,
):
    """gunicorn with two workers whose folds never come (an interval of ten minutes): every
    answered request's record is only in the journal when the whole server is SIGKILLed.
    The next process to fold stores each of them, once."""
    import http.client

    from bench.load import (
        _stored_request_ids,
        _wait_ready,
        environment,
        flask,
        free_port,
        gunicorn,
        setup,
        worker_pids,
    )

    env = environment(str(tmp_path))
    env.update(AUDIT_FOLD_INTERVAL_MS="600000", AUDIT_SEAL_IN_BACKGROUND="false")
    organization_id, key, workspace = setup(env)
    port = free_port()
    server = gunicorn({**env, "GUNICORN_THREADS": "4"}, port, 2)
    answered: list[str] = []
    try:
        _wait_ready(port)
        # both workers up, each past the fold its background runner makes at start (which
        # would store what the other one journaled)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(worker_pids(server.pid)) < 2:
            time.sleep(0.1)
        time.sleep(3)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for number in range(40):
            headers = {"X-API-Key": key, "X-Request-Id": f"load-kill-{number}"}
            if number % 4 == 0:
                headers.update({"X-Workspace-Id": workspace, "Content-Type": "application/json"})
                body = json.dumps({"name": f"p{number}", "steps": [{"title": "s"}]})
                connection.request("POST", "/api/v1/pathways", body=body, headers=headers)
            else:
                connection.request("GET", "/api/v1/workspaces", headers=headers)
            answer = connection.getresponse()
            answer.read()
            assert answer.status < 500
            answered.append(answer.getheader("X-Request-Id"))
        connection.close()
    finally:
        for pid in worker_pids(server.pid):
            os.kill(pid, signal.SIGKILL)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=60)
    assert len(answered) == 40
    # nothing was folded before the kill (no reader, no interval, no graceful exit)
    before = [r for r in _stored_request_ids(env, organization_id) if "kill" in r]
    assert before == []
    report = json.loads(flask(env, "fold-journal", "--json"))
    assert report["errors"] == [] and report["stored"] >= 40
    stored = [r for r in _stored_request_ids(env, organization_id) if "kill" in r]
    assert sorted(stored) == sorted(answered)  # every one, once
    assert json.loads(flask(env, "fold-journal", "--json"))["stored"] == 0


def test_appends_from_many_threads_racing_folds_are_each_stored_once(embedded):
    """Eight threads hand records off while another folds again and again (claiming the
    file under their feet): every record lands once, none is lost in a claimed file."""
    app = embedded()
    writer = app.extensions[WRITER_KEY]
    organization_id = ObjectId()
    stop = threading.Event()

    def hand_off(index: int) -> None:
        for number in range(150):
            record = audit_record(organization_id, requestId=f"race-{index}-{number}")
            record.pop("storedAt", None)
            assert writer.write(record) == "journaled"

    def fold_again_and_again() -> None:
        with app.app_context():
            while not stop.is_set():
                writer.fold()

    folder = threading.Thread(target=fold_again_and_again)
    folder.start()
    threads = [threading.Thread(target=hand_off, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    folder.join()
    writer.fold(wait=True)
    stored = [r["requestId"] for r in _stored(app, organizationId=organization_id)]
    assert len(stored) == 8 * 150 == len(set(stored))


def test_a_busy_process_leaves_the_fold_to_an_idle_one_for_a_bounded_time(embedded):
    app = embedded()
    app.extensions["audit_app.background"].tasks.pop("fold")  # the test folds by hand
    writer = app.extensions[WRITER_KEY]
    record = audit_record(ObjectId(), requestId="deferred")
    record.pop("storedAt", None)
    writer.write(record)
    entered = threading.Event()
    leave = threading.Event()

    @app.get("/slow-for-the-test")
    def slow():
        entered.set()
        leave.wait(10)
        return "ok"

    serving = threading.Thread(target=lambda: app.test_client().get("/slow-for-the-test"))
    serving.start()
    assert entered.wait(10)
    try:
        deferred = [writer.fold_in_background().stored for _ in range(writer_module.FOLD_DEFERRALS)]
        assert deferred == [0] * writer_module.FOLD_DEFERRALS  # busy: left to another process
        assert writer.fold_in_background().stored == 1  # but not longer than that
    finally:
        leave.set()
        serving.join()
    assert writer._in_flight == 0  # the request's end was counted, whatever it answered


def test_two_stores_given_one_journal_directory_never_fold_into_each_other(make_app, tmp_path):
    shared = str(tmp_path / "one-journal-dir")
    apps = [
        make_app(
            MONGO_CLIENT=None,
            MONGO_URI=None,
            EMBEDDED_STORE_DIR=str(tmp_path / name),
            AUDIT_JOURNAL_DIR=shared,
        )
        for name in ("store-a", "store-b")
    ]
    writers = [app.extensions[WRITER_KEY] for app in apps]
    assert writers[0].journal.directory != writers[1].journal.directory
    organization_id = ObjectId()
    for index, writer in enumerate(writers):
        record = audit_record(organization_id, requestId=f"store-{index}")
        record.pop("storedAt", None)
        writer.write(record)
    writers[1].fold()  # folds only its own store's journal
    assert [r["requestId"] for r in _stored(apps[1], organizationId=organization_id)] == ["store-1"]
    assert _stored(apps[0], organizationId=organization_id) == []
    writers[0].fold()
    assert [r["requestId"] for r in _stored(apps[0], organizationId=organization_id)] == ["store-0"]


def test_ascii_folds_as_it_lowers_so_its_shortcut_changes_no_search():
    """The fold's shortcut for ASCII text (what a path nearly always is) gives what the
    character-by-character fold gives (Kelvin's K and the long s fold onto ASCII letters,
    never from them)."""
    from audit_app.audit.store.embedded import _fold_char, fold

    every = "".join(chr(code) for code in range(128))
    assert fold(every) == "".join(_fold_char(char) for char in every)
    assert fold("/API/V1/Pathways/K\u212a\u017fS") == "/api/v1/pathways/kkss"


def test_a_journal_the_fold_does_not_keep_up_with_is_bounded_in_bytes(embedded):
    """Clients feed the journal; if nothing folds it (the fold thread stalled, the store
    too slow), requests store their own records past AUDIT_JOURNAL_MAX_BYTES instead of
    growing the file without end: nothing lost, the file no larger than the bound."""
    app = embedded(AUDIT_JOURNAL_MAX_BYTES=1024 * 1024)
    app.extensions["audit_app.background"].tasks.pop("fold")  # nothing folds on its own
    writer = app.extensions[WRITER_KEY]
    organization_id = ObjectId()
    body = {"body": "x" * 60_000}
    where = []
    for n in range(40):  # ~2.4 MB of records against a 1 MiB journal
        record = audit_record(organization_id, requestId=f"bound-{n}", request=body)
        record.pop("storedAt", None)
        where.append(writer.write(record))
    assert writer.journal.active_path.stat().st_size <= 1024 * 1024
    assert "journaled" in where and "stored" in where
    writer.fold(wait=True)
    stored = {r["requestId"] for r in _stored(app, organizationId=organization_id)}
    assert stored == {f"bound-{n}" for n in range(40)}  # each one, once
