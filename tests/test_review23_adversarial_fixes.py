"""The fixes of the adversarial review of issue #23 (tests/test_review23_adversarial.py):

5. A record's claim to have waited in the spool (``spooledAt``) is believed only when the
   anchor's replay ledger, outside the database, holds it with the same times.
6. An export's end (``auditLog.exportEnded``) may be late by its stream's length only when
   the export's first record, not itself suspicious, is there with the same request.
7. A stream's health shows no time derived from the records its filters matched to a
   manager without viewAuditLog: only the state, why, and a lag of 0 when caught up.
"""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import mongomock
import pytest
from bson import ObjectId

from audit_app.audit.capture import hooks as capture
from audit_app.audit.capture import writer as writer_module
from audit_app.audit.capture.hooks import WRITER_KEY
from audit_app.audit.integrity import digests as integrity
from audit_app.audit.integrity.anchor import Anchor, replayed_entry
from audit_app.audit.integrity.digests import (
    NOTHING_EXPIRED,
    Expiry,
    SealPolicy,
    Signer,
    TimeEvidence,
    digest_hash,
    seal_organization,
    time_suspicion,
    verify_organization,
)
from audit_app.db import get_audit_db, get_db

from .factories import Api, audit_record, make_org, settled
from .fakes import FlakyClient
from .test_review23_integrity import SETTINGS, _install, _now, _record_ids
from .test_review23_streams import member_with
from .test_streams import create, deliver

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)
NOTHING = (NOTHING_EXPIRED, None)  # no purge bound, no purge progress


def _records(site):
    with site.app.app_context():
        return get_audit_db().audit_logs


# 5. The replay ledger ------------------------------------------------------------------


def _spool_during_an_outage(site, make_app, monkeypatch, *paths, hours=3):
    """Records of requests made ``hours`` ago, spooled then (the store was down); an app
    sharing the site's store, spool and anchor, and its writer."""
    from audit_app.audit.capture import spool as spool_module

    flaky = FlakyClient(site.app.config["MONGO_CLIENT"])
    app = make_app(AUDIT_MONGO_CLIENT=flaky, **SETTINGS)
    writer = app.extensions[WRITER_KEY]
    outage = _now() - timedelta(hours=hours)
    records = [
        audit_record(site.org.id, created_at=outage + timedelta(seconds=i), path=path)
        for i, path in enumerate(paths)
    ]
    flaky.down = True
    monkeypatch.setattr(spool_module, "utcnow", lambda: outage + timedelta(seconds=30))
    with app.app_context():
        assert all(writer.write(dict(record)) == "spooled" for record in records)
    monkeypatch.undo()
    flaky.down = False
    return writer, records


def test_a_replay_writes_the_ledger_before_inserting_and_only_its_records_are_excused(
    make_app, tmp_path, monkeypatch
):
    site = _install("mongomock", make_app, tmp_path)
    writer, (kept, moved) = _spool_during_an_outage(
        site, make_app, monkeypatch, "/api/v1/outage/kept", "/api/v1/outage/moved"
    )
    # the ledger is written before the insert: when the store takes the record, it is there
    inserted = []
    original = writer_module.insert_record

    def insert(db, record, concern):
        anchored = site.anchor_dir() / f"{site.org.id}.replayed"
        lines = [
            json.loads(x) for f in anchored.glob("*.ndjson") for x in f.read_text().splitlines()
        ]
        inserted.append(replayed_entry(record) in lines)
        return original(db, record, concern)

    monkeypatch.setattr(writer_module, "insert_record", insert)
    # replayed ten seconds ago: in what ``seal --now`` seals (up to five seconds ago)
    monkeypatch.setattr(writer_module, "utcnow", lambda: datetime.now(UTC) - 10 * SECOND)
    assert writer.replay().stored == 2
    monkeypatch.undo()
    assert inserted == [True, True]
    # before sealing, someone who writes the database moves one replayed record's request
    # further back, and copies the other one (its claim to the spool, under a new id)
    genuine = site.read(kept["_id"])
    site.edit(moved["_id"], createdAt=genuine["createdAt"] - timedelta(days=20))
    copy = dict(genuine, _id=ObjectId(), path="/api/v1/outage/copied")
    site.insert(copy)
    assert site.run("seal", "--now")[0] == 0
    code, report = site.verify()
    assert code == 1, report
    named = _record_ids(site.state())
    assert {str(moved["_id"]), str(copy["_id"])} <= named
    assert str(kept["_id"]) not in named  # the genuine replay is not suspicious
    why = next(
        p["message"]
        for w in site.state()["failedWindows"]
        for p in w["problems"]
        if p.get("recordId") == str(copy["_id"])
    )
    assert "replay ledger does not confirm" in why


