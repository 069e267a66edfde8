"""Tamper evidence to the tail: types, the newest digests, all digests, unsealed time, size.

Tried as someone with write access to the database: each change is detected and named by
verify, and sealing refuses to re-sign what replaced deleted digests.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import bson
import mongomock
import pytest
from bson import Int64, ObjectId

from audit_app.audit.integrity.anchor import Anchor
from audit_app.audit.integrity.digests import (
    CHUNK_SIZE,
    SealPolicy,
    SealRefused,
    Signer,
    seal_organization,
    verify_organization,
)

from .factories import audit_record

KEY = Signer("tamper-test-signing-key-0123456789")
HOUR = timedelta(hours=1)
DELAY = timedelta(minutes=2)
START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = START + timedelta(hours=6)
POLICY = SealPolicy(KEY, HOUR, DELAY)


def stored(org_id, hour: float, **fields):
    moment = START + timedelta(hours=hour)
    return audit_record(
        org_id, _id=ObjectId.from_datetime(moment), created_at=moment, storedAt=moment, **fields
    )


@pytest.fixture
def anchor(tmp_path):
    return Anchor(tmp_path / "anchor")


@pytest.fixture
def sealed(db, org, anchor):
    records = [stored(org.id, h, path=f"/r/{h}", accountId=ObjectId()) for h in (0.1, 1.2, 3.7)]
    db.audit_logs.insert_many(records)
    assert seal_organization(db, org.id, START, NOW, replace(POLICY, anchor=anchor)) == 5
    return records


def verify(db, org, anchor, now=NOW, **kw):
    policy = replace(POLICY, anchor=anchor)
    return verify_organization(db, org.id, now, policy, **kw)


def kinds(report) -> set[str]:
    found = {p["type"] for p in report.chain_problems}
    return found | {p["type"] for w in report.windows for p in w.problems}


def test_a_clean_chain_verifies_against_its_anchor(db, org, anchor, sealed):
    report = verify(db, org, anchor)
    assert report.ok, report.as_dict()
    assert sorted(anchor.entries(org.id)) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "field,change",
    [
        ("accountId", lambda v: {"$oid": str(v)}),  # an ObjectId turned into a look-alike
        ("createdAt", lambda v: {"$date": int(v.timestamp() * 1000)}),  # a date likewise
        ("statusCode", lambda v: Int64(v)),  # int32 -> int64
        ("statusCode", lambda v: float(v)),  # int32 -> double
        ("durationMs", lambda v: int(v)),  # double -> int32
        ("path", lambda v: v.encode()),  # string -> binary
    ],
    ids=["oid", "date", "int64", "double", "int32", "binary"],
)
def test_a_change_of_bson_type_is_detected(db, org, anchor, sealed, field, change):
    target = sealed[1]
    current = db.audit_logs.find_one({"_id": target["_id"]})
    db.audit_logs.update_one({"_id": target["_id"]}, {"$set": {field: change(current[field])}})
    report = verify(db, org, anchor)
    assert not report.ok
    assert {
        (w.sequence, p["type"], p.get("recordId")) for w in report.windows for p in w.problems
    } == {(2, "modified", str(target["_id"]))}


def test_swapping_two_keys_of_a_record_is_detected(db, org, anchor, sealed):
    original = db.audit_logs.find_one({"_id": sealed[0]["_id"]})
    keys = list(original)
    keys[1], keys[2] = keys[2], keys[1]
    db.audit_logs.replace_one({"_id": original["_id"]}, {k: original[k] for k in keys})
    assert "modified" in kinds(verify(db, org, anchor))


def test_deleting_the_newest_digest_and_editing_its_records_is_caught_and_not_resealed(
    db, org, anchor, sealed
):
    db.audit_digests.delete_one({"organizationId": org.id, "sequence": 5})
    db.audit_digests.delete_one({"organizationId": org.id, "sequence": 4})
    db.audit_logs.update_one({"_id": sealed[2]["_id"]}, {"$set": {"path": "/forged"}})
    report = verify(db, org, anchor)
    assert "newestDigestsDeleted" in kinds(report) and not report.ok
    with pytest.raises(SealRefused):
        seal_organization(db, org.id, START, NOW, replace(POLICY, anchor=anchor))
    assert db.audit_digests.count_documents({"organizationId": org.id}) == 3  # nothing re-signed
    assert not verify(db, org, anchor, last=24).ok  # the page's view says so too


def test_deleting_every_digest_is_caught(db, org, anchor, sealed):
    db.audit_digests.delete_many({"organizationId": org.id})
    db.audit_digest_chunks.delete_many({"organizationId": org.id})
    report = verify(db, org, anchor)
    assert not report.ok and "allDigestsDeleted" in kinds(report)
    assert "unsealed" in kinds(report)


def test_a_replaced_digest_is_caught_by_the_anchor(db, org, anchor, sealed, tmp_path):
    """With the signing key stolen too, a rewritten chain still differs from the anchor."""
    db.audit_digests.delete_many({"organizationId": org.id})
    db.audit_logs.update_one({"_id": sealed[0]["_id"]}, {"$set": {"path": "/rewritten"}})
    elsewhere = Anchor(tmp_path / "attackers-own-anchor")
    seal_organization(db, org.id, START, NOW, replace(POLICY, anchor=elsewhere))
    assert verify(db, org, elsewhere).ok  # self-consistent...
    report = verify(db, org, anchor)  # ...but not what was anchored
    assert not report.ok and "replacedDigest" in kinds(report)


def test_a_gap_in_the_sequence_is_named(db, org, anchor, sealed):
    db.audit_digests.delete_one({"organizationId": org.id, "sequence": 3})
    assert {"missingDigest"} <= kinds(verify(db, org, anchor))


def test_records_left_unsealed_where_windows_should_be_sealed_are_reported(db, org, anchor):
    db.audit_logs.insert_many([stored(org.id, h) for h in (0.5, 1.5)])
    report = verify(db, org, anchor)  # sealing never ran
    assert not report.ok and kinds(report) == {"unsealed"}
    seal_organization(db, org.id, START, NOW, replace(POLICY, anchor=anchor))
    assert verify(db, org, anchor).ok


def test_what_an_earlier_versions_ttl_index_removed_never_reads_as_tampering(db, org, anchor):
    """A window straddling the TTL index's cut-off (by createdAt) loses its older records:
    not 'deleted', below the legacy bound anchored at the first start of this version."""
    early = audit_record(
        org.id,
        _id=ObjectId.from_datetime(START + timedelta(minutes=59, seconds=58)),
        created_at=START + timedelta(minutes=59, seconds=58),
        storedAt=START + timedelta(hours=1, seconds=1),  # stored in the next window
    )
    late = stored(org.id, 1.5)
    db.audit_logs.insert_many([early, late])
    seal_organization(db, org.id, START, NOW, replace(POLICY, anchor=anchor))
    later = START + timedelta(days=30, hours=1)  # the cut-off: 1:00 on the first day
    db.audit_logs.delete_one({"_id": early["_id"]})  # what the TTL index removes by createdAt
    assert "deleted" in kinds(verify(db, org, anchor, now=later))  # nothing anchored: deleted
    anchor.anchor_legacy(later - timedelta(days=30))
    report = verify(db, org, anchor, now=later)
    assert "deleted" not in kinds(report)
    db.audit_logs.delete_one({"_id": late["_id"]})  # not yet due: that one is tampering
    report = verify(db, org, anchor, now=later)
    assert "deleted" in kinds(report)


def test_two_sealers_racing_produce_one_chain(db, org, anchor):
    db.audit_logs.insert_many([stored(org.id, h / 4) for h in range(20)])
    barrier = threading.Barrier(2)
    results = []

    def seal():
        barrier.wait(timeout=10)
        try:
            results.append(
                seal_organization(db, org.id, START, NOW, replace(POLICY, anchor=anchor))
            )
        except SealRefused as error:  # the other one anchored first: also a correct outcome
            results.append(str(error))

    threads = [threading.Thread(target=seal) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    sequences = [d["sequence"] for d in db.audit_digests.find({"organizationId": org.id})]
    assert sorted(sequences) == list(range(1, 6))
    assert verify(db, org, anchor).ok
    anchored = anchor.entries(org.id)
    stored_hashes = {
        d["sequence"]: d["digestHash"] for d in db.audit_digests.find({"organizationId": org.id})
    }
    assert anchored == stored_hashes


@pytest.mark.slow
def test_a_window_of_200k_records_keeps_every_document_far_below_16_mib(org, monkeypatch):
    """Sealing streams the window: 200k records are read one batch at a time (generated here,
    as a cursor would yield them) and every document written stays small."""
    from audit_app.audit.integrity import digests as integrity

    db = mongomock.MongoClient(tz_aware=True)["big"]
    moment = START + timedelta(minutes=10)

    def two_hundred_thousand(db_, organization_id, start, end):
        for index in range(200_000):
            yield {
                "_id": ObjectId(),
                "organizationId": organization_id,
                "storedAt": moment,
                "createdAt": moment,
                "path": f"/p/{index}",
                "statusCode": 200,
            }

    monkeypatch.setattr(integrity, "_record_stream", two_hundred_thousand)
    assert seal_organization(db, org.id, START, START + 2 * HOUR, POLICY) == 1
    digest = db.audit_digests.find_one({"organizationId": org.id, "sequence": 1})
    assert digest["count"] == 200_000 and len(digest["chunks"]) == 200_000 // CHUNK_SIZE
    chunks = list(db.audit_digest_chunks.find({"organizationId": org.id}))
    assert sum(len(c["records"]) for c in chunks) == 200_000
    largest = max(len(bson.encode(doc)) for doc in [digest, *chunks])
    assert largest < 2 * 1024 * 1024  # 16 MiB is the limit
    assert len(bson.encode(digest)) < 16 * 1024


def test_a_window_over_many_chunks_names_each_change(db, org, monkeypatch):
    from audit_app.audit.integrity import digests as integrity

    monkeypatch.setattr(integrity, "CHUNK_SIZE", 7)
    records = [stored(org.id, 0.01 * i, path=f"/c/{i}") for i in range(50)]
    db.audit_logs.insert_many(records)
    assert seal_organization(db, org.id, START, NOW, POLICY) == 5
    digest = db.audit_digests.find_one({"organizationId": org.id, "sequence": 1})
    assert digest["count"] == 50 and len(digest["chunks"]) == 8
    db.audit_logs.update_one({"_id": records[20]["_id"]}, {"$set": {"statusCode": 201}})
    db.audit_logs.delete_one({"_id": records[33]["_id"]})
    forged = stored(org.id, 0.333, path="/forged")
    db.audit_logs.insert_one(forged)
    report = verify_organization(db, org.id, NOW, POLICY)
    assert sorted((p["type"], p["recordId"]) for p in report.windows[0].problems) == sorted(
        [
            ("modified", str(records[20]["_id"])),
            ("deleted", str(records[33]["_id"])),
            ("inserted", str(forged["_id"])),
        ]
    )
    db.audit_digest_chunks.update_one(
        {"digestId": digest["_id"], "index": 3}, {"$set": {"records": []}}
    )
    assert "digestEdited" in kinds(verify_organization(db, org.id, NOW, POLICY))


# One sealer at a time; pages read the stored verification ------------------------------


def test_one_sealer_holds_the_lease_until_it_expires(app):
    from audit_app.audit.integrity.sealing import acquire_lease, release_lease

    with app.app_context():
        assert acquire_lease("sealer", "host-a", 60)
        assert not acquire_lease("sealer", "host-b", 60)
        assert acquire_lease("sealer", "host-a", 60)  # renewing one's own
        release_lease("sealer", "host-a")
        assert acquire_lease("sealer", "host-b", 0.001)
        import time

        time.sleep(0.01)
        assert acquire_lease("sealer", "host-c", 60)  # an expired lease is taken over


def test_the_background_task_seals_verifies_and_stores_a_signed_state(app, api, db, org):
    from audit_app.audit.integrity import digests as integrity
    from audit_app.audit.integrity import sealing

    recent = datetime.now(UTC) - timedelta(hours=3)
    db.organizations.update_one({"_id": org.id}, {"$set": {"createdAt": recent - HOUR}})
    db.audit_logs.insert_one(audit_record(org.id, created_at=recent, storedAt=recent))
    assert sealing.seal_and_verify(app, "me")[str(org.id)] >= 3
    with app.app_context():
        assert sealing.acquire_lease("sealer", "someone-else", 60)  # released after the run
        sealing.release_lease("sealer", "someone-else")
    stored = db.audit_integrity.find_one({"_id": org.id})
    assert stored["state"] == "verified" and stored["scope"] == "full"

    def no_rehashing(*args, **kwargs):
        raise AssertionError("a request re-hashed records")

    original = integrity.verify_organization
    sealing.verify_organization = no_rehashing
    try:
        answer = api.get("/api/v1/audit-logs/integrity", as_=org.admin).get_json()
    finally:
        sealing.verify_organization = original
    assert answer["state"] == "verified"
    db.audit_integrity.update_one({"_id": org.id}, {"$set": {"state": "verified", "problems": []}})
    db.audit_integrity.update_one({"_id": org.id}, {"$set": {"verifiedUpTo": "2999-01-01"}})
    forged = api.get("/api/v1/audit-logs/integrity", as_=org.admin).get_json()
    assert forged["state"] == "failed" and forged["problems"][0]["type"] == "stateEdited"


def test_retention_takes_the_chunks_of_expired_windows_and_the_chain_still_verifies(
    db, org, anchor, sealed
):
    """The purge's steps: anchor the bound, delete the records below it and the chunks of
    windows that ended below it. The chain verifies; without the anchored bound, the same
    deletions are tampering."""
    from audit_app.audit.integrity.digests import ensure_digest_indexes, purge_window_chunks
    from audit_app.audit.store.repository import delete_records, stored_before

    assert "ttl_windowEnd" not in ensure_digest_indexes(db)
    cutoff = START + timedelta(days=1)
    ids = [record_id for record_id, _ in stored_before(db, org.id, cutoff, 1000)]
    assert ids and delete_records(db, org.id, ids) == len(ids)
    assert purge_window_chunks(db, org.id, cutoff) > 0
    assert db.audit_digest_chunks.count_documents({"organizationId": org.id}) == 0
    assert db.audit_logs.count_documents({"organizationId": org.id}) == 0
    unexplained = verify(db, org, anchor, now=NOW)
    assert not unexplained.ok
    anchor.anchor_purge(org.id, cutoff)
    report = verify(db, org, anchor, now=NOW)
    assert report.ok and {w.status for w in report.windows} == {"expired"}


# Found by an adversarial review --------------------------------------------------------


@pytest.mark.parametrize(
    "stored_at",
    [None, "2026-11-01T00:10:00Z", START - timedelta(days=3), NOW + timedelta(days=30)],
    ids=["missing", "string", "before-the-chain", "future"],
)
def test_a_record_no_window_covers_is_reported(db, org, anchor, sealed, stored_at):
    forged = audit_record(org.id, created_at=START + HOUR, path="/forged-evidence")
    if stored_at is None:
        forged.pop("storedAt", None)
    else:
        forged["storedAt"] = stored_at
    db.audit_logs.insert_one(forged)
    report = verify(db, org, anchor)
    assert not report.ok and "inserted" in kinds(report)


def test_poisoned_digests_and_chunks_are_named_not_crashing(db, org, anchor, sealed):
    chunk = db.audit_digest_chunks.find_one({"organizationId": org.id})
    entries = chunk["records"]
    entries[0][2] = str(entries[0][2])  # same chunk hash (joined as text), another type
    db.audit_digest_chunks.update_one({"_id": chunk["_id"]}, {"$set": {"records": entries}})
    db.audit_digests.update_one(
        {"organizationId": org.id, "sequence": 4}, {"$set": {"windowStart": "2026-11-01"}}
    )
    report = verify(db, org, anchor)
    assert not report.ok and "digestEdited" in kinds(report)


def test_an_old_or_deleted_stored_verification_does_not_read_as_verified(app, api, db, org):
    from audit_app.audit.integrity import sealing

    recent = datetime.now(UTC) - timedelta(hours=3)
    db.organizations.update_one({"_id": org.id}, {"$set": {"createdAt": recent - HOUR}})
    sealing.seal_and_verify(app, "me")
    good = db.audit_integrity.find_one({"_id": org.id})
    assert api.get("/api/v1/audit-logs/integrity", as_=org.admin).get_json()["state"] == "verified"
    with app.app_context():  # a signed result from long ago, put back
        old = dict(good, checkedAt="2026-01-01T00:00:00.000Z")
        old["signature"] = sealing.signer().sign(sealing._state_hash(old))
    db.audit_integrity.replace_one({"_id": org.id}, old)
    replayed = api.get("/api/v1/audit-logs/integrity", as_=org.admin).get_json()
    assert replayed["state"] == "failed" and replayed["problems"][0]["type"] == "stale"
    db.audit_integrity.delete_one({"_id": org.id})
    deleted = api.get("/api/v1/audit-logs/integrity", as_=org.admin).get_json()
    assert deleted["state"] == "failed" and deleted["problems"][0]["type"] == "stateMissing"
