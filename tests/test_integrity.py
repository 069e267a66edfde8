"""Tamper evidence: every change after the fact is detected and named (docs/integrity.md)."""

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import bson
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from audit_app.audit.integrity.digests import (
    SealPolicy,
    Signer,
    seal_organization,
    verify_organization,
)

from .factories import audit_record

KEY = Signer("integrity-test-signing-key-0123456789")
HOUR = timedelta(hours=1)
START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = START + timedelta(hours=6)
POLICY = SealPolicy(KEY, HOUR, timedelta(minutes=2))


def stored(org_id, hour: float, **fields):
    moment = START + timedelta(hours=hour)
    return audit_record(org_id, created_at=moment, storedAt=moment, **fields)


@pytest.fixture
def sealed(db, org):
    """Records in hours 0, 1 and 3 (hour 2 is empty), sealed up to hour 5."""
    records = [stored(org.id, h, path=f"/r/{h}") for h in (0.1, 0.5, 1.2, 3.7)]
    db.audit_logs.insert_many(records)
    written = seal_organization(db, org.id, START, NOW, POLICY)
    assert written == 5
    return records


def verify(db, org, key=KEY, **kw):
    return verify_organization(db, org.id, NOW, replace(POLICY, signer=key), **kw)


def entry_ids(db, digest) -> list[str]:
    """The record ids a digest sealed, from its chunks."""
    chunks = db.audit_digest_chunks.find({"digestId": digest["_id"]}).sort("index", 1)
    return [entry[0] for chunk in chunks for entry in chunk["records"]]


def problems(report):
    return [(w.sequence, p["type"], p.get("recordId")) for w in report.windows for p in w.problems]


def test_clean_chain_verifies_and_empty_windows_are_sealed(db, org, sealed):
    report = verify(db, org)
    assert report.ok and problems(report) == []
    assert [w.status for w in report.windows] == ["verified"] * 5
    assert report.verified_up_to == START + 5 * HOUR
    digests = list(db.audit_digests.find({"organizationId": org.id}).sort("sequence", 1))
    assert [d["count"] for d in digests] == [2, 1, 0, 1, 0]
    assert all(d["previousDigestHash"] == p["digestHash"] for p, d in itertools.pairwise(digests))
    assert "integrity-test" not in json.dumps(digests, default=str)  # the key is not stored


def test_sealing_again_is_idempotent_and_waits_for_the_delay(db, org, sealed):
    assert seal_organization(db, org.id, START, NOW, POLICY) == 0
    later = NOW + timedelta(minutes=1)  # the 5:00-6:00 window closed a minute ago: within the delay
    assert seal_organization(db, org.id, START, later, POLICY) == 0
    assert seal_organization(db, org.id, START, later + timedelta(minutes=2), POLICY) == 1


def test_a_modified_field_is_named(db, org, sealed):
    target = sealed[2]
    db.audit_logs.update_one({"_id": target["_id"]}, {"$set": {"statusCode": 200 + 1}})
    assert problems(verify(db, org)) == [(2, "modified", str(target["_id"]))]


def test_a_deleted_record_is_named(db, org, sealed):
    db.audit_logs.delete_one({"_id": sealed[0]["_id"]})
    assert problems(verify(db, org)) == [(1, "deleted", str(sealed[0]["_id"]))]


def test_a_forged_record_is_named(db, org, sealed):
    forged = stored(org.id, 2.5, path="/forged")
    db.audit_logs.insert_one(forged)
    assert problems(verify(db, org)) == [(3, "inserted", str(forged["_id"]))]


def test_moving_a_record_to_another_window_is_detected(db, org, sealed):
    db.audit_logs.update_one(
        {"_id": sealed[3]["_id"]}, {"$set": {"storedAt": START + timedelta(hours=2.5)}}
    )
    found = problems(verify(db, org))
    assert (4, "deleted", str(sealed[3]["_id"])) in found and (
        3,
        "inserted",
        str(sealed[3]["_id"]),
    ) in found


def test_a_dropped_digest_breaks_the_chain(db, org, sealed):
    db.audit_digests.delete_one({"organizationId": org.id, "sequence": 3})
    report = verify(db, org)
    assert not report.ok and ("missingDigest" in {p[1] for p in problems(report)})
    assert next(p[0] for p in problems(report) if p[1] == "missingDigest") == 4
    assert report.verified_up_to == START + 2 * HOUR


def test_an_edited_digest_is_detected(db, org, sealed):
    db.audit_digests.update_one({"organizationId": org.id, "sequence": 2}, {"$set": {"count": 5}})
    assert (2, "digestEdited", None) in problems(verify(db, org))


