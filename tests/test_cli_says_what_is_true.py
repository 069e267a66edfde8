"""The operator's CLI says what is true (issue #26, item 10): nothing verified is not an OK,
an impossible range is a usage error, a source that does not exist is not an empty store,
every command exits 2 on bad usage and 1 on failure, a MongoDB that is down is one clear
line, and seeding the demo prints no limiter noise."""

from __future__ import annotations

import json
import logging

import pytest

from audit_app import create_app
from audit_app.db import Store, stores

from .conftest import TEST_SECRET
from .factories import Api, make_org, settled


def test_verify_with_nothing_sealed_says_so_and_fails(make_app, tmp_path):
    app = make_app(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(tmp_path / "s"))
    org = make_org(app, "Fresh")
    api = Api(app.test_client())
    for _ in range(3):
        api.get("/api/v1/organization", as_=org.admin)
    settled(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["verify", "--organization", str(org.id)])
    assert result.exit_code == 1, result.output
    assert "NOTHING VERIFIED" in result.output and "OK" not in result.output
    as_json = runner.invoke(args=["verify", "--organization", str(org.id), "--json"])
    payload = json.loads(as_json.output)
    assert as_json.exit_code == 1 and payload["nothingSealed"] is True
    assert payload["unsealedRecords"] >= 3
    # and the pages are not told it verified
    state = api.get("/api/v1/audit-logs/integrity", as_=org.admin).get_json()
    assert state.get("state") != "verified"
    # once sealed, the same command is an OK
    assert runner.invoke(args=["seal", "--now"]).exit_code == 0
    sealed = runner.invoke(args=["verify", "--organization", str(org.id)])
    assert sealed.exit_code == 0, sealed.output
    assert "OK: every window verified" in sealed.output


def test_verify_from_after_to_is_a_usage_error(runner, org):
    result = runner.invoke(
        args=[
            "verify",
            "--organization",
            str(org.id),
            "--from",
            "2026-05-02",
            "--to",
            "2026-05-01",
        ]
    )
    assert result.exit_code == 2
    assert "--from" in result.output and "after --to" in result.output


def test_migrate_store_from_a_folder_that_does_not_exist_is_refused(runner, tmp_path):
    missing = tmp_path / "no-such-store"
    result = runner.invoke(
        args=[
            "migrate-store",
            "--from",
            f"embedded:{missing}",
            "--to",
            f"embedded:{tmp_path / 't'}",
        ]
    )
    assert result.exit_code == 2, result.output
    assert "--from" in result.output and "does not exist" in result.output
    assert not missing.exists()  # nothing was made there


def _commands(app) -> list[str]:
    return sorted(name for name in app.cli.list_commands(None) if name not in ("routes", "shell"))


def test_every_command_exits_2_on_bad_usage(app):
    runner = app.test_cli_runner()
    names = _commands(app)
    assert {"verify", "seal", "export", "migrate-store", "fold-journal"} <= set(names)
    for name in names:
        result = runner.invoke(args=[name, "--no-such-option"])
        assert result.exit_code == 2, (name, result.output)
        assert "No such option" in result.output, name


def test_the_readme_documents_the_exit_codes():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "Exit codes" in readme
    assert "`2`" in readme and "`1`" in readme


@pytest.fixture
def down(tmp_path):
    """Builds an app whose MongoDB cannot be reached (nothing listens on port 1), in the
    test itself, so that what building it logs is the test's to see."""
    built = []

    def build():
        built.append(_down_app(tmp_path))
        return built[-1]

    yield build
    for app in built:
        for store in set(stores(app).values()):
            store.close()


def _down_app(tmp_path):
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": TEST_SECRET,
            "MONGO_URI": "mongodb://ops:hunter2@127.0.0.1:1/auditdb?serverSelectionTimeoutMS=300",
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
            "AUDIT_WRITE_TIMEOUT_MS": 300,
            "PASSWORD_HASH_PROFILE": "fast",
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )


def test_a_mongodb_that_is_down_is_one_clear_error_and_no_error_line_before(down, caplog):
    caplog.set_level(logging.INFO)
    result = (
        down()
        .test_cli_runner()
        .invoke(
            args=["create-org", "X", "--owner-email", "x@x.example", "--owner-password", "pw123456"]
        )
    )
    assert result.exit_code == 1
    assert "The store is unavailable: 127.0.0.1:1" in result.output
    assert "Topology" not in result.output and "configured timeouts" not in result.output
    assert "hunter2" not in result.output
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def test_the_start_up_line_names_host_and_port_never_the_credentials():
    store = Store(
        "mongodb://ops:hunter2@db1,db2:27018/audit?replicaSet=rs0", db_name=None, embedded_dir=""
    )
    assert store.describe() == "MongoDB at mongodb://db1:27017,db2:27018 (database audit)"
    srv = Store(
        "mongodb+srv://ops:hunter2@cluster.example.net/audit", db_name=None, embedded_dir=""
    )
    assert srv.describe() == "MongoDB at mongodb+srv://cluster.example.net (database audit)"


def test_seeding_the_demo_prints_no_rate_limit_noise(runner, caplog):
    caplog.set_level(logging.INFO)
    result = runner.invoke(args=["seed-demo", "--requests", "300"])
    assert result.exit_code == 0, result.output
    limiter = [r.getMessage() for r in caplog.records if r.name == "flask-limiter"]
    assert limiter == []
    assert "exceeded" not in result.output
    # the limiter still speaks outside the demo
    assert logging.getLogger("flask-limiter").level in (logging.NOTSET, logging.INFO)
