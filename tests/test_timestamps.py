"""RFC 3161 timestamps of the checkpoints (``AUDIT_TSA_URL``): a real authority (OpenSSL's
``ts -reply``, tests/tsa.py) stamps each checkpoint at the seal; the token is kept with the
checkpoint, in the anchor, in the API and in every downloaded proof, and the offline verifier
checks it against the authority's root. The attackers: the database holder (who would date a
checkpoint with another's token) and an authority that fails or lies (which must never stop
a seal, nor leave a timestamp that does not hold)."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from audit_app.audit.integrity import merkle, sealing, timestamps
from audit_app.config import ConfigError
from audit_app.db import get_audit_db

from .factories import Api, make_org
from .test_verifiable_log import SEALING, newest, run_verifier, seal, some_records
from .test_web_session import login
from .tsa import Authority

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(sealing, "UP_TO_NOW_MARGIN", sealing.timedelta(0))
    monkeypatch.setattr(timestamps, "TIMEOUT", 1.0)
    monkeypatch.setattr(timestamps, "PAUSE", 0)  # each seal asks again (one test sets it)


@pytest.fixture(scope="module")
def tsa():
    authority = Authority()
    yield authority
    authority.close()


@pytest.fixture(params=["mongo", "embedded"])
def stamped(request, make_app, embedded, tsa):
    tsa.mode = "ok"
    build = make_app if request.param == "mongo" else embedded
    app = build(**SEALING, AUDIT_TSA_URL=tsa.url, AUDIT_TSA_CA_FILE=tsa.root_pem)
    org = make_org(app, "Stamped")
    api = Api(app.test_client())
    token = api.token(org.owner)
    return app, org, api, token


def verifier(path: Path, key: str, *extra: str):
    command = [sys.executable, "-m", "audit_app.verifier", str(path), "--key", key, *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)


def proof_file(api, token, tmp_path, name="record.proof.json") -> tuple[Path, dict]:
    record = newest(api, token, path="/api/v1/workspaces")[-1]
    answer = api.get(f"/api/v1/audit-logs/{record['id']}/proof", token=token)
    assert answer.status_code == 200, answer.get_json()
    path = tmp_path / name
    path.write_text(json.dumps(answer.get_json()))
    return path, answer.get_json()


def test_each_checkpoint_is_timestamped_and_an_auditor_checks_it_offline(stamped, tsa, tmp_path):
    app, org, api, token = stamped
    some_records(api, token)
    asked = tsa.requests
    seal(app, org)
    assert tsa.requests == asked + 1
    checkpoint = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    stamp = checkpoint["timestamp"]
    assert stamp["authority"] == tsa.url and stamp["genTime"].endswith("Z") and stamp["token"]
    with app.app_context():
        anchored = sealing.anchor(app).checkpoints(org.id)[-1]
    assert anchored["checkpoint"] == checkpoint["checkpoint"]
    assert anchored["timestamp"]["token"] == stamp["token"]  # outside the database too
    path, proof = proof_file(api, token, tmp_path)
    assert proof["timestamp"]["token"] == stamp["token"]
    key = checkpoint["publicKey"]
    done = verifier(path, key, "--tsa-root", tsa.root_pem)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "VERIFIED: record" in done.stdout
        and "TIMESTAMPED: the checkpoint existed by" in done.stdout
    )
    # a root that did not sign the authority: the timestamp does not verify
    done = verifier(path, key, "--tsa-root", tsa.other_root_pem)
    assert done.returncode == 1 and "TIMESTAMP NOT VERIFIED" in done.stdout, done.stdout
    # a root file that cannot be read: a usage error before anything is said verified
    done = verifier(path, key, "--tsa-root", str(tmp_path / "nope.pem"))
    assert done.returncode == 2 and "VERIFIED" not in done.stdout, done.stdout
    assert "Cannot read" in done.stderr
    # without a root the record verifies and the timestamp is said to be unchecked
    done = verifier(path, key)
    assert done.returncode == 0 and "not checked" in done.stdout, done.stdout
    # the verifier copied alone still verifies the record (rfc3161-client only for stamps)
    alone = tmp_path / "auditor"
    alone.mkdir()
    assert run_verifier(path, key, standalone_dir=alone).returncode == 0
    verified = app.test_cli_runner().invoke(
        args=["verify", "--organization", str(org.id), "--json"]
    )
    assert verified.exit_code == 0, verified.output
    # the integrity API and page say the latest checkpoint is timestamped, and by whom
    integrity = api.get("/api/v1/audit-logs/integrity", token=token).get_json()
    assert integrity["verifiableLog"]["timestamp"]["genTime"] == stamp["genTime"]
    client = app.test_client()
    login(client, org.owner)
    page = client.get("/organization/audit-logs/integrity").get_data(as_text=True)
    assert f'<span id="timestamp-authority">{tsa.url}</span>' in page


def test_the_database_holder_cannot_date_a_checkpoint_with_another_s_token(stamped, tsa, tmp_path):
    """Two checkpoints, each stamped; the attacker copies the first's token onto the second
    in the database (or in a downloaded file): the auditor's check refuses it."""
    app, org, api, token = stamped
    some_records(api, token)
    seal(app, org)
    some_records(api, token)
    seal(app, org)
    with app.app_context():
        checkpoints = get_audit_db()[merkle.CHECKPOINTS]
        first, second = checkpoints.find({"organizationId": org.id}).sort("treeSize", 1)[:2]
        checkpoints.update_one(
            {"_id": second["_id"]}, {"$set": {"timestamp.token": first["timestamp"]["token"]}}
        )
    path, proof = proof_file(api, token, tmp_path)
    assert proof["treeSize"] == second["treeSize"]
    done = verifier(path, proof["publicKey"], "--tsa-root", tsa.root_pem)
    assert done.returncode == 1, done.stdout
    assert "TIMESTAMP NOT VERIFIED: the timestamp is of another checkpoint" in done.stdout
    # a token that is not one at all
    proof["timestamp"]["token"] = "bm90IGEgdG9rZW4="
    path.write_text(json.dumps(proof))
    done = verifier(path, proof["publicKey"], "--tsa-root", tsa.root_pem)
    assert done.returncode == 1 and "not an RFC 3161 answer" in done.stdout, done.stdout
    # the file with no timestamp at all, checked with a root: not verified, said so
    del proof["timestamp"]
    path.write_text(json.dumps(proof))
    done = verifier(path, proof["publicKey"], "--tsa-root", tsa.root_pem)
    assert done.returncode == 1 and "carries no RFC 3161 timestamp" in done.stdout


