"""Review #23: the integrity state never forgets tampering, and times no request can explain.

Tried as someone with write access to the database (the SQLite table of the embedded
store, or the collections on mongomock) but not to the anchor's folder, and judged by the
effect: what ``flask verify``, ``GET /api/v1/audit-logs/integrity``, the pages and the
stored state say afterwards.

(3) A failure found by any verification stays until a full verification passes or an
    operator acknowledges it (``flask acknowledge-integrity``); a check of the newest
    windows never replaces it, nor does a full pass that began before it was found, nor a
    stored state rolled back in the database (the failure is anchored outside it).
(7) A record whose ``createdAt`` no request can explain (after its ``storedAt``, or older
    than storing, or spooling, can account for) is sealed, flagged and named.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bson
import pytest
from bson import ObjectId

from audit_app.audit.capture.hooks import WRITER_KEY
from audit_app.audit.integrity import sealing
from audit_app.audit.integrity.digests import VerifyReport, WindowReport, time_suspicion
from audit_app.audit.store import embedded
from audit_app.db import Store, get_audit_db, get_db

from .factories import Api, audit_record, make_org
from .test_web_session import login

MINUTE = timedelta(minutes=1)
# one-minute windows: 40 of them are 40 minutes of records, sealed in a test's time
SETTINGS = {"AUDIT_SEAL_INTERVAL": 1, "AUDIT_SEAL_IN_BACKGROUND": False}
REASON = "Restored record from the 2026-11-02 backup; incident INC-4711 closed."


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Installation:
    """An app on one store, an organization with 40 one-minute windows of records, and
    the attacker's hands on that store."""

    kind: str
    app: object
    org: object
    api: Api
    table: Path | None
    records: list

    # The attacker: direct writes, past the app ---------------------------------------

    def _sql(self, statement: str, *parameters) -> None:
        assert self.table is not None
        database = sqlite3.connect(str(self.table))
        database.execute(statement, parameters)
        database.commit()
        database.close()

    def insert(self, record: dict) -> None:
        if self.table is not None:
            self._sql(embedded._INSERT, *embedded._row(record))
        else:
            with self.app.app_context():
                get_audit_db().audit_logs.insert_one(dict(record))

    def delete(self, record_id) -> None:
        if self.table is not None:
            self._sql("DELETE FROM audit_logs WHERE id = ?", embedded._key(record_id))
        else:
            with self.app.app_context():
                get_audit_db().audit_logs.delete_one({"_id": record_id})

    def read(self, record_id) -> dict:
        if self.table is not None:
            database = sqlite3.connect(str(self.table))
            (blob,) = database.execute(
                "SELECT doc FROM audit_logs WHERE id = ?", (embedded._key(record_id),)
            ).fetchone()
            database.close()
            return bson.decode(blob, codec_options=embedded.CODEC)
        with self.app.app_context():
            return get_audit_db().audit_logs.find_one({"_id": record_id})

    def edit(self, record_id, **changes) -> None:
        """Change a record's values in place, its indexed columns kept consistent."""
        record = {**self.read(record_id), **changes}
        self.delete(record_id)
        self.insert(record)

    # What the product says ------------------------------------------------------------

    def run(self, *args) -> tuple[int, dict]:
        result = self.app.test_cli_runner().invoke(args=[*args, "--json"])
        assert result.exit_code in (0, 1, 2), result.output
        errors = result.stderr.strip().splitlines()
        for text in (result.stdout, errors[-1] if errors else ""):
            try:
                return result.exit_code, json.loads(text)
            except ValueError:
                continue
        return result.exit_code, {"text": result.output}

    def verify(self) -> tuple[int, dict]:
        return self.run("verify", "--organization", str(self.org.id))

    def state(self) -> dict:
        answer = self.api.get("/api/v1/audit-logs/integrity", as_=self.org.admin)
        assert answer.status_code == 200
        return answer.get_json()

    def page(self, path: str = "/organization/audit-logs/integrity") -> str:
        client = self.app.test_client()
        login(client, self.org.owner)
        answer = client.get(path)
        assert answer.status_code == 200, path
        return answer.get_data(as_text=True)

    def background(self) -> None:
        """The background task as it runs between full passes (one is done today)."""
        with self.app.app_context():
            get_audit_db().audit_leases.replace_one(
                {"_id": "full-verification"},
                {"_id": "full-verification", "at": datetime.now(UTC)},
                upsert=True,
            )
        delay = self.app.config["AUDIT_SEAL_DELAY"]
        self.app.config["AUDIT_SEAL_DELAY"] = 0  # seal every window closed by now
        try:
            sealing.seal_and_verify(self.app, "background-task")
        finally:
            self.app.config["AUDIT_SEAL_DELAY"] = delay

    def stored_state(self) -> dict | None:
        with self.app.app_context():
            return get_audit_db()[sealing.STATES].find_one({"_id": self.org.id})

    def anchor_dir(self) -> Path:
        return Path(self.app.config["AUDIT_ANCHOR_DIR"])


