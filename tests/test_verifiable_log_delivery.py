"""The verifiable log leaving the installation: each new checkpoint delivered by the
organization's audit streams (a SIEM keeps a copy out of our reach), and ``migrate-store``
carrying the tiles, the tree and the checkpoints, so proofs and witnesses carry on against
the target with the same public key.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime

import mongomock
import pytest
from werkzeug.serving import make_server

from audit_app import verifier
from audit_app.audit.capture.hooks import store_journaled
from audit_app.audit.integrity import merkle, sealing
from audit_app.db import get_audit_db, get_db, stores
from audit_app.streams import delivery

from .factories import Api, make_org
from .streams_receivers import HttpReceiver
from .test_verifiable_log import SEALING, seal, seal_up_to_now, some_records  # noqa: F401 (a fixture)

# the settings, the clock and the seal of tests/test_verifiable_log.py


# Streams ----------------------------------------------------------------------------------


def deliver(app):
    with app.app_context():
        get_db().audit_streams.update_many({}, {"$set": {"nextAttemptAt": datetime.now(UTC)}})
    return delivery.deliver_due(app, "test-deliverer")


def stream_to(api, org, receiver: HttpReceiver, **filters):
    body = {"name": "SIEM", "destination": {"type": "webhook", "url": receiver.url}}
    if filters:
        body["filters"] = filters
    answer = api.post("/api/v1/audit-streams", as_=org.admin, json=body)
    assert answer.status_code == 201, answer.get_json()
    receiver.secret = answer.get_json()["secret"]
    return answer.get_json()


@pytest.fixture
def receivers():
    made = [HttpReceiver(), HttpReceiver()]
    yield made
    for receiver in made:
        receiver.stop()


def test_a_stream_delivers_each_new_checkpoint_and_a_filter_keeps_it_out(make_app, receivers):
    app = make_app(**SEALING, AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)
    org = make_org(app, "Streamed")
    api = Api(app.test_client())
    every, only_errors = receivers
    stream_to(api, org, every)
    stream_to(api, org, only_errors, q="status:4xx")
    token = api.token(org.owner)
    some_records(api, token, 3)
    api.get("/api/v1/workspaces/nope", token=token)  # one 4xx for the filtered stream
    seal(app, org)
    checkpoint = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    assert checkpoint["treeSize"] >= 4
    with app.app_context():
        store_journaled()
    deliver(app)
    delivered = [e for e in every.events() if e.get("action") == merkle.CHECKPOINT_ACTION]
    assert len(delivered) == 1, [e.get("action") for e in every.events()]
    assert all(every.verify(request) for request in every.requests)  # signed by the stream
    event = json.dumps(delivered[0])
    # the signed note itself, verifiable with the published key by whoever holds the copy
    note = checkpoint["checkpoint"]
    assert json.dumps(note)[1:-1] in event, event
    key = verifier.VerifierKey.parse(checkpoint["publicKey"])
    copied = verifier.verified_checkpoint(note, key, f"audit.test/{org.id}")
    assert copied.size == checkpoint["treeSize"]
    assert base64.b64encode(copied.root).decode() == checkpoint["rootHash"]
    # the stream filtered to 4xx gets its 4xx and never the checkpoint
    actions = [e.get("action") for e in only_errors.events()]
    assert actions and merkle.CHECKPOINT_ACTION not in actions, actions


# migrate-store ----------------------------------------------------------------------------


@pytest.fixture
def serve():
    servers = []

    def start(app) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


def witness(app, url, org, state, token):
    return app.test_cli_runner().invoke(
        args=["witness", "--url", url, "--organization", str(org.id), "--state", str(state)],
        env={"AUDIT_WITNESS_TOKEN": token},
    )


def test_proofs_and_a_witness_carry_on_after_migrate_store(make_app, tmp_path, serve):
    anchor = str(tmp_path / "anchor")
    source = make_app(
        **SEALING,
        MONGO_CLIENT=None,
        MONGO_URI=None,
        EMBEDDED_STORE_DIR=str(tmp_path / "source"),
        AUDIT_ANCHOR_DIR=anchor,
    )
    org = make_org(source, "Moving")
    api = Api(source.test_client())
    token = api.token(org.owner)
    some_records(api, token, 4)
    seal(source, org)
    before = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    record = api.get(
        "/api/v1/audit-logs", token=token, query_string={"path": "/api/v1/workspaces"}
    ).get_json()["items"][-1]
    state = tmp_path / "witness.json"
    done = witness(source, serve(source), org, state, token)
    assert done.exit_code == 0 and "first checkpoint seen" in done.output, done.output

    target = mongomock.MongoClient(tz_aware=True)
    source.config["MIGRATE_TARGET_CLIENT"] = target
    moved = source.test_cli_runner().invoke(
        args=["migrate-store", "--to", "mongomock://target", "--json"]
    )
    assert moved.exit_code == 0, moved.output
    copied = json.loads(moved.output)["collections"]
    for name in (merkle.TILES, merkle.TREES, merkle.CHECKPOINTS):
        assert copied[name]["copied"] >= 1, copied
    for store in set(stores(source).values()):
        store.close()

    moved_app = make_app(**SEALING, MONGO_CLIENT=target, AUDIT_ANCHOR_DIR=anchor)
    api = Api(moved_app.test_client())
    # the same record's proof, served by the target, verifies with the key published before
    proof = api.get(f"/api/v1/audit-logs/{record['id']}/proof", token=token).get_json()
    assert proof["checkpoint"] == before["checkpoint"], proof
    proved = verifier.verify_record_proof(proof, verifier.VerifierKey.parse(before["publicKey"]))
    assert proved.checkpoint.size == before["treeSize"]
    # the target grows the same tree: its next checkpoint extends the one witnessed before
    some_records(api, token, 3)
    seal(moved_app, org)
    after = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    assert after["treeSize"] > before["treeSize"] and after["publicKey"] == before["publicKey"]
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
    done = witness(moved_app, serve(moved_app), org, state, token)
    assert done.exit_code == 0, done.output
    assert f"extends tree size {before['treeSize']}" in done.output, done.output
    with moved_app.app_context():
        report = sealing.verify(org.id).as_dict()
        assert report["ok"], report
        assert get_audit_db()[merkle.TREES].count_documents({"organizationId": org.id}) == 1
