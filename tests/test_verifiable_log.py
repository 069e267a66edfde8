"""The verifiable log end to end: sealing grows the tree, the API serves proofs, an auditor
verifies a record offline with the public key alone, a witness catches a rewritten history.

The attacker here holds the database (every collection) but not the signing key.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bson import ObjectId
from werkzeug.serving import make_server

from audit_app.audit.capture.hooks import store_journaled
from audit_app.audit.integrity import merkle, sealing
from audit_app.db import get_audit_db

from .factories import Api, make_org

ROOT = Path(__file__).resolve().parent.parent
SEALING = {
    "AUDIT_SEAL_INTERVAL": 1,
    "AUDIT_SEAL_DELAY": 0,
    "AUDIT_LOG_ORIGIN": "audit.test",
    "AUDIT_SEAL_IN_BACKGROUND": False,  # the test seals when it says so
}


@pytest.fixture(autouse=True)
def seal_up_to_now(monkeypatch):
    """``seal --now`` without its five seconds' margin: each seal takes what was stored."""
    monkeypatch.setattr(sealing, "UP_TO_NOW_MARGIN", timedelta(0))


def seal(app, org):
    time.sleep(0.002)  # the newest record a millisecond before the window's end
    with app.app_context():
        store_journaled()  # what the embedded store's journal holds, stored first
    written = sealing.seal_now(app, only=org.id, up_to_now=True)
    assert isinstance(written[str(org.id)], int), written


@pytest.fixture(params=["mongo", "embedded"])
def setup(request, make_app, embedded):
    app = (make_app if request.param == "mongo" else embedded)(**SEALING)
    org = make_org(app, "Verifiable")
    api = Api(app.test_client())
    token = api.token(org.owner)
    return app, org, api, token


def some_records(api, token, count=5):
    for _ in range(count):
        assert api.get("/api/v1/workspaces", token=token).status_code == 200


def newest(api, token, **params):
    answer = api.get("/api/v1/audit-logs", token=token, query_string={"limit": 100, **params})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["items"]