def _install(kind: str, make_app, tmp_path, windows: int = 40) -> Installation:
    table = None
    if kind == "embedded":
        store = tmp_path / "store"
        app = make_app(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(store), **SETTINGS)
        table = store / "audit_app.audit_logs.sqlite3"
    else:
        app = make_app(**SETTINGS)
    org = make_org(app, "Tampered")
    now = _now()
    start = now - windows * MINUTE
    records = []
    for index in range(windows - 6):  # one record a minute, the newest six minutes empty
        moment = start + index * MINUTE + timedelta(seconds=20)
        records.append(
            audit_record(
                org.id,
                _id=ObjectId.from_datetime(moment),
                created_at=moment,
                storedAt=moment,
                path=f"/api/v1/pathways/{index}",
            )
        )
    with app.app_context():
        get_audit_db().audit_logs.insert_many([dict(r) for r in records])
        get_db().organizations.update_one({"_id": org.id}, {"$set": {"createdAt": start}})
    installation = Installation(kind, app, org, Api(app.test_client()), table, records)
    code, sealed = installation.run("seal")
    assert code == 0 and sealed["total"] >= windows - 3, sealed
    return installation


@pytest.fixture(params=["embedded", "mongomock"])
def site(request, make_app, tmp_path) -> Installation:
    return _install(request.param, make_app, tmp_path)


def _kinds(state: dict) -> set[str]:
    found = {p["type"] for p in state.get("problems") or []}
    return found | {p["type"] for w in state.get("failedWindows") or [] for p in w["problems"]}


def _record_ids(state: dict) -> set[str]:
    return {
        p["recordId"]
        for w in state.get("failedWindows") or []
        for p in w["problems"]
        if p.get("recordId")
    }


# (3) The integrity state forgets tampering ----------------------------------------------


def _tamper(site: Installation, how: str) -> str:
    """One edit to the oldest window, well outside the newest 24; the record concerned."""
    oldest = site.records[0]
    if how == "modified":
        site.edit(oldest["_id"], statusCode=201)
        return str(oldest["_id"])
    if how == "deleted":
        site.delete(oldest["_id"])
        return str(oldest["_id"])
    forged = dict(oldest, _id=ObjectId(), path="/api/v1/forged")
    site.insert(forged)
    return str(forged["_id"])


def _undo(site: Installation, how: str, record_id: str) -> None:
    oldest = site.records[0]
    if how == "modified":
        site.edit(oldest["_id"], statusCode=oldest["statusCode"])
    elif how == "deleted":
        site.insert(oldest)
    else:
        site.delete(ObjectId(record_id))


@pytest.mark.parametrize("how", ["modified", "deleted", "inserted"])
def test_a_failure_stays_until_a_full_verification_passes(site, how):
    code, report = site.verify()
    assert code == 0 and report["ok"] and report["windows"] >= 30, report
    assert site.state()["state"] == "verified"

    record_id = _tamper(site, how)
    code, report = site.verify()
    assert code == 1 and not report["ok"]
    state = site.state()
    assert state["state"] == "failed" and record_id in _record_ids(state)

    # the background task between full passes: seals, checks the newest windows only
    site.background()
    state = site.state()
    assert state["state"] == "failed", "a check of the newest windows replaced the failure"
    assert record_id in _record_ids(state) and how in _kinds(state)
    # by hand: `flask seal --now` seals the open window and checks the newest windows
    assert site.run("seal", "--now")[0] == 0
    state = site.state()
    assert state["state"] == "failed" and state["scope"] == "recent"
    assert record_id in _record_ids(state)
    assert "Integrity warning" in site.page("/organization/audit-logs")
    page = site.page()
    assert '<span class="tag state-failing" id="integrity-state">failed</span>' in page
    assert record_id in page
    assert site.verify()[0] == 1  # and verify agrees with the page

    _undo(site, how, record_id)  # (the record restored from a backup)
    site.run("seal", "--now")
    assert site.state()["state"] == "failed", "only a full verification clears it"
    code, report = site.verify()
    assert code == 0, report
    assert site.state()["state"] == "verified"


