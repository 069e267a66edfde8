"""The queries of credential revocation (issue #23) as a MongoDB server receives them.

Revoking a key walks the keys it made, generation by generation, each a bounded equality on
``org_creator_key``; the invitations they sent are revoked by one update of the
organization's pending invitations. The invitations-only token of a former member reads its
newest pending invitation on ``email_newest``, one document.
"""

from __future__ import annotations

from bson import ObjectId

from audit_app.api_keys.repository import INDEXES as KEY_INDEXES
from audit_app.credentials import service as credentials
from audit_app.db import get_db, stores
from audit_app.organizations import repository as orgs

from .wire import app_on


def _index_keys(indexes, name):
    return next(list(keys) for keys, options in indexes if options["name"] == name)


def test_revoking_a_key_walks_the_keys_it_made_by_generation_and_stops(server, tmp_path):
    organization_id, revoked, child = ObjectId(), ObjectId(), ObjectId()
    generations = iter([[{"_id": child}], []])  # the key made one key, which made none
    server.documents["api_keys"] = lambda command: next(generations)
    app = app_on(server.uri, tmp_path)
    try:
        with app.app_context():
            went = credentials.after_key_revoked(organization_id, revoked)
    finally:
        for store in set(stores(app).values()):
            store.close()
    assert went["keysRevoked"] == [str(child)]
    walks = server.sent("find", "api_keys")
    assert [w["filter"]["createdByApiKeyId"] for w in walks] == [
        {"$in": [revoked]},
        {"$in": [child]},
    ]
    for walk in walks:  # the organization first, then the creator key: org_creator_key
        assert walk["filter"]["organizationId"] == organization_id
        assert walk["filter"]["revokedAt"] is None
        assert walk["limit"] == 10_000 and walk["projection"] == {"_id": 1}
    assert _index_keys(KEY_INDEXES["api_keys"], "org_creator_key") == [
        ("organizationId", 1),
        ("createdByApiKeyId", 1),
    ]
    [revoke] = server.sent("update", "api_keys")
    assert revoke["updates"][0]["q"]["_id"] == {"$in": [child]}
    [invitations] = server.sent("update", "invitations")
    selector = invitations["updates"][0]["q"]
    assert selector["organizationId"] == organization_id
    assert selector["invitedBy.apiKeyId"] == {"$in": [revoked, child]}
    assert selector["acceptedAt"] is None and selector["revokedAt"] is None
    assert invitations["updates"][0]["u"]["$set"]["revokedReason"] == "apiKeyRevoked"


def test_a_former_member_s_invitation_is_one_document_off_email_newest(server, tmp_path):
    app = app_on(server.uri, tmp_path)
    try:
        with app.app_context():
            assert orgs.newest_pending_invitation_for(get_db(), "Ana@Corp.example") is None
    finally:
        for store in set(stores(app).values()):
            store.close()
    [find] = server.sent("find", "invitations")
    assert find["filter"]["emailLower"] == "ana@corp.example"
    assert find["sort"] == {"createdAt": -1} and find["limit"] == 1
    assert find["projection"] == {"tokenHash": 0}
    assert _index_keys(orgs.INDEXES["invitations"], "email_newest") == [
        ("emailLower", 1),
        ("createdAt", -1),
    ]