def run_verifier(path: Path, key: str, standalone_dir: Path | None = None):
    """The verifier in a process of its own, with no database setting: as a module of the
    package, or (standalone_dir) as the single file copied alone."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(path.parent)}
    if standalone_dir is not None:
        copy = standalone_dir / "verifier.py"
        shutil.copy(ROOT / "audit_app" / "verifier.py", copy)
        command = [sys.executable, "-I", str(copy), str(path), "--key", key]
        cwd = standalone_dir
    else:
        command = [sys.executable, "-m", "audit_app.verifier", str(path), "--key", key]
        cwd = ROOT
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def test_a_record_is_verified_offline_with_the_public_key_alone(setup, tmp_path):
    app, org, api, token = setup
    some_records(api, token)
    seal(app, org)
    checkpoint = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    assert checkpoint["origin"] == f"audit.test/{org.id}"
    assert checkpoint["treeSize"] >= 5
    assert checkpoint["checkpoint"].startswith(f"audit.test/{org.id}\n{checkpoint['treeSize']}\n")
    key = checkpoint["publicKey"]
    record = newest(api, token, path="/api/v1/workspaces")[-1]
    answer = api.get(f"/api/v1/audit-logs/{record['id']}/proof", token=token)
    assert answer.status_code == 200, answer.get_json()
    proof = answer.get_json()
    assert proof["record"]["_id"] == {"$oid": record["id"]}
    assert proof["treeSize"] == checkpoint["treeSize"]
    assert 0 <= proof["leafIndex"] < proof["treeSize"]
    path = tmp_path / "record.proof.json"
    path.write_text(json.dumps(proof))
    done = run_verifier(path, key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"record {record['id']} of organization {org.id}" in done.stdout
    alone = tmp_path / "auditor"
    alone.mkdir()
    done = run_verifier(path, key, standalone_dir=alone)
    assert done.returncode == 0, done.stdout + done.stderr
    # the C2SP tlog-proof text of the same proof
    text = api.get(
        f"/api/v1/audit-logs/{record['id']}/proof",
        token=token,
        query_string={"format": "tlog-proof"},
    )
    assert text.status_code == 200
    body = text.get_data(as_text=True)
    assert body.startswith(f"c2sp.org/tlog-proof@v1\nindex {proof['leafIndex']}\n")
    assert body == proof["proof"]


def test_an_edited_reordered_or_foreign_record_fails_the_offline_verifier(setup, tmp_path):
    app, org, api, token = setup
    some_records(api, token, 6)
    seal(app, org)
    key = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()["publicKey"]
    items = newest(api, token, path="/api/v1/workspaces")
    first = api.get(f"/api/v1/audit-logs/{items[0]['id']}/proof", token=token).get_json()
    second = api.get(f"/api/v1/audit-logs/{items[1]['id']}/proof", token=token).get_json()

    def refused(document, why):
        path = tmp_path / f"{why}.json"
        path.write_text(json.dumps(document))
        done = run_verifier(path, key)
        assert done.returncode == 1, (why, done.stdout, done.stderr)
        assert done.stdout.startswith("NOT VERIFIED"), done.stdout

    edited = json.loads(json.dumps(first))
    edited["record"]["statusCode"] = {"$numberInt": "500"}
    refused(edited, "a value changed")
    retyped = json.loads(json.dumps(first))
    retyped["record"]["statusCode"] = {"$numberLong": retyped["record"]["statusCode"]["$numberInt"]}
    refused(retyped, "its BSON type changed")
    swapped = dict(first, record=second["record"])
    refused(swapped, "another record under this proof")
    moved = dict(first, proof=first["proof"].replace(f"index {first['leafIndex']}\n", "index 0\n"))
    refused(moved, "another place in the log")
    other_key = sealing.Notary.from_settings("audit.test", "not the key", None)
    forged_note = other_key.sign(
        org.id, first["treeSize"], base64.b64decode(first["checkpoint"].split("\n")[2])
    )
    refused(dict(first, proof=first["proof"].replace(first["checkpoint"], forged_note)), "forged")


def test_the_database_holder_cannot_make_an_edited_record_verify(setup, tmp_path):
    """Edit a sealed record in the database, and the tiles too: the proof served then fails,
    because the checkpoint's root is signed with a key the database does not hold."""
    app, org, api, token = setup
    some_records(api, token, 3)
    seal(app, org)
    key = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()["publicKey"]
    target = newest(api, token, path="/api/v1/workspaces")[0]
    with app.app_context():
        db = get_audit_db()
        db.audit_logs.update_one({"_id": ObjectId(target["id"])}, {"$set": {"statusCode": 204}})
        # ... and rewrite the leaf in its tile as the edited record hashes
        proof = api.get(f"/api/v1/audit-logs/{target['id']}/proof", token=token).get_json()
        edited = db.audit_logs.find_one({"_id": ObjectId(target["id"])})
        tiles = merkle.Tiles(db, org.id)
        index = proof["leafIndex"]
        tile = tiles.fetch([(0, index >> 8)])[(0, index >> 8)]
        leaf = merkle.leaf_hash(merkle.record_leaf(edited))
        position = (index & 255) * 32
        db[merkle.TILES].update_one(
            {"_id": merkle.tile_id(org.id, 0, index >> 8)},
            {"$set": {"hashes": tile[:position] + leaf + tile[position + 32 :]}},
        )
    served = api.get(f"/api/v1/audit-logs/{target['id']}/proof", token=token).get_json()
    assert served["record"]["statusCode"] == {"$numberInt": "204"}
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(served))
    done = run_verifier(path, key)
    assert done.returncode == 1 and "does not lead to the root" in done.stdout, done.stdout
    # and verify names the rewritten tiles against the anchored checkpoint
    with app.app_context():
        report = sealing.verify(org.id)
    kinds = {problem["type"] for problem in report.as_dict()["chainProblems"]}
    assert "logRewritten" in kinds, report.as_dict()


