"""The factory, its settings and the store it picks."""

import logging

import pytest

from audit_app import create_app
from audit_app.config import ConfigError
from audit_app.db import stores


def test_production_refuses_to_start_without_secret_key(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({"INSTANCE_PATH": str(tmp_path)})


def test_production_refuses_a_short_secret_key(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="at least 32"):
        create_app({"INSTANCE_PATH": str(tmp_path)})


def test_production_refuses_to_start_without_a_signing_key(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.delenv("AUDIT_SIGNING_KEY", raising=False)
    with pytest.raises(ConfigError, match="AUDIT_SIGNING_KEY"):
        create_app({"INSTANCE_PATH": str(tmp_path)})


def test_development_generates_a_secret_key_once_under_instance(monkeypatch, tmp_path, mongo):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("APP_ENV", raising=False)
    config = {
        "INSTANCE_PATH": str(tmp_path),
        "MONGO_CLIENT": mongo,
        "AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
    }
    first = create_app(config).config["SECRET_KEY"]
    second = create_app(config).config["SECRET_KEY"]
    assert len(first) >= 40
    assert first == second
    assert (tmp_path / "secret_key").read_text() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "name,value",
    [
        ("AUDIT_ENABLED", "maybe"),
        ("AUDIT_MAX_BODY_BYTES", "lots"),
        ("APP_ENV", "staging"),
        ("AUDIT_RETENTION_DAYS", "0"),
    ],
)
def test_malformed_settings_fail_fast_naming_the_setting(monkeypatch, tmp_path, name, value):
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        create_app({"INSTANCE_PATH": str(tmp_path)})


def test_unknown_mongo_uri_scheme_is_refused(make_app):
    with pytest.raises(ValueError, match="MONGO_URI"):
        make_app(MONGO_CLIENT=None, MONGO_URI="postgres://localhost/db")


@pytest.mark.parametrize(
    "uri,kind",
    [
        ("mongomock://localhost/audit", "mongomock"),
        ("mongodb://db.internal:27017/audit", "mongodb"),
        ("mongodb+srv://cluster.example.net/audit", "mongodb"),
        (None, "embedded"),
    ],
)
def test_store_kind_follows_mongo_uri(make_app, uri, kind, caplog):
    caplog.set_level(logging.INFO)
    app = make_app(MONGO_CLIENT=None, MONGO_URI=uri, AUDIT_ENSURE_INDEXES_ON_START=False)
    store = stores(app)["main"]
    assert store.kind == kind
    assert store.db_name == ("audit" if uri else "audit_app")
    assert any(
        "Store:" in r.message and kind.split("+")[0] in r.message.lower() for r in caplog.records
    )


def test_mongodb_client_is_lazy_and_one_per_app(make_app):
    app = make_app(
        MONGO_CLIENT=None,
        MONGO_URI="mongodb://127.0.0.1:1/audit",
        AUDIT_ENSURE_INDEXES_ON_START=False,
    )
    store = stores(app)["main"]
    assert store.client is store.client  # created once, reused by every request
    assert store.client.options.pool_options.max_pool_size > 0


def test_separate_audit_store_when_audit_uri_differs(make_app):
    app = make_app(
        MONGO_CLIENT=None,
        MONGO_URI="mongomock://localhost/platform",
        AUDIT_MONGO_URI="mongomock://localhost/auditonly",
    )
    assert stores(app)["audit"] is not stores(app)["main"]
    assert stores(app)["audit"].db_name == "auditonly"


def test_templates_and_static_come_from_the_top_level(app):
    assert app.template_folder.endswith("/templates")
    assert app.static_folder.endswith("/static")
    with app.test_client().get("/static/app.css") as answer:
        assert answer.status_code == 200
        assert b"--accent" in answer.data
