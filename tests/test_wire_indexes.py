"""Indexes on MongoDB, at the wire: built by the deploy step, checked by the app.

A gunicorn worker that builds indexes over a large collection in its boot is killed by
its timeout, in a loop; so on MongoDB the app never sends ``createIndexes``, it lists the
indexes and ``/readyz`` names what is missing. ``flask ensure-indexes`` builds them and
reports a conflicting index instead of swallowing it.
"""

from __future__ import annotations

import json

import pytest

from audit_app import indexes
from audit_app.background import EXTENSION_KEY as BACKGROUND_KEY
from audit_app.db import stores

from .wire import app_on


@pytest.fixture
def build(server, tmp_path):
    built = []

    def make(**overrides):
        app = app_on(server.uri, tmp_path, AUDIT_ENSURE_INDEXES_ON_START=True, **overrides)
        built.append(app)
        return app

    yield make
    for app in built:
        for store in set(stores(app).values()):
            store.close()


def test_the_app_never_builds_indexes_on_mongodb_and_readyz_names_the_missing(
    server, build, monkeypatch
):
    monkeypatch.setattr(indexes, "RECHECK_MISSING_SECONDS", 0.0)
    app = build()
    # building the app (as every CLI command does) neither builds nor asks
    assert server.sent("createIndexes") == [] and server.sent("listIndexes") == []
    # a server's background tasks ask when they start
    app.extensions[BACKGROUND_KEY].tasks["indexes"].run()
    assert {doc["listIndexes"] for doc in server.sent("listIndexes")} >= {
        "audit_logs",
        "audit_digests",
        "accounts",
    }
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert "audit_logs.org_newest is missing" in body["checks"]["indexes"]
    assert "audit_digests.org_sequence_unique is missing" in body["checks"]["indexes"]
    assert "ensure-indexes" in body["reason"]
    assert server.sent("createIndexes") == []

    # the deploy step runs: the same app turns ready without a restart
    result = app.test_cli_runner().invoke(args=["ensure-indexes", "--json"])
    assert result.exit_code == 0, result.output
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["checks"]["indexes"] == "ok"


def test_ensure_indexes_sends_each_declared_index_with_its_options(server, build):
    app = build(AUDIT_RETENTION_DAYS=30)
    result = app.test_cli_runner().invoke(args=["ensure-indexes", "--json"])
    assert result.exit_code == 0, result.output
    sent = {
        (doc["createIndexes"], index["name"]): index
        for doc in server.sent("createIndexes")
        for index in doc["indexes"]
    }
    assert sent[("audit_digests", "org_sequence_unique")]["unique"] is True
    assert list(sent[("audit_logs", "org_status_newest")]["key"].items()) == [
        ("organizationId", 1),
        ("statusCode", 1),
        ("createdAt", -1),
        ("_id", -1),
    ]
    # what a request acted on: multikey (one key per target), the sort still the index's
    assert list(sent[("audit_logs", "org_target_newest")]["key"].items()) == [
        ("organizationId", 1),
        ("targets.id", 1),
        ("createdAt", -1),
        ("_id", -1),
    ]
    assert ("audit_logs", "ttl_createdAt") not in sent  # retention: a purge per organization
    assert ("audit_digest_chunks", "ttl_windowEnd") not in sent
    assert list(sent[("audit_digest_chunks", "org_window_end")]["key"]) == [
        "organizationId",
        "windowEnd",
    ]
    assert ("audit_logs", "org_route_newest") not in sent
    # the staff lookup's distinct organizations of a request id (it replaces requestid_newest)
    assert list(sent[("audit_logs", "requestid_org")]["key"].items()) == [
        ("requestId", 1),
        ("organizationId", 1),
    ]
    assert ("audit_logs", "requestid_newest") not in sent
    assert "org_newest" in json.loads(result.output)["audit_logs"]


def test_a_conflicting_index_is_reported_and_the_others_still_built(server, build):
    app = build()
    server.fail(
        "createIndexes",
        "audit_digests",
        code=85,
        errmsg="Index with name: org_sequence_unique already exists with different options",
    )
    result = app.test_cli_runner().invoke(args=["ensure-indexes"])
    assert result.exit_code == 1
    assert "audit_digests.org_sequence_unique" in result.output
    assert "already exists with different options" in result.output
    built = {index["name"] for doc in server.sent("createIndexes") for index in doc["indexes"]}
    assert {"org_window_unique", "org_newest", "org_digest_index_unique"} <= built


def test_an_index_with_the_right_name_but_not_unique_is_not_ready(server, build, monkeypatch):
    """A non-unique index under the unique one's name would let digest chains fork."""
    monkeypatch.setattr(indexes, "RECHECK_MISSING_SECONDS", 0.0)
    app = build()
    assert app.test_cli_runner().invoke(args=["ensure-indexes"]).exit_code == 0
    for index in server.indexes["audit_digests"]:
        if index["name"] == "org_sequence_unique":
            del index["unique"]
    app.extensions.pop(indexes.EXTENSION_KEY, None)
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["indexes"] == [
        "audit_digests.org_sequence_unique differs from its declaration"
    ]


def test_an_upgrade_without_the_target_index_is_not_ready_until_it_is_built(
    server, build, monkeypatch
):
    """Installations upgraded without running ``ensure-indexes`` would walk no index for
    ``target:``: ``/readyz`` names the missing index until the deploy step builds it."""
    monkeypatch.setattr(indexes, "RECHECK_MISSING_SECONDS", 0.0)
    app = build()
    assert app.test_cli_runner().invoke(args=["ensure-indexes"]).exit_code == 0
    server.indexes["audit_logs"] = [
        index for index in server.indexes["audit_logs"] if index["name"] != "org_target_newest"
    ]
    app.extensions.pop(indexes.EXTENSION_KEY, None)
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["indexes"] == ["audit_logs.org_target_newest is missing"]
    sent_before = len(server.sent("createIndexes"))
    assert app.test_cli_runner().invoke(args=["ensure-indexes"]).exit_code == 0
    [rebuilt] = [
        index
        for doc in server.sent("createIndexes")[sent_before:]
        for index in doc["indexes"]
        if index["name"] == "org_target_newest"
    ]
    assert list(rebuilt["key"]) == ["organizationId", "targets.id", "createdAt", "_id"]
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 200, answer.get_json()