def two_stamped_seals(stamped):
    """Two seals, each with its stamped checkpoint, that verify passes; and verify's call."""
    app, org, api, token = stamped
    for _ in range(2):
        some_records(api, token)
        seal(app, org)
    runner = app.test_cli_runner()
    args = ["verify", "--organization", str(org.id), "--json"]
    assert runner.invoke(args=args).exit_code == 0
    return app, org, runner, args


def test_verify_checks_the_anchored_timestamps(stamped, tsa):
    app, org, runner, args = two_stamped_seals(stamped)
    with app.app_context():
        path = sealing.anchor(app).checkpoints_path(org.id)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[-1]["timestamp"]["token"] = lines[0]["timestamp"]["token"]  # another's token
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = json.loads(runner.invoke(args=args).output)
    assert report["ok"] is False
    assert "timestampInvalid" in json.dumps(report), report


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("down", "HTTP 500"),
        ("garbage", "not an RFC 3161"),
        ("other", "of another checkpoint"),
        ("huge", "over 65536 bytes"),
        ("drip", "no whole answer within 1 s"),
        ("redirect", "redirects (307)"),
    ],
)
def test_an_authority_that_fails_or_lies_never_stops_a_seal(make_app, tsa, mode, reason, caplog):
    tsa.mode = mode
    secret_url = tsa.url.replace("http://", "http://ops:hunter2@") + "?apikey=s3cret"
    app = make_app(**SEALING, AUDIT_TSA_URL=secret_url, AUDIT_TSA_CA_FILE=tsa.root_pem)
    org = make_org(app, "Unstamped")
    api = Api(app.test_client())
    token = api.token(org.owner)
    some_records(api, token)
    with caplog.at_level(logging.WARNING, logger="audit_app.audit.integrity.timestamps"):
        seal(app, org)
    checkpoint = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    assert checkpoint["treeSize"] >= 5 and checkpoint["timestamp"] is None
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert reason in warned, warned
    assert "hunter2" not in warned and "s3cret" not in warned  # credentials stay out of logs