def test_a_record_not_yet_sealed_says_when_it_will_be_and_a_stranger_sees_nothing(setup):
    app, org, api, token = setup
    some_records(api, token, 2)
    record = newest(api, token)[0]
    answer = api.get(f"/api/v1/audit-logs/{record['id']}/proof", token=token)
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["code"] == "not_yet_in_log" and error["availableAfter"]
    assert "requestId" in error
    seal(app, org)
    assert api.get(f"/api/v1/audit-logs/{record['id']}/proof", token=token).status_code == 200
    # another organization's admin: no proof, no checkpoint of this organization
    other = make_org(app, "Stranger")
    stranger = api.token(other.owner)
    assert api.get(f"/api/v1/audit-logs/{record['id']}/proof", token=stranger).status_code == 404
    theirs = api.get("/api/v1/audit-logs/checkpoint", token=stranger).get_json()
    assert theirs["origin"] == f"audit.test/{other.id}" and theirs["treeSize"] == 0
    # a member without viewAuditLog
    member = api.token(org.member)
    assert api.get(f"/api/v1/audit-logs/{record['id']}/proof", token=member).status_code == 403
    assert api.get("/api/v1/audit-logs/checkpoint", token=member).status_code == 403
    # bad parameters name the field
    for query, field in (({"treeSize": "x"}, "treeSize"), ({"format": "xml"}, "format")):
        bad = api.get(f"/api/v1/audit-logs/{record['id']}/proof", token=token, query_string=query)
        assert bad.status_code == 400 and bad.get_json()["error"]["field"] == field
    bad = api.get("/api/v1/audit-logs/consistency", token=token)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "from"


def test_consistency_between_seals_and_an_older_checkpoint_proof(setup):
    app, org, api, token = setup
    some_records(api, token, 3)
    seal(app, org)
    first = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    some_records(api, token, 4)
    seal(app, org)
    second = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    assert second["treeSize"] > first["treeSize"]
    answer = api.get(
        "/api/v1/audit-logs/consistency",
        token=token,
        query_string={"from": first["treeSize"], "to": second["treeSize"]},
    ).get_json()
    from audit_app import verifier

    verifier.verify_consistency(
        first["treeSize"],
        second["treeSize"],
        verifier.b64hashes(answer["proof"]),
        base64.b64decode(first["rootHash"]),
        base64.b64decode(second["rootHash"]),
    )
    # a proof against the older checkpoint, by its size
    record = newest(api, token, path="/api/v1/workspaces")[-1]
    old = api.get(
        f"/api/v1/audit-logs/{record['id']}/proof",
        token=token,
        query_string={"treeSize": first["treeSize"]},
    ).get_json()
    assert old["treeSize"] == first["treeSize"] and old["checkpoint"] == first["checkpoint"]
    newer = newest(api, token, path="/api/v1/workspaces")[0]
    late = api.get(
        f"/api/v1/audit-logs/{newer['id']}/proof",
        token=token,
        query_string={"treeSize": first["treeSize"]},
    )
    assert late.status_code == 409, late.get_json()
    assert late.get_json()["error"]["field"] == "treeSize", late.get_json()
    # every checkpoint is anchored outside the database, in order
    with app.app_context():
        anchored = sealing.anchor().checkpoints(org.id)
    sizes = [entry["treeSize"] for entry in anchored]
    assert sizes == sorted(sizes) and sizes[-1] == second["treeSize"]
    assert first["treeSize"] in sizes


def test_a_new_checkpoint_reaches_the_log_and_an_idle_log_makes_no_more(setup):
    app, org, api, token = setup
    some_records(api, token, 2)
    seal(app, org)
    events = newest(api, token, q="action:auditLog.checkpointed")
    assert len(events) == 1
    with app.app_context():
        detail = get_audit_db().audit_logs.find_one({"_id": ObjectId(events[0]["id"])})
    assert detail["request"]["checkpoint"].startswith(f"audit.test/{org.id}\n")
    assert detail["authType"] == "cli"
    # the next seal takes the checkpoint record (and the list requests): a new checkpoint
    seal(app, org)
    # then nothing but checkpoint records: no record for that one, and no growth after
    with app.app_context():
        before = get_audit_db().audit_logs.count_documents({"organizationId": org.id})
        seal(app, org)
        seal(app, org)
        after = get_audit_db().audit_logs.count_documents({"organizationId": org.id})
    assert after - before <= 1