def test_a_digest_recomputed_without_the_key_is_detected(db, org, sealed):
    from audit_app.audit.integrity.digests import digest_hash

    digest = db.audit_digests.find_one({"organizationId": org.id, "sequence": 2})
    digest["chunks"] = []
    digest["count"] = 0
    digest["digestHash"] = digest_hash(digest)  # an attacker can rehash, but cannot sign
    db.audit_digests.replace_one({"_id": digest["_id"]}, digest)
    found = {p[1] for p in problems(verify(db, org))}
    assert "badSignature" in found and "brokenChain" in found


def test_the_wrong_key_fails_every_window(db, org, sealed):
    report = verify(db, org, key=Signer("another key entirely"))
    assert {p[1] for p in problems(report)} == {"badSignature"} and len(problems(report)) == 5


def test_a_range_is_checked_with_its_link_to_the_previous_digest(db, org, sealed):
    report = verify(db, org, start=START + 2 * HOUR, end=START + 4 * HOUR)
    assert [w.sequence for w in report.windows] == [3, 4] and report.ok


def test_windows_past_retention_report_expired_not_deleted(db, org, sealed, tmp_path):
    from audit_app.audit.integrity.anchor import Anchor

    anchor = Anchor(tmp_path / "anchor")
    db.audit_logs.delete_many({})
    later = START + timedelta(days=40)
    unexplained = verify_organization(db, org.id, later, POLICY)
    assert not unexplained.ok  # no bound anchored outside the database: deletions
    anchor.anchor_purge(org.id, later - timedelta(days=30))  # what the purge anchors first
    report = verify_organization(db, org.id, later, replace(POLICY, anchor=anchor))
    assert report.ok and {w.status for w in report.windows} == {"expired"}


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(which=st.integers(0, 3), position=st.integers(min_value=4), flip=st.integers(1, 255))
def test_any_single_byte_change_to_a_stored_record_is_detected(
    db, org, sealed, which, position, flip
):
    original = db.audit_logs.find_one({"_id": sealed[which]["_id"]})
    raw = bytearray(bson.encode(original))
    index = position % (len(raw) - 5) + 4
    raw[index] ^= flip
    try:
        changed = bson.decode(bytes(raw), codec_options=bson.CodecOptions(tz_aware=True))
    except Exception:  # the change made it invalid BSON: the server would refuse it
        assume(False)
    assume(changed != original and isinstance(changed.get("_id"), ObjectId))
    # a flip in the last byte of an ObjectId can turn it into a neighbour's id: not a new record
    assume(
        changed["_id"] == original["_id"] or db.audit_logs.find_one({"_id": changed["_id"]}) is None
    )
    db.audit_logs.delete_one({"_id": original["_id"]})
    try:
        try:
            db.audit_logs.insert_one(changed)
        except Exception:  # a key the store refuses ($-prefixed): nobody could store it
            assume(False)
        assert not verify(db, org).ok
    finally:  # the record as it was, whatever happened, for the next example
        db.audit_logs.delete_many({"_id": {"$in": [changed["_id"], original["_id"]]}})
        db.audit_logs.insert_one(original)


def test_records_replayed_from_the_spool_after_an_outage_verify(make_app, org, mongo):
    from audit_app.audit.capture.hooks import WRITER_KEY
    from audit_app.audit.integrity.sealing import seal_now, verify

    from .factories import Api
    from .fakes import FlakyClient

    flaky = FlakyClient(mongo)
    app = make_app(AUDIT_MONGO_CLIENT=flaky, AUDIT_SEAL_INTERVAL=1, AUDIT_SEAL_DELAY=0)
    api = Api(app.test_client())
    token = api.token(org.owner)
    flaky.down = True
    for _ in range(3):
        assert api.get("/api/v1/organization", token=token).status_code == 200
    flaky.down = False
    app.extensions[WRITER_KEY].replay()
    db = mongo["audit_app"]
    assert all(r.get("storedAt") for r in db.audit_logs.find({"organizationId": org.id}))
    # seal as if two minutes had passed, so every window holding these records is closed
    import audit_app.audit.integrity.sealing as sealing

    future = datetime.now(UTC) + timedelta(minutes=2)
    original = sealing.utcnow
    sealing.utcnow = lambda: future
    try:
        seal_now(app, only=org.id)
        with app.app_context():
            report = verify(org.id)
    finally:
        sealing.utcnow = original
    assert report.ok, report.as_dict()
    sealed_ids = {
        i for d in db.audit_digests.find({"organizationId": org.id}) for i in entry_ids(db, d)
    }
    assert {str(r["_id"]) for r in db.audit_logs.find({"organizationId": org.id})} == sealed_ids