def test_a_full_pass_that_began_before_a_failure_was_found_does_not_clear_it(app, org):
    """Two verifiers at once: the background's full pass reads the oldest window before
    it is edited; the `seal` command's check finds the edit and stores the failure; the
    full pass ends, clean, after that. Its result is older than the failure: it stays."""
    with app.app_context():
        began = datetime.now(UTC) - MINUTE
        window = WindowReport(7, began - 10 * MINUTE, began - 9 * MINUTE)
        window.fail("modified", "Record x was modified after sealing.", "6543210fedcba98765432100")
        sealing.store_state(org.id, VerifyReport(windows=[window], started_at=began), "recent")
        clean = VerifyReport(
            windows=[WindowReport(7, began - 10 * MINUTE, began - 9 * MINUTE)], started_at=began
        )
        assert sealing.store_state(org.id, clean, "full")["state"] == "failed"
        assert sealing.integrity_state(org.id)["state"] == "failed"
        later = VerifyReport(
            windows=[WindowReport(7, began - 10 * MINUTE, began - 9 * MINUTE)],
            started_at=datetime.now(UTC) + timedelta(seconds=1),
        )
        assert sealing.store_state(org.id, later, "full")["state"] == "verified"


def test_a_clean_check_racing_a_failure_never_replaces_it_without_a_lock(app, org, monkeypatch):
    """On MongoDB nothing is locked: the write is conditional on the state read. A clean
    check of the newest windows reads the state, then another process stores a failure,
    then the clean check writes: its write must not land on the failure."""
    monkeypatch.setattr(Store, "exclusive", lambda self, name: nullcontext())
    with app.app_context():  # a clean state stored before
        first = VerifyReport(
            windows=[WindowReport(4, datetime(2026, 11, 2), datetime(2026, 11, 3))]
        )
        assert sealing.store_state(org.id, first, "recent")["state"] == "verified"
    original = sealing._combine
    raced = []

    def combine_while_another_writes(*args, **kwargs):
        if not raced:
            raced.append(True)
            window = WindowReport(3, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2))
            window.fail("deleted", "Record y was deleted.", "6543210fedcba98765432101")
            sealing.store_state(org.id, VerifyReport(windows=[window]), "full")
        return original(*args, **kwargs)

    monkeypatch.setattr(sealing, "_combine", combine_while_another_writes)
    with app.app_context():
        clean = VerifyReport(
            windows=[WindowReport(4, datetime(2026, 11, 2), datetime(2026, 11, 3))]
        )
        sealing.store_state(org.id, clean, "recent")
        state = sealing.integrity_state(org.id)
    assert raced and state["state"] == "failed"
    assert "6543210fedcba98765432101" in _record_ids(state)  # the failure itself, not only
    assert "failureErased" not in _kinds(state)  # the anchor's word that it was overwritten


def test_two_checks_finding_failures_at_once_read_as_those_failures_only(app, org, monkeypatch):
    """On MongoDB, with nothing locked: one check has its failure ready to write when
    another stores its own failure. The state shows both failures, and not a failure
    'erased' from the database (the anchor never runs ahead of the database)."""
    monkeypatch.setattr(Store, "exclusive", lambda self, name: nullcontext())
    with app.app_context():
        first = VerifyReport(
            windows=[WindowReport(4, datetime(2026, 11, 2), datetime(2026, 11, 3))]
        )
        sealing.store_state(org.id, first, "recent")
    original = sealing._write_if_unchanged
    raced = []

    def write_after_another(*args, **kwargs):
        if not raced:
            raced.append(True)
            window = WindowReport(3, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2))
            window.fail("deleted", "Record y was deleted.", "6543210fedcba98765432101")
            sealing.store_state(org.id, VerifyReport(windows=[window]), "recent")
        return original(*args, **kwargs)

    monkeypatch.setattr(sealing, "_write_if_unchanged", write_after_another)
    with app.app_context():
        window = WindowReport(4, datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3))
        window.fail("modified", "Record z was modified.", "6543210fedcba98765432102")
        sealing.store_state(org.id, VerifyReport(windows=[window]), "recent")
        state = sealing.integrity_state(org.id)
    assert raced and state["state"] == "failed" and "failureErased" not in _kinds(state)
    assert _record_ids(state) == {"6543210fedcba98765432101", "6543210fedcba98765432102"}