def test_retention_keeps_the_leaves_so_kept_records_still_verify(make_app, tmp_path, mongo):
    from audit_app import verifier
    from audit_app.audit.integrity.retention import purge_all

    app = make_app(**SEALING, AUDIT_RETENTION_MIN_DAYS=1)
    org = make_org(app, "Retained")
    api = Api(app.test_client())
    token = api.token(org.owner)
    some_records(api, token, 3)
    with app.app_context():
        db = get_audit_db()
        old_ids = [r["_id"] for r in db.audit_logs.find({"organizationId": org.id})]
        # make them old: stored (and received) long ago, before they are sealed
        long_ago = datetime.now(UTC) - timedelta(days=500)
        for index, record_id in enumerate(old_ids):
            stamp = long_ago + timedelta(seconds=index)
            new_id = ObjectId.from_datetime(stamp)
            doc = db.audit_logs.find_one({"_id": record_id})
            db.audit_logs.delete_one({"_id": record_id})
            doc.update(_id=new_id, storedAt=stamp, createdAt=stamp)
            db.audit_logs.insert_one(doc)
    seal(app, org)
    some_records(api, token, 2)
    seal(app, org)
    before = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    kept = newest(api, token, path="/api/v1/workspaces")[0]
    with app.app_context():
        purged = purge_all(app, datetime.now(UTC), only=org.id, by="test")
    assert purged and purged[0].deleted >= 3
    with app.app_context():
        gone = ObjectId.from_datetime(long_ago)
        any_gone = get_audit_db().audit_logs.find_one(
            {
                "_id": {"$lte": ObjectId.from_datetime(long_ago + timedelta(seconds=5))},
                "organizationId": org.id,
            }
        )
    assert any_gone is None
    answer = api.get(f"/api/v1/audit-logs/{gone}/proof", token=token)
    assert answer.status_code == 410, answer.get_json()
    assert answer.get_json()["error"]["purgedBefore"]
    proof = api.get(f"/api/v1/audit-logs/{kept['id']}/proof", token=token).get_json()
    verifier.verify_record_proof(proof, verifier.VerifierKey.parse(before["publicKey"]))
    some_records(api, token, 1)
    seal(app, org)
    after = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    consistency = api.get(
        "/api/v1/audit-logs/consistency",
        token=token,
        query_string={"from": before["treeSize"], "to": after["treeSize"]},
    ).get_json()
    verifier.verify_consistency(
        before["treeSize"],
        after["treeSize"],
        verifier.b64hashes(consistency["proof"]),
        base64.b64decode(before["rootHash"]),
        base64.b64decode(after["rootHash"]),
    )


def test_a_record_inserted_into_a_sealed_window_never_enters_the_tree(setup):
    app, org, api, token = setup
    some_records(api, token, 2)
    seal(app, org)
    with app.app_context():
        db = get_audit_db()
        sealed = db.audit_logs.find_one({"organizationId": org.id})
        forged = dict(sealed, _id=ObjectId(), statusCode=201)
        db.audit_logs.insert_one(forged)
    some_records(api, token, 1)
    seal(app, org)  # the forged record's window is sealed already: it is not a leaf
    answer = api.get(f"/api/v1/audit-logs/{forged['_id']}/proof", token=token)
    assert answer.status_code == 409, answer.get_json()


# The witness ------------------------------------------------------------------------------