def test_a_replay_whose_ledger_cannot_be_written_waits_in_the_spool(
    make_app, tmp_path, monkeypatch
):
    site = _install("mongomock", make_app, tmp_path)
    writer, (record,) = _spool_during_an_outage(site, make_app, monkeypatch, "/api/v1/wait")

    def refused(self, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Anchor, "anchor_replayed", refused)
    result = writer.replay()
    assert result.stored == 0 and result.errors and writer.spool.pending_files()
    assert _records(site).find_one({"_id": record["_id"]}) is None  # not inserted unconfirmed
    monkeypatch.undo()
    assert writer.replay().stored == 1 and not writer.spool.pending_files()
    assert site.run("seal", "--now")[0] == 0
    code, report = site.verify()
    assert code == 0, report


def _append_replays(directory: str, organization_id: str, start: int, count: int) -> None:
    anchor = Anchor(directory)
    stored = datetime(2026, 11, 2, 10, 15, 30, tzinfo=UTC)
    for index in range(start, start + count):
        anchor.anchor_replayed(
            {
                "_id": ObjectId(f"{index:024x}"),
                "organizationId": ObjectId(organization_id),
                "createdAt": stored - HOUR,
                "spooledAt": stored - HOUR,
                "storedAt": stored + timedelta(milliseconds=index),
            }
        )


def test_records_replayed_by_several_processes_all_reach_the_ledger(tmp_path):
    organization_id = str(ObjectId())
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_append_replays, args=(str(tmp_path), organization_id, n * 100, 100))
        for n in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    minute = datetime(2026, 11, 2, 10, 15, tzinfo=UTC)
    found = Anchor(tmp_path).replayed(ObjectId(organization_id), minute)
    assert len(found) == 400  # no line torn or lost
    # the next minute's file is another one: a window reads only its own minutes
    assert not Anchor(tmp_path).replayed(ObjectId(organization_id), minute + timedelta(minutes=1))


KEY = Signer("test-signing-key-0123456789")
POLICY = SealPolicy(KEY, HOUR, timedelta(minutes=2))


def _one_replayed_record(db, organization_id, anchor: Anchor | None, now):
    """A record of a request three hours ago, spooled then and replayed 30 minutes ago."""
    stored = now - timedelta(minutes=30)
    record = audit_record(organization_id, created_at=now - 3 * HOUR, storedAt=stored)
    record["spooledAt"] = record["createdAt"] + timedelta(seconds=1)
    if anchor is not None:
        anchor.anchor_replayed(record)
    db.audit_logs.insert_one(record)
    return record