def test_a_failure_cannot_be_erased_in_the_database(site):
    """The attacker keeps a signed 'verified' state from before the edit and puts it back
    after `verify` found it; or edits the state; or deletes it. The failure is anchored
    outside the database: every one of these still reads as failed, and checks of the
    newest windows do not clear it."""
    site.background()
    clean = site.stored_state()
    assert clean["state"] == "verified"
    record_id = _tamper(site, "modified")
    assert site.verify()[0] == 1
    anchored = (site.anchor_dir() / f"{site.org.id}.integrity.ndjson").read_text()
    assert '"failed"' in anchored

    with site.app.app_context():  # the signed clean state, put back
        get_audit_db()[sealing.STATES].replace_one({"_id": site.org.id}, clean)
    state = site.state()
    assert state["state"] == "failed" and "failureErased" in _kinds(state)
    assert site.run("seal", "--now")[0] == 0
    assert site.state()["state"] == "failed", "a check of the newest windows cleared it"

    with site.app.app_context():  # edited to read verified
        get_audit_db()[sealing.STATES].update_one(
            {"_id": site.org.id}, {"$set": {"state": "verified", "failedWindows": []}}
        )
    assert site.state()["state"] == "failed"
    site.background()
    assert site.state()["state"] == "failed", "a check of the newest windows cleared it"

    with site.app.app_context():
        get_audit_db()[sealing.STATES].delete_one({"_id": site.org.id})
    assert site.state()["state"] == "failed"
    assert "Integrity warning" in site.page("/organization/audit-logs")

    site.edit(ObjectId(record_id), statusCode=site.records[0]["statusCode"])
    assert site.verify()[0] == 0  # a full verification that passes clears it
    assert site.state()["state"] == "verified"


def test_an_operator_acknowledges_a_failure_with_a_reason_recorded(site):
    record_id = _tamper(site, "deleted")
    assert site.verify()[0] == 1

    for bad in (["--reason", "too short"], ["--reason", "x" * 501], []):
        code, answer = site.run("acknowledge-integrity", "--organization", str(site.org.id), *bad)
        assert code == 2 and answer["error"]["code"] == "usage_error", answer
    assert site.state()["state"] == "failed"

    code, answer = site.run(
        "acknowledge-integrity", "--organization", str(site.org.id), "--reason", REASON
    )
    assert code == 0, answer
    assert answer["state"] == "acknowledged" and answer["acknowledged"] >= 1
    state = site.state()
    assert state["state"] == "acknowledged" and record_id in _record_ids(state)
    assert all(p.get("acknowledged") for w in state["failedWindows"] for p in w["problems"])
    assert state["acknowledgements"][-1]["reason"] == REASON
    assert REASON in site.page()
    assert "Integrity warning" not in site.page("/organization/audit-logs")
    # recorded in the organization's own log, with the reason
    with site.app.app_context():
        noted = get_audit_db().audit_logs.find_one(
            {"organizationId": site.org.id, "action": "auditLog.acknowledgeIntegrity"}
        )
    assert noted["authType"] == "cli" and noted["request"]["params"]["reason"] == REASON
    # and outside the database
    acks = (site.anchor_dir() / f"{site.org.id}.integrity-acks.ndjson").read_text()
    assert REASON in acks

    # later checks find the same problem: still acknowledged, not failed
    site.background()
    assert site.run("seal", "--now")[0] == 0
    assert site.state()["state"] == "acknowledged"
    assert site.verify()[0] == 1  # verify still says what it finds...
    assert site.state()["state"] == "acknowledged"  # ...and the state what is known

    # a new edit is a new failure
    site.edit(site.records[1]["_id"], statusCode=500)
    assert site.verify()[0] == 1
    state = site.state()
    assert state["state"] == "failed"
    fresh = [p for w in state["failedWindows"] for p in w["problems"] if not p.get("acknowledged")]
    assert [p["recordId"] for p in fresh] == [str(site.records[1]["_id"])]


