"""Fixtures: an app on an injected mongomock client, its clients, and an ``api`` helper."""

from __future__ import annotations

import mongomock
import pytest

from audit_app import create_app
from audit_app.db import stores

from .factories import Api, make_org
from .streams_receivers import HttpReceiver

TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256-and-hs512-0123456789abcdef"


@pytest.fixture
def mongo():
    return mongomock.MongoClient(tz_aware=True)


@pytest.fixture
def make_app(tmp_path, mongo):
    """Build an app with overrides; every app of a test shares the same mongomock client."""
    built = []

    def build(**overrides):
        config = {
            "TESTING": True,
            "SECRET_KEY": TEST_SECRET,
            "MONGO_CLIENT": mongo,
            "PASSWORD_HASH_PROFILE": "fast",
            "AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
            "AUDIT_REPLAY_INTERVAL": 0,
            "AUDIT_STREAM_INTERVAL": 0,  # stream tests deliver when they say so
            "AUDIT_PURGE_INTERVAL": 0,  # retention tests purge when they say so
            # and seal when they say so: a test that writes a history (records stored hours
            # ago) while the background sealer verifies half of it gets a true failure
            "AUDIT_SEAL_IN_BACKGROUND": False,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "EMBEDDED_STORE_DIR": str(tmp_path / "store"),
            "RATELIMIT_STORAGE_URI": "memory://",  # the shared storages have their own tests
        }
        config.update(overrides)
        app = create_app(config)
        built.append(app)
        return app

    yield build
    for app in built:
        close_app(app)


def close_app(app) -> None:
    """Stop what an app runs in the background (its threads hold connections of their own,
    and a journal's fold wakes five times a second) and close what it holds open."""
    from audit_app.audit.capture.hooks import WRITER_KEY
    from audit_app.background import EXTENSION_KEY

    runner = app.extensions.get(EXTENSION_KEY)
    if runner is not None:
        runner.stop()
    writer = app.extensions.get(WRITER_KEY)
    if writer is not None:
        writer.close()
    for store in set(stores(app).values()):
        store.close()


@pytest.fixture
def embedded(make_app, tmp_path):
    """Builds an app on the embedded store, in its default write mode (the journal)."""

    def build(**overrides):
        config = {
            "MONGO_CLIENT": None,
            "MONGO_URI": None,
            "EMBEDDED_STORE_DIR": str(tmp_path / "store"),
            "AUDIT_JOURNAL_DIR": str(tmp_path / "journal"),
        }
        return make_app(**{**config, **overrides})

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def db(app, mongo):
    return mongo["audit_app"]


@pytest.fixture
def api(client):
    return Api(client)


@pytest.fixture
def receiver():
    """A webhook receiver on 127.0.0.1 that records what it is sent (log streams)."""
    made = HttpReceiver()
    yield made
    made.stop()


@pytest.fixture
def bound_key(api, org):
    """The secret of an Admin API key bound to the organization's first workspace."""
    return api.post(
        "/api/v1/api-keys",
        as_=org.owner,
        json={
            "name": "ws1",
            "roleId": str(org.roles["admin"]["_id"]),
            "workspaceId": str(org.workspace["_id"]),
        },
    ).get_json()["key"]


@pytest.fixture
def org(app):
    """An organization with an owner, an admin and a member, a workspace, and an API key."""
    return make_org(app, "Acme")


@pytest.fixture
def other_org(app):
    return make_org(app, "Globex")


@pytest.fixture
def server():
    """A scripted MongoDB (mockupdb) on 127.0.0.1 for the real driver: tests/wire.py."""
    from .wire import ScriptedServer

    scripted = ScriptedServer().start()
    yield scripted
    scripted.stop()