def test_without_an_anchor_no_wait_in_the_spool_is_excused(tmp_path):
    db = mongomock.MongoClient(tz_aware=True)["audit"]
    organization_id = ObjectId()
    now = _now().replace(minute=10)
    record = _one_replayed_record(db, organization_id, Anchor(tmp_path), now)
    since = now - 4 * HOUR
    # with the anchor that holds its replay: sealed unflagged, verified
    anchored = replace(POLICY, anchor=Anchor(tmp_path))
    assert seal_organization(db, organization_id, since, now, anchored) == 4
    assert verify_organization(db, organization_id, now, anchored).ok
    # with none: nothing is excused (as nothing is excused by retention without it)
    other = mongomock.MongoClient(tz_aware=True)["audit"]
    other.audit_logs.insert_one(dict(record))
    assert seal_organization(other, organization_id, since, now, POLICY) == 4
    sealed = other[integrity.DIGESTS].find_one({"windowEnd": {"$gt": record["storedAt"]}})
    assert sealed["suspiciousTimes"] == 1 and sealed["timeRules"] == integrity.TIME_RULES
    report = verify_organization(other, organization_id, now, POLICY)
    assert not report.ok
    assert [p["recordId"] for w in report.windows for p in w.problems] == [str(record["_id"])]


def test_windows_sealed_before_the_ledger_are_judged_as_they_were_sealed():
    """A digest without ``timeRules`` was sealed when the record's own claims were taken as
    they are: verify judges its window so, not by a ledger that did not exist then."""
    db = mongomock.MongoClient(tz_aware=True)["audit"]
    organization_id = ObjectId()
    now = _now().replace(minute=10)
    record = _one_replayed_record(db, organization_id, None, now)
    assert seal_organization(db, organization_id, now - 4 * HOUR, now, POLICY) == 4
    assert not verify_organization(db, organization_id, now, POLICY).ok
    digests = db[integrity.DIGESTS]
    for digest in list(digests.find({}).sort("sequence", 1)):
        previous = digests.find_one({"sequence": digest["sequence"] - 1})
        digest.pop("timeRules")
        digest["suspiciousTimes"] = 0
        digest["previousDigestHash"] = previous["digestHash"] if previous else None
        digest["digestHash"] = digest_hash(digest)
        digest["signature"] = KEY.sign(digest["digestHash"])
        digests.replace_one({"_id": digest["_id"]}, digest)
    assert verify_organization(db, organization_id, now, POLICY).ok, record


def test_the_ledger_confirms_a_record_only_with_all_of_its_times(tmp_path):
    anchor = Anchor(tmp_path)
    organization_id = ObjectId()
    now = _now()
    record = audit_record(organization_id, created_at=now - 3 * HOUR, storedAt=now)
    record["spooledAt"] = record["createdAt"] + timedelta(seconds=1)
    anchor.anchor_replayed(record)
    db = mongomock.MongoClient(tz_aware=True)["audit"]
    evidence = TimeEvidence(db, organization_id, anchor, Expiry(*NOTHING, NOTHING_EXPIRED))
    assert time_suspicion(record, None, evidence) is None
    second = timedelta(seconds=1)
    for changed in (
        {"_id": ObjectId()},
        {"createdAt": record["createdAt"] - second},
        {"spooledAt": record["spooledAt"] + second},
        {"storedAt": record["storedAt"] + second},
        {"organizationId": ObjectId()},
    ):
        owner = changed.get("organizationId", organization_id)
        evidence = TimeEvidence(db, owner, anchor, Expiry(*NOTHING, NOTHING_EXPIRED))
        assert time_suspicion({**record, **changed}, None, evidence), changed
    # the record's own claim, without the evidence, is still taken as it is (its shape)
    assert time_suspicion({**record, "_id": ObjectId()}) is None


# 6. An export's end ------------------------------------------------------------------


class _Clock:
    def __init__(self, now):
        self.now = now

    def utcnow(self):
        return self.now

    def perf_counter(self):
        return self.now.timestamp()


