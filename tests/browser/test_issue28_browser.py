"""Issue #28 in a real browser: View Details of a sealed record -> "Download proof" gives
a file the offline verifier, run in a process of its own, verifies with the key the page
shows; an unsealed record's link says when it will be in the log, not a raw error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import mongomock
import pytest
from bson import ObjectId
from werkzeug.serving import make_server

from audit_app import create_app
from audit_app.audit.capture.hooks import store_journaled
from audit_app.audit.integrity import sealing
from audit_app.db import get_audit_db, get_db
from audit_app.demo import DEMO_LOGINS, seed_demo

from .conftest import log_in

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The demo organization, sealed up to now, served on a free port of 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("live28")
    app = create_app(
        {
            "SECRET_KEY": "browser-tests-secret-key-0123456789-0123456789-0123456789",
            "MONGO_CLIENT": mongomock.MongoClient(tz_aware=True),
            "PASSWORD_HASH_PROFILE": "fast",
            "AUDIT_SPOOL_DIR": str(tmp / "spool"),
            "AUDIT_ANCHOR_DIR": str(tmp / "anchor"),
            "AUDIT_REPLAY_INTERVAL": 0,
            "AUDIT_SEAL_IN_BACKGROUND": False,
            "AUDIT_SEAL_DELAY": 0,
            "AUDIT_LOG_ORIGIN": "audit.browser",
            "RATELIMIT_LOGIN": "1000 per minute",
            "INSTANCE_PATH": str(tmp),
        }
    )
    seed_demo(app, 20)
    margin = sealing.UP_TO_NOW_MARGIN
    sealing.UP_TO_NOW_MARGIN = timedelta(0)
    try:
        with app.app_context():
            store_journaled()
        sealing.seal_now(app, up_to_now=True)
    finally:
        sealing.UP_TO_NOW_MARGIN = margin
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {
        "app": app,
        "url": f"http://127.0.0.1:{server.server_port}",
        "logins": {login["role"].lower(): login for login in DEMO_LOGINS},
    }
    server.shutdown()
    thread.join(timeout=5)


def _organization_of(live, role: str) -> ObjectId:
    with live["app"].app_context():
        account = get_db().accounts.find_one({"email": live["logins"][role]["email"]})
        membership = get_db().memberships.find_one({"accountId": account["_id"]})
    return membership["organizationId"]


def test_a_sealed_records_proof_downloads_and_verifies_offline(page, live, tmp_path):
    log_in(page, live, "owner")
    organization = _organization_of(live, "owner")
    with live["app"].app_context():
        state = get_audit_db().audit_log_trees.find_one({"organizationId": organization})
        assert state and state["size"] > 0
        record = get_audit_db().audit_logs.find_one(
            {"organizationId": organization}, sort=[("storedAt", 1), ("_id", 1)]
        )
    page.goto(f"{live['url']}/organization/audit-logs/{record['_id']}")
    command = page.locator("#verifiable-log code").first.inner_text()
    key = re.search(r"--key (\S+)", command).group(1)
    assert key.startswith("audit.browser+")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download proof").click()
    download = info.value
    assert download.suggested_filename == f"audit-record-{record['_id']}.proof.json"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "audit_app.verifier", str(path), "--key", key],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"VERIFIED: record {record['_id']} of organization")
    # the same file with one value changed: the verifier refuses it
    edited = json.loads(path.read_text())
    edited["record"]["statusCode"] = {"$numberInt": "599"}
    path.write_text(json.dumps(edited))
    done = subprocess.run(
        [sys.executable, "-m", "audit_app.verifier", str(path), "--key", key],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout.startswith("NOT VERIFIED"), done.stdout


def test_an_unsealed_records_link_says_when_it_will_be_in_the_log(page, live):
    log_in(page, live, "owner")
    organization = _organization_of(live, "owner")
    with live["app"].app_context():
        store_journaled()
        # the login just now: stored after the seal
        record = get_audit_db().audit_logs.find_one(
            {"organizationId": organization}, sort=[("storedAt", -1), ("_id", -1)]
        )
    page.goto(f"{live['url']}/organization/audit-logs/{record['_id']}")
    page.get_by_role("link", name="Download proof").click()
    page.wait_for_url(re.compile(rf"/organization/audit-logs/{record['_id']}/proof$"))
    text = page.locator("main").inner_text()
    assert "not in the verifiable log yet" in text, text
    assert "by about " in text, text  # a time, shown as every time is: in the viewer's zone
    when = page.locator("main time").first.get_attribute("datetime")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", when), when
    assert "Traceback" not in text and "Internal" not in text