def test_a_replayed_answer_is_refused_by_its_nonce(stamped, tsa, caplog):
    app, org, api, token = stamped
    some_records(api, token)
    seal(app, org)
    tsa.mode = "replay"
    some_records(api, token)
    with caplog.at_level(logging.WARNING):
        seal(app, org)
    checkpoint = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()
    assert checkpoint["timestamp"] is None
    assert "another checkpoint" in caplog.text or "nonce" in caplog.text


def test_an_authority_out_of_reach_is_asked_once_per_pause(make_app, tsa, monkeypatch):
    monkeypatch.setattr(timestamps, "PAUSE", 3600)
    tsa.mode = "down"
    app = make_app(**SEALING, AUDIT_TSA_URL=tsa.url + "?once")
    api = Api(app.test_client())
    orgs = [make_org(app, f"Paused{i}") for i in range(3)]
    for org in orgs:
        some_records(api, api.token(org.owner))
    asked = tsa.requests
    with app.app_context():
        from audit_app.audit.capture.hooks import store_journaled

        store_journaled()
    sealing.seal_now(app, up_to_now=True)
    with app.app_context():
        made = get_audit_db()[merkle.CHECKPOINTS].count_documents({})
    assert made >= 3 and tsa.requests == asked + 1  # three checkpoints, one try


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"AUDIT_TSA_URL": "ftp://tsa.example/"}, "AUDIT_TSA_URL"),
        ({"AUDIT_TSA_URL": "tsa.example"}, "AUDIT_TSA_URL"),
        ({"AUDIT_TSA_URL": "https://tsa.example/", "AUDIT_TSA_CA_FILE": "/nope.pem"}, "CA_FILE"),
        ({"AUDIT_TSA_CA_FILE": "/etc/hostname"}, "AUDIT_TSA_CA_FILE is set but AUDIT_TSA_URL"),
    ],
)
def test_a_wrong_setting_is_refused_at_start_naming_it(make_app, settings, named):
    with pytest.raises(ConfigError, match=named):
        make_app(**settings)


def test_a_ca_file_that_holds_no_certificate_is_refused(make_app, tmp_path):
    path = tmp_path / "roots.pem"
    path.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"AUDIT_TSA_CA_FILE: .* holds no PEM certificate"):
        make_app(AUDIT_TSA_URL="https://tsa.example/", AUDIT_TSA_CA_FILE=str(path))


def test_an_authority_that_needs_an_account_gets_it_as_basic_authentication(make_app, tsa):
    tsa.mode = "ok"
    app = make_app(
        **SEALING, AUDIT_TSA_URL=tsa.url.replace("http://", "http://ops:p%40ss@") + "?key=s3cret"
    )
    org = make_org(app, "Account")
    api = Api(app.test_client())
    token = api.token(org.owner)
    some_records(api, token)
    seal(app, org)
    stamp = api.get("/api/v1/audit-logs/checkpoint", token=token).get_json()["timestamp"]
    assert tsa.last_authorization == "Basic " + base64.b64encode(b"ops:p@ss").decode()
    assert stamp["authority"] == tsa.url  # shown and stored without the credentials
    with app.app_context():
        stored = get_audit_db()[merkle.CHECKPOINTS].find_one({"organizationId": org.id})
        anchored = sealing.anchor(app).checkpoints_path(org.id).read_text()
    assert "p%40ss" not in json.dumps(stored, default=str) and "p%40ss" not in anchored
    assert "s3cret" not in json.dumps(stored, default=str) and "s3cret" not in anchored


@pytest.mark.parametrize("edit", ["remove", "replace"])
def test_verify_names_a_served_timestamp_removed_or_replaced_in_the_database(stamped, edit):
    """What the API and proof files serve is ``audit_checkpoints``: a database writer who
    strips a checkpoint's timestamp (its proofs lose their date) or swaps in another's is
    named by verify, though the anchor's copy is untouched."""
    app, org, runner, args = two_stamped_seals(stamped)
    with app.app_context():
        checkpoints = get_audit_db()[merkle.CHECKPOINTS]
        first, second = checkpoints.find({"organizationId": org.id}).sort("treeSize", 1)[:2]
        change = (
            {"$unset": {"timestamp": ""}}
            if edit == "remove"
            else {"$set": {"timestamp.token": first["timestamp"]["token"]}}
        )
        checkpoints.update_one({"_id": second["_id"]}, change)
    done = runner.invoke(args=args)
    report = json.loads(done.output)
    assert done.exit_code == 1 and report["ok"] is False
    assert "timestampInvalid" in done.output and f"tree size(s) {second['treeSize']}" in done.output