def test_there_is_nothing_to_acknowledge_when_nothing_failed(site):
    code, answer = site.run(
        "acknowledge-integrity", "--organization", str(site.org.id), "--reason", REASON
    )
    assert code == 1 and "nothing to acknowledge" in answer["error"]["message"].lower()
    assert site.state()["state"] == "verified"


def test_a_verification_error_of_a_full_pass_is_not_cleared_by_a_recent_check(app, org):
    with app.app_context():
        began = datetime.now(UTC)
        sealing.store_error(org.id, RuntimeError("poisoned window #3"), "full")
        clean = VerifyReport(windows=[WindowReport(9, began - MINUTE, began)], started_at=began)
        assert sealing.store_state(org.id, clean, "recent")["state"] == "failed"
        sealing.store_error(org.id, RuntimeError("store blip"), "recent")
        state = sealing.integrity_state(org.id)
        assert state["state"] == "failed" and "verifyError" in _kinds(state)
        later = VerifyReport(
            windows=[WindowReport(9, began - MINUTE, began)],
            started_at=datetime.now(UTC) + timedelta(seconds=1),
        )
        assert sealing.store_state(org.id, later, "full")["state"] == "verified"


def test_a_full_pass_marked_done_in_the_future_is_due(app):
    with app.app_context():
        get_audit_db().audit_leases.replace_one(
            {"_id": "full-verification"},
            {"_id": "full-verification", "at": datetime(2999, 1, 1, tzinfo=UTC)},
            upsert=True,
        )
    assert sealing._full_pass_due(app)


# (7) Back-dated and future-dated forgeries -----------------------------------------------


@pytest.mark.parametrize(
    "created", [timedelta(days=-30), timedelta(days=3 * 365)], ids=["backdated", "future"]
)
def test_a_forged_copy_with_an_impossible_time_is_sealed_flagged_and_named(site, created):
    with site.app.app_context():  # the open window starts where the last seal ended
        last = get_audit_db().audit_digests.find_one(
            {"organizationId": site.org.id}, sort=[("sequence", -1)]
        )
    opened = last["windowEnd"].replace(tzinfo=UTC) if last else _now() - timedelta(hours=1)
    stored = max(_now() - timedelta(seconds=8), opened + timedelta(milliseconds=1))
    while _now() - stored < timedelta(seconds=6):  # `seal --now` seals up to 5 s ago
        time.sleep(0.2)
    now = _now()
    original = site.records[-1]
    forged = dict(original, _id=ObjectId(), createdAt=now + created, storedAt=stored)
    site.insert(forged)  # into the open window, not yet sealed
    assert site.run("seal", "--now")[0] == 0
    with site.app.app_context():  # sealed all the same: it cannot be changed silently later
        sealed = {
            entry[0]
            for chunk in get_audit_db().audit_digest_chunks.find({"organizationId": site.org.id})
            for entry in chunk["records"]
        }
        digest = get_audit_db().audit_digests.find_one(
            {"organizationId": site.org.id}, sort=[("sequence", -1)]
        )
    assert str(forged["_id"]) in sealed and digest["suspiciousTimes"] >= 1

    code, report = site.verify()
    assert code == 1 and not report["ok"]
    named = {(p["type"], p.get("recordId")) for w in report["failedWindows"] for p in w["problems"]}
    assert ("suspiciousTime", str(forged["_id"])) in named
    state = site.state()
    assert state["state"] == "failed" and str(forged["_id"]) in _record_ids(state)
    assert "suspiciousTime" in _kinds(state)

    listing = site.page("/organization/audit-logs?limit=100")
    row = next(r for r in listing.split("<tr") if f"/organization/audit-logs/{forged['_id']}" in r)
    assert "suspicious time" in row.lower()
    assert sum("suspicious time" in r.lower() for r in listing.split("<tr")) == 1
    details = site.page(f"/organization/audit-logs/{forged['_id']}")
    assert "suspicious time" in details.lower()


