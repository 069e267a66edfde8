"""``flask migrate-store``: the embedded store to MongoDB's API (mongomock here) and back.

Every document arrives equal (ids, dates, BSON types), the digests verify on the target,
a second run copies nothing, and an interrupted run continues where it stopped.
"""

from __future__ import annotations

import json

import bson
import mongomock
import pytest

from audit_app.db import get_audit_db, get_db, stores

from .factories import Api, make_org


def _everything(db) -> dict[str, list[bytes]]:
    """Each collection's documents as BSON, in _id order (byte-exact comparison)."""
    return {
        name: [bson.encode(d) for d in db[name].find({}).sort("_id", 1)]
        for name in sorted(set(db.list_collection_names()) - {"audit_leases"})
        if not name.startswith("system.")
    }


@pytest.fixture
def source(make_app, tmp_path):
    """An embedded installation with an organization, traffic and sealed digests."""
    app = make_app(
        MONGO_CLIENT=None,
        MONGO_URI=None,
        EMBEDDED_STORE_DIR=str(tmp_path / "source"),
        AUDIT_ANCHOR_DIR=str(tmp_path / "anchor"),
    )
    org = make_org(app, "Moving")
    api = Api(app.test_client())
    for index in range(12):
        api.post("/api/v1/workspaces", as_=org.admin, json={"name": f"w{index}"})
        api.get("/api/v1/audit-logs", as_=org.admin)
    runner = app.test_cli_runner()
    sealed = runner.invoke(args=["seal", "--organization", str(org.id), "--now"])
    assert sealed.exit_code == 0, sealed.output
    return app, org


def _migrate(app, target_client, *args):
    app.config["MIGRATE_TARGET_CLIENT"] = target_client
    return app.test_cli_runner().invoke(
        args=["migrate-store", "--to", "mongomock://target", "--json", *args]
    )


def test_everything_arrives_equal_and_verifies_on_the_target(source):
    app, org = source
    target = mongomock.MongoClient(tz_aware=True)
    result = _migrate(app, target)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["verified"] == {
        str(o["_id"]): True for o in target["audit_app"].organizations.find()
    }
    with app.app_context():
        copied = _everything(target["audit_app"])
        assert copied == {**_everything(get_db()), **_everything(get_audit_db())}
    assert report["collections"]["audit_logs"]["copied"] >= 24
    assert report["collections"]["audit_digests"]["copied"] >= 1
    assert target["audit_app"].audit_digests.count_documents({"organizationId": org.id}) >= 1

    again = _migrate(app, target)
    assert again.exit_code == 0 and json.loads(again.output)["copied"] == 0


def test_an_interrupted_copy_continues_where_it_stopped(source):
    app, _ = source
    target = mongomock.MongoClient(tz_aware=True)
    with app.app_context():
        records = list(get_audit_db().audit_logs.find({}).sort("_id", 1))
    target["audit_app"].audit_logs.insert_many(records[: len(records) // 2])  # a first run, cut
    result = _migrate(app, target)
    assert result.exit_code == 0, result.output
    audit_logs = json.loads(result.output)["collections"]["audit_logs"]
    assert audit_logs["alreadyThere"] == len(records) // 2
    assert audit_logs["copied"] == audit_logs["source"] - len(records) // 2
    assert target["audit_app"].audit_logs.count_documents({}) == audit_logs["source"]


def test_and_back_from_mongodb_to_an_embedded_store_that_verifies(source, make_app, tmp_path):
    app, org = source
    target = mongomock.MongoClient(tz_aware=True)
    assert _migrate(app, target).exit_code == 0
    on_mongo = make_app(MONGO_CLIENT=target, AUDIT_ANCHOR_DIR=str(tmp_path / "anchor"))
    back = tmp_path / "back"
    result = on_mongo.test_cli_runner().invoke(
        args=["migrate-store", "--to", f"embedded:{back}", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert all(json.loads(result.output)["verified"].values())
    returned = make_app(
        MONGO_CLIENT=None,
        MONGO_URI=None,
        EMBEDDED_STORE_DIR=str(back),
        AUDIT_ANCHOR_DIR=str(tmp_path / "anchor"),
    )
    verified = returned.test_cli_runner().invoke(
        args=["verify", "--organization", str(org.id), "--json"]
    )
    assert verified.exit_code == 0, verified.output
    with returned.app_context():
        originals = {bson.encode(d) for d in target["audit_app"].audit_logs.find({})}
        arrived = {bson.encode(d) for d in get_audit_db().audit_logs.find({})}
        assert originals <= arrived  # (verify added its own operator record)
    for store in set(stores(returned).values()):
        store.close()


@pytest.mark.parametrize("spelling", ["{d}", "{d}/", "{d}/./", "{d}/../source"])
def test_a_target_that_is_the_source_is_refused(source, tmp_path, spelling):
    app, _ = source
    target = spelling.format(d=tmp_path / "source")
    result = app.test_cli_runner().invoke(args=["migrate-store", "--to", f"embedded:{target}"])
    assert result.exit_code == 2 and "the target is the store being copied" in result.output


def test_a_target_that_is_not_a_store_is_a_clear_error(source):
    app, _ = source
    result = app.test_cli_runner().invoke(args=["migrate-store", "--to", "postgres://x"])
    assert result.exit_code == 2 and "--to" in result.output and "embedded:PATH" in result.output


def test_a_second_run_brings_changes_and_removals_to_the_target(source):
    """A key revoked, or a member removed, after the first run must not live on there."""
    app, org = source
    target = mongomock.MongoClient(tz_aware=True)
    assert _migrate(app, target).exit_code == 0
    api = Api(app.test_client())
    assert api.delete(f"/api/v1/api-keys/{org.api_key_id}", as_=org.owner).status_code == 204
    assert api.delete(f"/api/v1/members/{org.member.account_id}", as_=org.owner).status_code == 204
    result = _migrate(app, target)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["collections"]
    assert report["api_keys"]["updated"] >= 1 and report["memberships"]["deleted"] == 1
    key = target["audit_app"].api_keys.find_one({"_id": org.api_key_id})
    assert key["revokedAt"] is not None
    on_target = mongomock_app(app, target)
    assert (
        on_target.get("/api/v1/organization", headers={"X-API-Key": org.api_key}).status_code == 401
    )


def test_a_sealed_record_that_differs_on_the_target_is_a_conflict(source):
    app, _ = source
    target = mongomock.MongoClient(tz_aware=True)
    assert _migrate(app, target).exit_code == 0
    record = target["audit_app"].audit_logs.find_one({})
    target["audit_app"].audit_logs.update_one({"_id": record["_id"]}, {"$set": {"path": "/x"}})
    result = _migrate(app, target)
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["conflicts"] == 1
    assert report["collections"]["audit_logs"]["conflicts"] == [str(record["_id"])]
    assert target["audit_app"].audit_logs.find_one({"_id": record["_id"]})["path"] == "/x"


def mongomock_app(app, client):
    from audit_app import create_app

    other = create_app({**app.config, "MONGO_CLIENT": client, "MONGO_URI": None})
    return other.test_client()