@pytest.fixture(params=["mongomock", "embedded"])
def exported(request, make_app, monkeypatch, tmp_path):
    """An export through the API whose stream ran 40 minutes: its first record stored when
    it began, its end stored when it ended, as the app writes them."""
    if request.param == "embedded":
        store = str(tmp_path / "exported")
        app = make_app(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=store, **SETTINGS)
    else:
        app = make_app(**SETTINGS)
    org = make_org(app, "Exporting")
    began = _now() - timedelta(minutes=50)
    earlier = began - timedelta(minutes=5)
    with app.app_context():
        get_db().organizations.update_one({"_id": org.id}, {"$set": {"createdAt": began - HOUR}})
        # more than the first block of the download (64 KB): the stream ends later
        get_audit_db().audit_logs.insert_many(
            [audit_record(org.id, created_at=earlier, storedAt=earlier) for _ in range(300)]
        )
    api = Api(app.test_client())
    token = api.token(org.admin)
    settled(app)  # stored before the clock goes back
    clock = _Clock(began)
    monkeypatch.setattr(capture, "utcnow", clock.utcnow)
    monkeypatch.setattr(capture, "time", clock)
    monkeypatch.setattr(writer_module, "utcnow", clock.utcnow)
    answer = api.get("/api/v1/audit-logs/export?format=ndjson", token=token, buffered=False)
    settled(app)  # each record stored when it is written (the journal write mode: folded)
    clock.now = _now() - timedelta(minutes=10)  # the first record is written: now stream
    b"".join(answer.response)
    answer.close()
    settled(app)
    monkeypatch.undo()
    with app.app_context():
        records = get_audit_db().audit_logs
        first = records.find_one({"action": "auditLog.export"})
        ended = records.find_one({"action": "auditLog.exportEnded"})
    assert first is not None and ended is not None
    assert ended["durationMs"] >= 40 * 60 * 1000
    return app, org, first, ended


def _seal_and_verify(app, org) -> tuple[int, str]:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["seal", "--now"]).exit_code == 0
    result = runner.invoke(args=["verify", "--organization", str(org.id)])
    return result.exit_code, result.output


def test_a_long_export_through_the_api_ends_late_and_verifies(exported):
    app, org, first, ended = exported
    # what the app writes: the same request, method, path and arrival as its first record
    for name in ("requestId", "method", "path", "createdAt"):
        assert ended[name] == first[name], name
    from audit_app.audit.store import embedded

    fallbacks = embedded.FALLBACKS[0]
    code, output = _seal_and_verify(app, org)
    assert code == 0, output
    # the start is found by a walk of the request id's index, never by mongomock's scan
    assert embedded.FALLBACKS[0] == fallbacks


CHANGES = {
    # names the real export's request, for another request
    "method": lambda ended: {"method": "DELETE"},
    "path": lambda ended: {"path": "/api/v1/members/123"},
    "requestId": lambda ended: {"requestId": "another-request"},
    "createdAt": lambda ended: {"createdAt": ended["createdAt"] - timedelta(seconds=1)},
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_an_export_s_end_naming_no_matching_start_is_suspicious(exported, change):
    app, org, _, ended = exported
    now = datetime.now(UTC) - timedelta(seconds=8)
    forged = dict(ended, _id=ObjectId(), storedAt=now, durationMs=3600e3)  # covers the gap
    forged.update(CHANGES[change](ended))
    with app.app_context():
        get_audit_db().audit_logs.insert_one(forged)
    code, output = _seal_and_verify(app, org)
    assert code == 1 and str(forged["_id"]) in output, output
    assert str(ended["_id"]) not in output  # the genuine end is still excused


def test_an_export_s_end_whose_start_is_itself_forged_is_suspicious(exported):
    """Both forged into the open window: the start, dated back, is suspicious itself, so
    it explains nothing."""
    app, org, first, ended = exported
    back = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=20)
    now = datetime.now(UTC) - timedelta(seconds=8)
    request = {"requestId": "forged-request", "createdAt": back}
    start = dict(first, _id=ObjectId(), storedAt=now, **request)
    end = dict(ended, _id=ObjectId(), storedAt=now, durationMs=20 * 3600e3, **request)
    with app.app_context():
        get_audit_db().audit_logs.insert_many([start, end])
    code, output = _seal_and_verify(app, org)
    assert code == 1 and str(start["_id"]) in output and str(end["_id"]) in output, output