def test_a_record_replayed_from_the_spool_after_a_long_outage_is_not_suspicious(
    make_app, tmp_path, monkeypatch
):
    from audit_app.audit.capture import spool as spool_module

    from .fakes import FlakyClient

    site = _install("mongomock", make_app, tmp_path)
    flaky = FlakyClient(site.app.config["MONGO_CLIENT"])
    app = make_app(AUDIT_MONGO_CLIENT=flaky, **SETTINGS)
    writer = app.extensions[WRITER_KEY]
    outage = _now() - timedelta(hours=3)
    record = audit_record(site.org.id, created_at=outage, path="/api/v1/during-the-outage")
    flaky.down = True
    monkeypatch.setattr(spool_module, "utcnow", lambda: outage + timedelta(seconds=2))
    with app.app_context():
        assert writer.write(record) == "spooled"
    monkeypatch.undo()
    flaky.down = False
    assert writer.replay().stored == 1
    with app.app_context():
        replayed = get_audit_db().audit_logs.find_one({"_id": record["_id"]})
    assert replayed["spooledAt"] == outage + timedelta(seconds=2)
    assert datetime.now(UTC) - replayed["storedAt"] < MINUTE
    assert time_suspicion(replayed) is None
    details = site.page(f"/organization/audit-logs/{record['_id']}")
    assert "waited in the spool from" in details and "suspicious time" not in details.lower()
    assert site.run("seal", "--now")[0] == 0
    code, report = site.verify()
    assert code == 0, report
    listing = site.page("/organization/audit-logs?limit=100")
    assert "suspicious time" not in listing.lower()


def test_what_a_forger_may_claim_of_spooling_is_bounded():
    now = _now()
    base = {"createdAt": now - timedelta(hours=3), "storedAt": now}
    assert time_suspicion(base)  # three hours between receiving and storing: unexplained
    spooled = dict(base, spooledAt=now - timedelta(hours=3) + timedelta(seconds=1))
    assert time_suspicion(spooled) is None  # an outage of three hours
    assert time_suspicion(dict(spooled, spooledAt=now + timedelta(hours=1)))  # after storing
    assert time_suspicion(dict(spooled, createdAt=now - timedelta(hours=2)))  # after spooling
    assert time_suspicion(dict(spooled, spooledAt=now - timedelta(minutes=90)))  # too late
    assert time_suspicion(dict(spooled, spooledAt="2026-11-01T00:00:00Z"))  # not a date
    assert time_suspicion(dict(base, createdAt="yesterday"))
    assert time_suspicion({"createdAt": now, "storedAt": now - timedelta(minutes=3)})
    assert time_suspicion({"createdAt": now - timedelta(seconds=90), "storedAt": now}) is None


def test_a_long_export_ends_late_without_being_suspicious():
    """The second record of an export is written when the stream ends: its createdAt is
    when the request came in, its durationMs how long the stream took (up to a day)."""
    now = _now()
    ended = {
        "action": "auditLog.exportEnded",
        "createdAt": now - timedelta(minutes=40),
        "storedAt": now,
        "durationMs": 40 * 60 * 1000.0,
    }
    assert time_suspicion(ended) is None
    assert time_suspicion(dict(ended, durationMs=60_000.0))
    assert time_suspicion(dict(ended, action="pathway.update"))
    assert time_suspicion(dict(ended, createdAt=now - timedelta(days=3), durationMs=3 * 86400e3))
    assert time_suspicion(dict(ended, durationMs=float("nan")))


def test_the_demo_s_dated_traffic_is_not_suspicious_and_verifies(app, runner):
    import time

    made = json.loads(runner.invoke(args=["seed-demo", "--requests", "30", "--json"]).output)
    organization = made["organizationId"]
    time.sleep(6)  # seal --now leaves the last five seconds open
    assert runner.invoke(args=["seal", "--now", "--organization", organization]).exit_code == 0
    result = runner.invoke(args=["verify", "--organization", organization])
    assert result.exit_code == 0, result.output
    # the exemption is anchored outside the database, and only covers what was seeded
    anchored = Path(app.config["AUDIT_ANCHOR_DIR"]) / f"{organization}.backdated.json"
    assert anchored.exists()
    with app.app_context():
        sample = get_audit_db().audit_logs.find_one({"organizationId": ObjectId(organization)})
        forged = dict(
            sample,
            _id=ObjectId(),
            createdAt=datetime.now(UTC) - timedelta(days=20),
            storedAt=datetime.now(UTC) - timedelta(seconds=1),
        )
        get_audit_db().audit_logs.insert_one(forged)
    time.sleep(6)
    assert runner.invoke(args=["seal", "--now", "--organization", organization]).exit_code == 0
    result = runner.invoke(args=["verify", "--organization", organization])
    assert result.exit_code == 1 and str(forged["_id"]) in result.output