@pytest.fixture
def served(make_app):
    app = make_app(**SEALING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def witness(app, url, org, state, token, *extra):
    runner = app.test_cli_runner()
    return runner.invoke(
        args=[
            "witness",
            "--url",
            url,
            "--organization",
            str(org.id),
            "--state",
            str(state),
            *extra,
        ],
        env={"AUDIT_WITNESS_TOKEN": token},
    )


def test_a_witness_accepts_growth_and_catches_a_rewritten_history(served, tmp_path):
    app, url = served
    org = make_org(app, "Witnessed")
    api = Api(app.test_client())
    token = api.token(org.owner)
    state = tmp_path / "witness.json"
    some_records(api, token, 3)
    seal(app, org)
    done = witness(app, url, org, state, token)
    assert done.exit_code == 0, done.output
    assert "first checkpoint seen" in done.output
    first = json.loads(state.read_text())
    some_records(api, token, 3)
    seal(app, org)
    done = witness(app, url, org, state, token)
    assert done.exit_code == 0, done.output
    assert f"extends tree size {first['treeSize']}" in done.output
    kept = json.loads(state.read_text())

    # the operator (who holds the key) rewrites history: one early record edited, the tree
    # rebuilt from the records as they now are, and a checkpoint signed for it
    with app.app_context():
        db = get_audit_db()
        notary = sealing.notary()
        leaves = [
            merkle.leaf_hash(merkle.record_leaf(r))
            for r in db.audit_logs.find({"organizationId": org.id}).sort(
                [("storedAt", 1), ("_id", 1)]
            )
        ][: kept["treeSize"] + 2]
        leaves[1] = merkle.leaf_hash(b"an edited record")
        db[merkle.TILES].delete_many({"organizationId": org.id})
        tiles = merkle.Tiles(db, org.id)
        merkle.append(tiles, 0, leaves)
        state_doc = merkle.TreeState(len(leaves), 10_000, merkle.root(tiles, len(leaves)))
        db[merkle.TREES].update_one(
            {"organizationId": org.id},
            {
                "$set": {
                    "size": state_doc.size,
                    "rootHash": base64.b64encode(state_doc.root).decode(),
                }
            },
        )
        merkle.publish(db, org.id, notary, state_doc, datetime.now(UTC))
    done = witness(app, url, org, state, token)
    assert done.exit_code == 1, done.output
    assert "FORK" in done.output and "does not extend" in done.output
    assert json.loads(state.read_text()) == kept  # the state is left as it was

    # a fork at the same size: the operator shows a different root for the size it saw
    with app.app_context():
        db = get_audit_db()
        db[merkle.CHECKPOINTS].delete_many(
            {"organizationId": org.id, "treeSize": {"$gte": kept["treeSize"]}}
        )
        fake = merkle.TreeState(kept["treeSize"], 1, merkle.leaf_hash(b"another root"))
        merkle.publish(db, org.id, sealing.notary(), fake, datetime.now(UTC))
    done = witness(app, url, org, state, token)
    assert done.exit_code == 1 and "FORK: two different roots" in done.output, done.output

    # a truncated tail: the newest checkpoint is for a smaller tree
    with app.app_context():
        db = get_audit_db()
        db[merkle.CHECKPOINTS].delete_many(
            {"organizationId": org.id, "treeSize": {"$gte": first["treeSize"]}}
        )
        small = merkle.TreeState(first["treeSize"] - 1, 1, merkle.leaf_hash(b"small"))
        merkle.publish(db, org.id, sealing.notary(), small, datetime.now(UTC))
    done = witness(app, url, org, state, token, "--json")
    assert done.exit_code == 1, done.output
    assert '"code": "rollback"' in done.output


def test_a_witness_refuses_a_checkpoint_not_signed_by_the_pinned_key(served, tmp_path):
    app, url = served
    org = make_org(app, "Pinned")
    api = Api(app.test_client())
    token = api.token(org.owner)
    some_records(api, token, 2)
    seal(app, org)
    stranger = sealing.Notary.from_settings("audit.test", "someone else's key", None)
    done = witness(app, url, org, tmp_path / "s.json", token, "--key", str(stranger.verifier_key))
    assert done.exit_code == 1 and "not signed by the key" in done.output, done.output
    assert not (tmp_path / "s.json").exists()
    done = witness(app, url, org, tmp_path / "s.json", "")
    assert done.exit_code == 2, done.output


def test_the_tree_takes_in_windows_sealed_before_it_and_stops_at_a_changed_record(
    setup, tmp_path, caplog
):
    """An installation upgraded from before the verifiable log: its digests have no
    ``treeStart``; the first seal appends their records. A record changed since its window
    was sealed stops the tree there (and verify names it), never becoming a leaf."""
    from audit_app import verifier

    app, org, api, token = setup
    some_records(api, token, 3)
    with pytest.MonkeyPatch.context() as before:
        before.setattr(sealing, "notary", lambda app=None: None)
        seal(app, org)
    with app.app_context():
        db = get_audit_db()
        db.audit_digests.update_many({"organizationId": org.id}, {"$unset": {"treeStart": ""}})
        assert merkle.tree_state(db, org.id).size == 0
    seal(app, org)
    first = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    assert first["treeSize"] >= 3
    oldest = newest(api, token, path="/api/v1/workspaces")[-1]
    proof = api.get(f"/api/v1/audit-logs/{oldest['id']}/proof", token=token).get_json()
    verifier.verify_record_proof(proof, verifier.VerifierKey.parse(first["publicKey"]))

    some_records(api, token, 2)
    with pytest.MonkeyPatch.context() as lagging:
        lagging.setattr(sealing, "notary", lambda app=None: None)
        seal(app, org)
    changed = newest(api, token, path="/api/v1/workspaces")[0]
    with app.app_context():
        get_audit_db().audit_logs.update_one(
            {"_id": ObjectId(changed["id"])}, {"$set": {"statusCode": 299}}
        )
    caplog.clear()
    seal(app, org)
    assert "did not grow" in caplog.text and changed["id"] in caplog.text
    after = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    assert after["treeSize"] == first["treeSize"]
    assert api.get(f"/api/v1/audit-logs/{changed['id']}/proof", token=token).status_code == 409


def test_the_integrity_page_and_api_report_the_verifiable_log(setup):
    app, org, api, token = setup
    empty = api.get("/api/v1/audit-logs/integrity", token=token).get_json()["verifiableLog"]
    assert empty["treeSize"] == 0 and empty["checkpointAt"] is None
    some_records(api, token, 3)
    seal(app, org)
    checkpoint = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    reported = api.get("/api/v1/audit-logs/integrity", token=token).get_json()["verifiableLog"]
    assert reported["treeSize"] == checkpoint["treeSize"] > 0
    assert reported["rootHash"] == checkpoint["rootHash"]
    assert reported["publicKey"] == checkpoint["publicKey"]
    from .test_web_session import login

    web = app.test_client()
    assert login(web, org.owner).status_code in (302, 303)
    page = web.get("/organization/audit-logs/integrity").get_data(as_text=True)
    assert f"{checkpoint['treeSize']} record(s) in the signed tree" in page
    assert checkpoint["publicKey"] in page


@pytest.mark.parametrize("sizes", [[300] * 40, [100, 9000, 50, 200_000, 80] * 6, [5000] * 3])
def test_the_last_anchored_checkpoints_are_read_from_the_file_s_end(tmp_path, sizes):
    """A seal reads the last anchored checkpoint and a verification the last 24 (or 1,000),
    from the end of a file that grows by a line (with its timestamp) each seal: the same
    entries as the whole file's last ones, whatever the lines' lengths, a torn line too."""
    from audit_app.audit.integrity.anchor import Anchor

    anchor = Anchor(str(tmp_path / "anchor"))
    org = ObjectId()
    for size, length in enumerate(sizes, start=1):
        stamp = {"authority": "https://tsa.example/", "genTime": "x", "token": "A" * length}
        anchor.append_checkpoint(org, size, "cm9vdA==", f"note {size}\n", stamp)
    with open(anchor.checkpoints_path(org), "a") as handle:
        handle.write('{"treeSize": 999, "checkpoint": "torn')  # a crash mid-line
    whole = anchor.checkpoints(org)
    assert [e["treeSize"] for e in whole] == list(range(1, len(sizes) + 1))
    for last in (1, 2, 24, 1000):
        assert anchor.checkpoints(org, last=last) == whole[-last:]
    assert anchor.checkpoints(ObjectId(), last=1) == []  # no file yet


def test_a_seal_reads_the_anchored_checkpoints_tail_not_the_whole_file(tmp_path, monkeypatch):
    from audit_app.audit.integrity import anchor as anchor_module

    anchor = anchor_module.Anchor(str(tmp_path / "anchor"))
    org = ObjectId()
    for size in range(1, 200):
        anchor.append_checkpoint(org, size, "cm9vdA==", f"note {size}\n", {"token": "A" * 1500})
    read = []
    entries = anchor_module._entries
    monkeypatch.setattr(
        anchor_module, "_entries", lambda path, tail=None: read.append(tail) or entries(path, tail)
    )
    assert anchor.checkpoints(org, last=1)[0]["treeSize"] == 199
    assert read == [anchor_module.CHECKPOINT_LINE_GUESS]  # one read of 4 KB of ~330 KB
