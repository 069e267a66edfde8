"""The database holder's attacks on the verifiable log: whoever can write every collection
but holds no signing key tries to make a forged or edited record's proof verify, or a valid
record's proof go unserved without ``flask verify`` saying so. Each attack asserts its
effect: the offline verifier refuses, the sealer refuses to sign, or verify reports it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from audit_app import verifier
from audit_app.audit.integrity import merkle, sealing
from audit_app.audit.integrity.digests import CHUNKS, DIGESTS
from audit_app.db import get_audit_db

from .factories import Api, make_org
from .test_verifiable_log import SEALING, seal, seal_up_to_now  # noqa: F401 (a fixture)

# the settings, the clock and the seal of tests/test_verifiable_log.py


@pytest.fixture(params=["mongo", "embedded"])
def setup(request, make_app, embedded):
    app = (make_app if request.param == "mongo" else embedded)(**SEALING)
    org = make_org(app, "Attacked")
    api = Api(app.test_client())
    token = api.token(org.owner)
    return app, org, api, token


def some_records(api, token, count):
    for _ in range(count):
        assert api.get("/api/v1/workspaces", token=token).status_code == 200


def workspace_records(api, token):
    answer = api.get(
        "/api/v1/audit-logs",
        token=token,
        query_string={"limit": 100, "path": "/api/v1/workspaces"},
    )
    return answer.get_json()["items"]


def proof_of(api, token, record_id, **query):
    return api.get(f"/api/v1/audit-logs/{record_id}/proof", token=token, query_string=query)


def problems(app, org) -> set[str]:
    with app.app_context():
        report = sealing.verify(org.id).as_dict()
    kinds = {p["type"] for p in report["chainProblems"]}
    for window in report["details"]:
        kinds |= {p["type"] for p in window.get("problems", [])}
    return kinds


def refused(proof: dict, key: str) -> str:
    with pytest.raises(verifier.VerificationError) as caught:
        verifier.verify_record_proof(proof, verifier.VerifierKey.parse(key))
    return str(caught.value)


def sealed_log(setup, count=4):
    app, org, api, token = setup
    some_records(api, token, count)
    seal(app, org)
    checkpoint = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    return checkpoint


def rewrite_leaf(db, org_id, index: int, leaf: bytes) -> None:
    tile = merkle.Tiles(db, org_id).fetch([(0, index >> 8)])[(0, index >> 8)]
    at = (index & 255) * 32
    db[merkle.TILES].update_one(
        {"_id": merkle.tile_id(org_id, 0, index >> 8)},
        {"$set": {"hashes": tile[:at] + leaf + tile[at + 32 :]}},
    )


def test_an_edited_record_with_its_leaf_rewritten_is_never_signed_by_the_next_seal(setup):
    """The right edge of the tree is a partial tile the next seal reads and extends: the
    attacker edits a sealed record and writes its new leaf hash into that tile, then waits
    for the sealer to sign a checkpoint over it. The sealer must refuse, since the tree it
    would extend is not the one it signed last."""
    app, org, api, token = setup
    first = sealed_log(setup)
    target = workspace_records(api, token)[0]
    index = proof_of(api, token, target["id"]).get_json()["leafIndex"]
    with app.app_context():
        db = get_audit_db()
        db.audit_logs.update_one({"_id": ObjectId(target["id"])}, {"$set": {"statusCode": 201}})
        edited = db.audit_logs.find_one({"_id": ObjectId(target["id"])})
        rewrite_leaf(db, org.id, index, merkle.leaf_hash(merkle.record_leaf(edited)))
    some_records(api, token, 2)
    seal(app, org)
    latest = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    assert latest["treeSize"] == first["treeSize"], "a checkpoint was signed over the edit"
    served = proof_of(api, token, target["id"]).get_json()
    assert served["record"]["statusCode"] == {"$numberInt": "201"}
    assert "does not lead to the root" in refused(served, first["publicKey"])
    assert "logRewritten" in problems(app, org)


def test_a_rewritten_tree_document_does_not_move_what_the_sealer_signs(setup):
    """The tree's state (size, root) is a document the attacker may rewrite too: the next
    checkpoint still extends the last one signed (a witness's consistency check passes)."""
    app, org, api, token = setup
    first = sealed_log(setup)
    with app.app_context():
        db = get_audit_db()
        db[merkle.TREES].update_one(
            {"organizationId": org.id},
            {"$set": {"rootHash": base64.b64encode(merkle.leaf_hash(b"forged")).decode()}},
        )
    some_records(api, token, 2)
    seal(app, org)
    second = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    assert second["treeSize"] > first["treeSize"]
    proof = api.get(
        "/api/v1/audit-logs/consistency",
        token=token,
        query_string={"from": first["treeSize"], "to": second["treeSize"]},
    ).get_json()
    verifier.verify_consistency(
        first["treeSize"],
        second["treeSize"],
        verifier.b64hashes(proof["proof"]),
        base64.b64decode(first["rootHash"]),
        base64.b64decode(second["rootHash"]),
    )


def test_a_checkpoint_written_into_the_database_is_refused_by_the_verifier(setup):
    """No key: a checkpoint for a forged root, signed by another key (or its signature line
    copied from a real one), is served, and the offline verifier refuses it."""
    app, org, api, token = setup
    first = sealed_log(setup)
    target = workspace_records(api, token)[0]
    forged_root = merkle.leaf_hash(b"forged root")
    other = sealing.Notary.from_settings("audit.test", "the attacker's own key", None)
    signature_line = first["checkpoint"].split("\n\n", 1)[1]
    copied = (
        f"audit.test/{org.id}\n{first['treeSize'] + 1}\n"
        f"{base64.b64encode(forged_root).decode()}\n\n{signature_line}"
    )
    for note in (other.sign(org.id, first["treeSize"] + 1, forged_root), copied):
        with app.app_context():
            db = get_audit_db()
            db[merkle.CHECKPOINTS].delete_many({"treeSize": first["treeSize"] + 1})
            db[merkle.CHECKPOINTS].insert_one(
                {
                    "organizationId": org.id,
                    "treeSize": first["treeSize"] + 1,
                    "rootHash": base64.b64encode(forged_root).decode(),
                    "checkpoint": note,
                    "createdAt": datetime.now(UTC),
                }
            )
        # a tree of that size is not in the tiles: no proof, said plainly (not a 500)
        served = proof_of(api, token, target["id"])
        assert served.status_code == 503, served.get_json()
        assert served.get_json()["error"]["code"] == "log_unavailable"
        # and served in a proof the tiles can give: the verifier refuses it
        forged = proof_of(api, token, target["id"], treeSize=first["treeSize"]).get_json()
        forged["proof"] = forged["proof"].replace(first["checkpoint"], note)
        refused(forged, first["publicKey"])
    # the real proof, against the checkpoint the key signed, still verifies
    still = proof_of(api, token, target["id"], treeSize=first["treeSize"]).get_json()
    verifier.verify_record_proof(still, verifier.VerifierKey.parse(first["publicKey"]))


def test_a_moved_tree_start_makes_the_proof_fail_and_verify_says_so(setup):
    app, org, api, token = setup
    first = sealed_log(setup)
    target = workspace_records(api, token)[0]
    with app.app_context():
        db = get_audit_db()
        db[DIGESTS].update_one(
            {"organizationId": org.id, "sequence": 1}, {"$inc": {"treeStart": 1}}
        )
    served = proof_of(api, token, target["id"])
    if served.status_code == 200:
        refused(served.get_json(), first["publicKey"])
    assert problems(app, org) & {"digestEdited", "treeStartMoved"}, problems(app, org)


def test_a_lowered_chunk_last_ms_hides_no_record_from_its_proof_unreported(setup):
    app, org, api, token = setup
    first = sealed_log(setup)
    target = workspace_records(api, token)[0]
    with app.app_context():
        db = get_audit_db()
        db[CHUNKS].update_many({"organizationId": org.id}, {"$set": {"lastMs": 0}})
    served = proof_of(api, token, target["id"])
    if served.status_code == 200:  # found all the same
        verifier.verify_record_proof(
            served.get_json(), verifier.VerifierKey.parse(first["publicKey"])
        )
    else:
        assert problems(app, org) & {"digestEdited"}, (served.get_json(), problems(app, org))


def test_deleted_tiles_are_a_clear_error_and_verify_names_the_truncation(setup):
    app, org, api, token = setup
    sealed_log(setup)
    target = workspace_records(api, token)[0]
    with app.app_context():
        get_audit_db()[merkle.TILES].delete_many({"organizationId": org.id})
    served = proof_of(api, token, target["id"])
    assert served.status_code == 503, served.get_data(as_text=True)[:300]
    assert "verify" in served.get_json()["error"]["message"]
    assert "logTruncated" in problems(app, org)


def test_deleted_checkpoints_hide_proofs_but_verify_names_it(setup):
    app, org, api, token = setup
    sealed_log(setup)
    target = workspace_records(api, token)[0]
    with app.app_context():
        get_audit_db()[merkle.CHECKPOINTS].delete_many({"organizationId": org.id})
    served = proof_of(api, token, target["id"])
    assert served.status_code != 200
    assert "checkpointMissing" in problems(app, org)


def test_a_rolled_back_tree_document_is_reported(setup):
    """The tree's state set back: its records read as not in the log yet (409), and verify
    names the tree that no longer matches the last checkpoint."""
    app, org, api, token = setup
    sealed_log(setup)
    target = workspace_records(api, token)[0]
    with app.app_context():
        get_audit_db()[merkle.TREES].update_one(
            {"organizationId": org.id}, {"$set": {"sequence": 0}}
        )
    served = proof_of(api, token, target["id"])
    assert served.status_code != 200
    assert problems(app, org) & {"treeBehind"}, problems(app, org)


def test_a_proof_file_for_a_forged_record_never_verifies(setup):
    """A record written straight into the database after sealing, given the index and the
    inclusion proof of a real record: the offline verifier refuses it."""
    _app, _org, api, token = setup
    first = sealed_log(setup)
    target = workspace_records(api, token)[0]
    real = proof_of(api, token, target["id"]).get_json()
    forged = dict(real["record"], statusCode={"$numberInt": "403"})
    assert "does not lead to the root" in refused(dict(real, record=forged), first["publicKey"])


def test_a_leaf_rewritten_inside_a_complete_tile_is_named_by_verify(setup):
    """A complete tile's subtree is read from the tile above it when the root is computed,
    so rewriting one leaf of it leaves every root (and so the sealer's check) unchanged,
    while the proofs of that tile's records fail: verify must name it."""
    app, org, api, token = setup
    with app.app_context():
        db = get_audit_db()
        # 300 sealed records, the quick way: written as the app writes them
        from .factories import audit_record

        start = datetime.now(UTC) - timedelta(seconds=1)
        db.audit_logs.insert_many(
            [
                audit_record(
                    org.id,
                    created_at=start + timedelta(milliseconds=i),
                    storedAt=start + timedelta(milliseconds=i),
                )
                for i in range(300)
            ]
        )
    first = sealed_log(setup, 1)
    assert first["treeSize"] > 256
    with app.app_context():
        db = get_audit_db()
        victim = db.audit_logs.find_one(
            {"organizationId": org.id}, sort=[("storedAt", 1), ("_id", 1)]
        )
        index = proof_of(api, token, victim["_id"]).get_json()["leafIndex"]
        assert index < 256
        # its neighbour's leaf: a sibling in the victim's proof (its own is never read)
        rewrite_leaf(db, org.id, index ^ 1, merkle.leaf_hash(b"not the record"))
    served = proof_of(api, token, victim["_id"]).get_json()
    assert "does not lead to the root" in refused(served, first["publicKey"])
    assert "logRewritten" in problems(app, org)


def test_a_removed_tree_start_hides_a_window_from_proofs_but_verify_says_so(setup):
    app, org, api, token = setup
    sealed_log(setup, 2)
    some_records(api, token, 2)
    seal(app, org)
    with app.app_context():
        db = get_audit_db()
        last = db[DIGESTS].find_one({"organizationId": org.id}, sort=[("sequence", -1)])
        assert last["sequence"] >= 2 and last["count"] >= 1
        db[DIGESTS].update_one({"_id": last["_id"]}, {"$unset": {"treeStart": ""}})
        hidden = db.audit_logs.find_one(
            {"organizationId": org.id, "storedAt": {"$gte": last["windowStart"]}},
            sort=[("storedAt", 1)],
        )
    assert proof_of(api, token, hidden["_id"]).status_code == 409
    assert "treeStartMoved" in problems(app, org)
