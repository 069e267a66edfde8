"""The same checks against a real MongoDB server, when one is given in TEST_MONGO_URI.

mongomock and the embedded store cannot prove that index definitions, collMod, the
client-side timeout, BSON dates and the query plans behave on a real server. No mongod can
be installed on the CI machines, so these run wherever TEST_MONGO_URI points at one, e.g.
``TEST_MONGO_URI=mongodb://localhost:27017/audit_test make test`` next to
``docker compose up mongo``. Each test uses a database of its own and drops it.
"""

import os
import uuid

import pytest
from bson import ObjectId

from audit_app.audit.capture import WRITER_KEY
from audit_app.db import get_audit_db

from .factories import Api, make_org

URI = os.environ.get("TEST_MONGO_URI")
pytestmark = pytest.mark.skipif(
    not URI, reason="needs a MongoDB server: set TEST_MONGO_URI (no mongod on the CI machines)"
)


@pytest.fixture
def real_app(make_app):
    base = URI.rsplit("/", 1)[0] if URI.count("/") > 2 else URI
    name = f"audit_test_{uuid.uuid4().hex[:8]}"
    app = make_app(MONGO_CLIENT=None, MONGO_URI=f"{base}/{name}")
    yield app
    from audit_app.db import stores

    stores(app)["main"].client.drop_database(name)


def test_indexes_exist_with_their_definitions(real_app):
    with real_app.app_context():
        info = get_audit_db().audit_logs.index_information()
    assert info["ttl_createdAt"]["expireAfterSeconds"] == 400 * 86400
    assert info["org_newest"]["key"][:3] == [("organizationId", 1), ("createdAt", -1), ("_id", -1)]


def test_retention_change_uses_collmod(make_app, real_app):
    from audit_app.audit.repository import ensure_audit_indexes

    with real_app.app_context():
        db = get_audit_db()
        ensure_audit_indexes(db, 30)
        assert (
            db.audit_logs.index_information()["ttl_createdAt"]["expireAfterSeconds"] == 30 * 86400
        )


def test_a_request_is_recorded_with_real_bson_types(real_app):
    org = make_org(real_app, "Real")
    api = Api(real_app.test_client())
    api.get("/api/v1/organization", as_=org.owner)
    with real_app.app_context():
        record = get_audit_db().audit_logs.find_one({"path": "/api/v1/organization"})
    assert isinstance(record["_id"], ObjectId) and isinstance(record["organizationId"], ObjectId)
    assert record["createdAt"].tzinfo is not None


def test_odd_keys_and_deep_bodies_are_accepted_by_the_server(real_app):
    org = make_org(real_app, "Odd")
    api = Api(real_app.test_client())
    deep = current = {}
    for _ in range(150):
        current["n"] = {}
        current = current["n"]
    api.post("/api/v1/workspaces", as_=org.admin, json={"$where": 1, "a.b": deep})
    writer = real_app.extensions[WRITER_KEY]
    assert writer.stats["spooled"] == 0 and writer.stats["stored"] >= 2
