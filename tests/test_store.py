"""The embedded store (persistent, shared between processes) and readiness."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit_app.db import stores

from .factories import settled

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def embedded(make_app, tmp_path):
    def build():
        return make_app(
            MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(tmp_path / "store")
        )

    return build


def test_embedded_store_survives_an_app_restart(embedded, runner):
    first = embedded()
    result = first.test_cli_runner().invoke(
        args=[
            "create-org",
            "Durable",
            "--owner-email",
            "d@durable.example",
            "--owner-password",
            "password123",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    organization_id = json.loads(result.output)["organizationId"]
    stores(first)["main"].close()
    second = embedded()
    assert stores(second)["main"].kind == "embedded"
    answer = second.test_client().post(
        "/api/v1/auth/token", json={"email": "d@durable.example", "password": "password123"}
    )
    assert answer.status_code == 200
    assert answer.get_json()["organizationId"] == organization_id
    settled(second)
    records = stores(second)["audit"].db.audit_logs.count_documents({"path": "/api/v1/auth/token"})
    assert records == 1


@pytest.mark.slow
def test_a_cli_process_and_a_running_app_share_the_embedded_store(embedded, tmp_path):
    app = embedded()
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    env = {
        **os.environ,
        "EMBEDDED_STORE_DIR": str(tmp_path / "store"),
        "SECRET_KEY": "k" * 40,
        "AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
        "PASSWORD_HASH_PROFILE": "fast",
    }
    env.pop("MONGO_URI", None)
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "wsgi",
            "create-org",
            "Shared",
            "--owner-email",
            "s@shared.example",
            "--owner-password",
            "password123",
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    organization_id = json.loads(made.stdout)["organizationId"]
    # the already-running app sees what the other process wrote
    answer = client.post(
        "/api/v1/auth/token", json={"email": "s@shared.example", "password": "password123"}
    )
    assert answer.status_code == 200
    assert answer.get_json()["organizationId"] == organization_id
    # and the other process sees the audit record the running app just wrote
    count = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from audit_app.db import Store;"
            "db = Store(None, db_name='audit_app', embedded_dir=sys.argv[1]).db;"
            "print(db.audit_logs.count_documents({'path': '/api/v1/auth/token'}))",
            str(tmp_path / "store"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert count.stdout.strip() == "1"


def test_embedded_store_has_a_client_per_thread(embedded):
    import threading

    app = embedded()
    store = stores(app)["main"]
    seen = []
    thread = threading.Thread(target=lambda: seen.append(store.client))
    thread.start()
    thread.join()
    assert seen[0] is not store.client
    assert store.client is store.client


def test_readyz_ok_and_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"]["mainStore"] == "ok"


def test_readyz_is_503_with_a_reason_when_the_store_is_unreachable(make_app):
    app = make_app(
        MONGO_CLIENT=None,
        MONGO_URI="mongodb://127.0.0.1:9/audit",
        AUDIT_WRITE_TIMEOUT_MS=200,
        AUDIT_ENSURE_INDEXES_ON_START=False,
    )
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["status"] == "unavailable"
    assert "main store unreachable" in body["reason"]


def test_api_answers_503_json_when_the_store_is_down(make_app):
    app = make_app(
        MONGO_CLIENT=None,
        MONGO_URI="mongodb://127.0.0.1:9/audit",
        AUDIT_WRITE_TIMEOUT_MS=200,
        AUDIT_ENSURE_INDEXES_ON_START=False,
    )
    answer = app.test_client().post(
        "/api/v1/auth/token", json={"email": "a@b.example", "password": "x"}
    )
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "service_unavailable"