def test_cli_seal_verify_and_export(app, org, db, runner, tmp_path):
    db.audit_logs.insert_many([stored(org.id, h) for h in (0.2, 1.4)])
    db.organizations.update_one({"_id": org.id}, {"$set": {"createdAt": START}})
    result = runner.invoke(args=["seal", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["total"] > 0
    assert runner.invoke(args=["verify", "--organization", str(org.id)]).exit_code == 0
    target = db.audit_logs.find_one({"organizationId": org.id, "storedAt": {"$lt": START + HOUR}})
    db.audit_logs.update_one({"_id": target["_id"]}, {"$set": {"path": "/tampered"}})
    failed = runner.invoke(args=["verify", "--organization", str(org.id)])
    assert failed.exit_code == 1
    assert str(target["_id"]) in failed.output and "2026-11-01T00:00:00.000Z" in failed.output
    report = json.loads(
        runner.invoke(args=["verify", "--organization", str(org.id), "--json"]).output
    )
    assert report["ok"] is False and report["failedWindows"][0]["problems"][0]["type"] == "modified"
    db.audit_logs.update_one({"_id": target["_id"]}, {"$set": {"path": target["path"]}})
    assert runner.invoke(args=["verify", "--organization", str(org.id)]).exit_code == 0
    out = tmp_path / "digests.ndjson"
    assert (
        runner.invoke(
            args=["export-digests", "--organization", str(org.id), "--output", str(out)]
        ).exit_code
        == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["sequence"] for d in lines] == list(
        range(1, len(lines) + 1)
    ) and "signature" in lines[0]
    assert (
        runner.invoke(args=["verify", "--organization", str(org.id), "--from", "x"]).exit_code == 2
    )


def test_api_and_list_page_show_the_integrity_state(app, api, org, db, runner):
    from .test_web_pages import login

    assert api.get("/api/v1/audit-logs/integrity", as_=org.admin).get_json()["state"] == "unsealed"
    assert api.get("/api/v1/audit-logs/integrity", as_=org.member).status_code == 403
    recent = datetime.now(UTC) - timedelta(hours=3)  # within the 24 windows the banner checks
    db.audit_logs.insert_one(audit_record(org.id, created_at=recent, storedAt=recent))
    db.organizations.update_one(
        {"_id": org.id}, {"$set": {"createdAt": recent - timedelta(days=2)}}
    )
    runner.invoke(args=["seal"])
    state = api.get("/api/v1/audit-logs/integrity", as_=org.admin).get_json()
    assert state["state"] == "verified" and state["verifiedUpTo"], json.dumps(state)
    client = app.test_client()
    login(client, org.owner)
    assert "Integrity verified up to" in client.get("/organization/audit-logs").get_data(
        as_text=True
    )
    db.audit_logs.update_one(
        {"organizationId": org.id, "storedAt": recent}, {"$set": {"statusCode": 418}}
    )
    # no request re-hashes records: the page shows the last stored verification...
    assert api.get("/api/v1/audit-logs/integrity", as_=org.admin).get_json()["state"] == "verified"
    runner.invoke(args=["verify", "--organization", str(org.id)])  # ...until the next one runs
    state = api.get("/api/v1/audit-logs/integrity", as_=org.admin).get_json()
    assert state["state"] == "failed" and state["problems"] == []
    [window] = state["failedWindows"]  # the window, what changed in it, the record concerned
    edited = db.audit_logs.find_one({"organizationId": org.id, "storedAt": recent})
    assert window["status"] == "failed" and window["windowStart"] < window["windowEnd"]
    assert [(p["type"], p["recordId"]) for p in window["problems"]] == [
        ("modified", str(edited["_id"]))
    ]
    page = client.get("/organization/audit-logs").get_data(as_text=True)
    assert "Integrity warning" in page and "1 sealed window(s) no longer match" in page
    assert "/organization/audit-logs/integrity" in page  # one click to what changed
    details = client.get("/organization/audit-logs/integrity")
    html = details.get_data(as_text=True)
    assert details.status_code == 200 and "Windows that no longer match" in html
    assert f'/organization/audit-logs/{edited["_id"]}"' in html and "modified" in html
    db.audit_logs.delete_one({"_id": edited["_id"]})  # gone now: named, not linked
    html = client.get("/organization/audit-logs/integrity").get_data(as_text=True)
    assert "no longer in the log" in html
    member = app.test_client()
    login(member, org.member)
    assert member.get("/organization/audit-logs/integrity").status_code == 403


def test_sealing_up_to_now_ends_with_a_partial_window_and_the_chain_continues(db, org):
    db.audit_logs.insert_many([stored(org.id, h) for h in (0.2, 1.5, 2.1)])
    cut = START + timedelta(hours=1, minutes=45)
    assert (
        seal_organization(
            db, org.id, START, NOW, replace(POLICY, delay=timedelta(seconds=5)), until=cut
        )
        == 2
    )
    partial = db.audit_digests.find_one({"organizationId": org.id, "sequence": 2})
    assert partial["windowEnd"].replace(tzinfo=UTC) == cut and partial["count"] == 1
    late = stored(org.id, 1.9)  # stored after the cut, in the rest of that hour
    db.audit_logs.insert_one(late)
    assert seal_organization(db, org.id, START, NOW, POLICY) == 4
    following = db.audit_digests.find_one({"organizationId": org.id, "sequence": 3})
    assert following["windowStart"].replace(tzinfo=UTC) == cut
    assert following["windowEnd"].replace(tzinfo=UTC) == START + 2 * HOUR
    assert entry_ids(db, following) == [str(late["_id"])]
    assert verify(db, org).ok


def test_the_walkthrough_on_the_demo_organization(app, runner, db):
    """Seal the demo, change a record by a direct write, verify names it; undo; verify passes."""
    import time

    made = json.loads(runner.invoke(args=["seed-demo", "--requests", "40", "--json"]).output)
    organization = made["organizationId"]
    time.sleep(6)  # seal --now leaves the last five seconds open
    assert runner.invoke(args=["seal", "--now", "--organization", organization]).exit_code == 0
    assert runner.invoke(args=["verify", "--organization", organization]).exit_code == 0
    target = db.audit_logs.find_one({"organizationId": ObjectId(organization), "statusCode": 201})
    db.audit_logs.update_one({"_id": target["_id"]}, {"$set": {"statusCode": 200}})
    failed = runner.invoke(args=["verify", "--organization", organization])
    assert failed.exit_code == 1 and f"Record {target['_id']} was modified" in failed.output
    assert "FAILED window #" in failed.output
    db.audit_logs.update_one({"_id": target["_id"]}, {"$set": {"statusCode": 201}})
    assert runner.invoke(args=["verify", "--organization", organization]).exit_code == 0


def test_reordered_digests_are_detected(db, org, sealed):
    second = db.audit_digests.find_one({"organizationId": org.id, "sequence": 2})
    third = db.audit_digests.find_one({"organizationId": org.id, "sequence": 3})
    db.audit_digests.update_one({"_id": second["_id"]}, {"$set": {"sequence": -2}})
    db.audit_digests.update_one({"_id": third["_id"]}, {"$set": {"sequence": 2}})
    db.audit_digests.update_one({"_id": second["_id"]}, {"$set": {"sequence": 3}})
    found = {p[1] for p in problems(verify(db, org))}
    assert {"digestEdited", "brokenChain"} <= found


def test_a_string_whose_type_byte_became_code_is_detected(db, org, sealed):
    """BSON's JavaScript code (0x0D) differs from a string (0x02) by one bit pattern of the
    type byte, and pymongo decodes it as a ``str`` subclass: the hash must still tell."""
    from bson.code import Code

    original = db.audit_logs.find_one({"_id": sealed[0]["_id"]})
    db.audit_logs.update_one({"_id": original["_id"]}, {"$set": {"path": Code(original["path"])}})
    report = verify(db, org)
    assert not report.ok and ("modified", str(original["_id"])) in {
        (t, r) for _, t, r in problems(report)
    }


def test_a_command_never_seals_or_verifies_while_another_process_is_sealing(
    app, org, db, runner, monkeypatch
):
    """The background task holds the sealer's lease while it seals and verifies: ``flask
    seal`` and ``flask verify`` wait for it, so neither verifies (and stores as the state)
    an organization half-way through another's seal, nor seals alongside it; past their
    wait they say so and change nothing."""
    import threading
    import time

    from audit_app.audit.integrity import sealing

    recent = datetime.now(UTC) - timedelta(hours=3)
    db.organizations.update_one({"_id": org.id}, {"$set": {"createdAt": recent}})
    assert sealing.acquire_lease("sealer", "the background task", 60, app)
    monkeypatch.setattr(sealing, "COMMAND_WAIT_SECONDS", 0.5)
    for args in (["seal"], ["verify", "--organization", str(org.id)]):
        busy = runner.invoke(args=[*args, "--json"])
        assert busy.exit_code == 1, busy.output
        assert "Another process is sealing right now" in busy.output
    assert db.audit_digests.count_documents({"organizationId": org.id}) == 0
    assert db.audit_integrity.find_one({"_id": org.id}) is None
    # the lease let go while a command waits: it goes on then, and only then
    monkeypatch.setattr(sealing, "COMMAND_WAIT_SECONDS", 30)
    released = []

    def background_done():
        time.sleep(0.5)
        released.append(datetime.now(UTC))
        sealing.release_lease("sealer", "the background task", app)

    thread = threading.Thread(target=background_done)
    thread.start()
    done = runner.invoke(args=["seal", "--json"])
    thread.join(10)
    assert done.exit_code == 0, done.output
    first = db.audit_digests.find_one({"organizationId": org.id}, sort=[("sequence", 1)])
    assert first is not None and first["createdAt"].replace(tzinfo=UTC) >= released[0]
    assert db.audit_leases.find_one({"_id": "sealer"}) is None  # the command let go too