def test_an_export_s_end_whose_start_retention_removed_is_excused(tmp_path):
    """A short retention may remove the start (stored when the export began) before the
    end (stored up to a day later): below an anchored purge bound, its absence is retention."""
    db = mongomock.MongoClient(tz_aware=True)["audit"]
    organization_id = ObjectId()
    now = _now()
    ended = audit_record(
        organization_id,
        action="auditLog.exportEnded",
        path="/api/v1/audit-logs/export",
        created_at=now - timedelta(hours=20),
        storedAt=now,
        durationMs=20 * 3600e3,
    )
    before = now - timedelta(hours=19)  # every record stored before it is gone (anchored)
    for purged_before, suspicious in ((NOTHING_EXPIRED, True), (before, False)):
        expiry = Expiry(purged_before, None, NOTHING_EXPIRED)
        evidence = TimeEvidence(db, organization_id, Anchor(tmp_path), expiry)
        assert bool(time_suspicion(ended, None, evidence)) is suspicious


# 7. Streams: health without viewAuditLog ---------------------------------------------


HIDDEN = ("lagSeconds", "failingSince", "lastErrorAt", "nextAttemptAt", "lastDeliveredAt")


@pytest.fixture
def stream_app(make_app):
    return make_app(AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)


def _matched(org, at, stored=None):
    return audit_record(
        org.id,
        created_at=at,
        storedAt=stored or at,
        accountId=org.owner.account_id,
        accountEmail=org.owner.email,
        method="DELETE",
        path=f"/api/v1/members/{ObjectId()}",
    )


def test_no_time_of_a_matched_record_shows_without_view_audit_log(stream_app, db, receiver):
    app = stream_app
    org = make_org(app, "Acme")
    api = Api(app.test_client())
    streamer = member_with(app, org, "streamer@acme.example", ["manageAuditStreams"])
    stream = create(
        api,
        org,
        destination={"type": "webhook", "url": receiver.url},
        filters={"q": f"actor:{org.owner.email} method:DELETE"},
        start=(datetime.now(UTC) - 3 * HOUR).isoformat().replace("+00:00", "Z"),
    )
    path = f"/api/v1/audit-streams/{stream['id']}"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2, minutes=13)
    db.audit_logs.insert_one(_matched(org, at))
    deliver(app)  # caught up: a lag of 0 dates nothing
    seen = api.get(path, as_=streamer).get_json()
    assert seen["state"] == "active" and seen["lagSeconds"] == 0
    # delivered, then paused: the lag would run from the last delivered record's storedAt
    api.patch(path, as_=streamer, json={"paused": True})
    seen = api.get(path, as_=streamer).get_json()
    assert seen["state"] == "paused" and seen["lagSeconds"] is None
    assert api.get(path, as_=org.admin).get_json()["lagSeconds"] is not None
    api.patch(path, as_=org.admin, json={"paused": False})
    # failing: every time of the failure follows from the first matched record not delivered
    receiver.statuses = [503] * 10
    db.audit_logs.insert_one(_matched(org, at + timedelta(minutes=40), datetime.now(UTC)))
    deliver(app)
    seen = api.get(path, as_=streamer).get_json()
    assert seen["state"] == "failing" and seen["lastError"]  # the state, and why
    for name in HIDDEN:
        assert seen["health"][name] is None, name
    assert seen["lagSeconds"] is None
    full = api.get(path, as_=org.admin).get_json()
    for name in ("lagSeconds", "failingSince", "lastErrorAt", "nextAttemptAt"):
        assert full["health"][name] is not None, name
    listed = api.get("/api/v1/audit-streams", as_=streamer).get_json()["items"][0]
    assert listed["health"]["failingSince"] is None and listed["lagSeconds"] is None
    # the page: the state and why, no lag
    from .test_web_session import login

    client = app.test_client()
    login(client, streamer)
    page = client.get("/organization/audit-streams").get_data(as_text=True)
    assert "failing" in page and "needs viewAuditLog" in page and "next try" not in page
