"""The fixes of the adversarial review of issue #27: the organization ends an active grant
(``/revoke``, the Revoke button), its ``staffAccess`` holds on every read and stays so when
switched back, an ambiguous request id says so, the justification's characters, and the
``actor:`` search of a staff member's email on both stores."""

from __future__ import annotations

from bson import ObjectId

from audit_app.audit.store import embedded as embedded_store
from audit_app.db import get_db

from .factories import Api, make_org, settled
from .test_staff import (
    STAFF_EMAIL,
    bearer,
    create_staff,
    grant,
    logs,
    set_access,
    staff_token,
)
from .test_web_session import csrf_from, login


def _read(client, token, org):
    return client.get(f"/api/v1/staff/organizations/{org.id}/audit-logs", headers=bearer(token))


def _state(app, grant_id):
    with app.app_context():
        return get_db().staff_grants.find_one({"_id": ObjectId(grant_id)})["state"]


def test_an_admin_revokes_an_active_grant_through_the_api(app, client, api, org, other_org):
    create_staff(app)
    token = staff_token(client)
    made = grant(client, token, org.id).get_json()
    assert made["state"] == "active" and _read(client, token, org).status_code == 200
    path = f"/api/v1/staff-requests/{made['grantId']}/revoke"
    # not a member, not an API key, not another organization's Admin
    assert api.post(path, as_=org.member).status_code == 403
    assert client.post(path, headers={"X-API-Key": org.api_key}).status_code == 403
    assert api.post(path, as_=other_org.admin).status_code == 404
    assert _state(app, made["grantId"]) == "active"
    answer = api.post(path, as_=org.admin)
    assert answer.status_code == 200 and answer.get_json()["state"] == "revoked"
    assert _read(client, token, org).status_code == 403
    again = api.post(path, as_=org.admin)
    assert again.status_code == 409 and again.get_json()["error"]["field"] == "grantId"
    settled(app)
    revoked = logs(api, org, action="staff.grantRevoked")
    assert revoked and revoked[0]["targets"][0]["id"] == made["grantId"]
    with app.app_context():
        entries = [e["action"] for e in get_db().staff_log.find({})]
    assert "staff.grantRevoked" in entries


def test_a_pending_request_is_denied_not_revoked(app, client, api, org):
    create_staff(app)
    token = staff_token(client)
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    answer = api.post(f"/api/v1/staff-requests/{made['grantId']}/revoke", as_=org.admin)
    assert answer.status_code == 409 and _state(app, made["grantId"]) == "pending"


def test_the_revoke_button_asks_first_then_ends_the_grant(app, client, api, org):
    create_staff(app)
    token = staff_token(client)
    made = grant(client, token, org.id).get_json()
    login(client, org.admin)
    page = client.get("/organization/staff-requests").get_data(as_text=True)
    assert f"/organization/staff-requests/{made['grantId']}/revoke" in page
    assert STAFF_EMAIL in page and "data-confirm" in page
    asked = client.post(
        f"/organization/staff-requests/{made['grantId']}/revoke",
        data={"csrf_token": csrf_from(page)},
    )
    assert asked.status_code == 200 and "confirm" in asked.get_data(as_text=True)
    assert _state(app, made["grantId"]) == "active"
    assert _read(client, token, org).status_code == 200
    done = client.post(
        f"/organization/staff-requests/{made['grantId']}/revoke",
        data={"csrf_token": csrf_from(page), "confirm": "yes"},
    )
    assert done.status_code == 302
    assert _state(app, made["grantId"]) == "revoked"
    assert _read(client, token, org).status_code == 403
    settled(app)
    actions = [r["action"] for r in logs(api, org)]
    assert "staff.grantRevokedAsked" in actions and "staff.grantRevoked" in actions


def test_approving_under_none_is_a_409_naming_the_setting(app, client, api, org):
    create_staff(app)
    token = staff_token(client)
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    set_access(api, org, "none")
    answer = api.post(f"/api/v1/staff-requests/{made['grantId']}/approve", as_=org.admin)
    assert answer.status_code == 409
    assert answer.get_json()["error"]["field"] == "staffAccess"
    assert _state(app, made["grantId"]) == "pending"


def test_a_grant_ended_by_none_stays_ended_when_switched_back(app, client, api, org):
    create_staff(app)
    token = staff_token(client)
    made = grant(client, token, org.id).get_json()
    set_access(api, org, "none")
    set_access(api, org, "open")
    assert _read(client, token, org).status_code == 403
    assert _state(app, made["grantId"]) == "revoked"


def test_an_approved_grant_reads_under_approval(app, client, api, org):
    create_staff(app)
    token = staff_token(client)
    set_access(api, org, "approval")
    made = grant(client, token, org.id).get_json()
    assert (
        api.post(f"/api/v1/staff-requests/{made['grantId']}/approve", as_=org.admin).status_code
        == 200
    )
    assert _read(client, token, org).status_code == 200
    set_access(api, org, "open")
    set_access(api, org, "approval")  # approved: not ended by the switch
    assert _read(client, token, org).status_code == 200


def test_a_request_id_of_two_organizations_is_said_to_be_ambiguous(
    app, client, api, org, other_org
):
    create_staff(app)
    token = staff_token(client)
    for key in (org.api_key, other_org.api_key):
        client.get("/api/v1/workspaces", headers={"X-API-Key": key, "X-Request-Id": "req-shared-1"})
    settled(app)
    found = client.get(
        "/api/v1/staff/lookup", headers=bearer(token), query_string={"id": "req-shared-1"}
    ).get_json()
    assert {o["name"] for o in found["organizations"]} == {"Acme", "Globex"}
    [match] = found["matches"]
    assert match["ambiguous"] is True and "ask the customer for the record id" in match["message"]
    alone = client.get(
        "/api/v1/staff/lookup",
        headers=bearer(token),
        query_string={"id": logs(api, org)[0]["requestId"]},
    ).get_json()
    assert "ambiguous" not in alone["matches"][0]


def test_line_breaks_become_spaces_and_direction_overrides_are_refused(app, client, api, org):
    create_staff(app)
    token = staff_token(client)
    answer = grant(client, token, org.id, ticket="T-1\u202e")
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "ticket"
    assert "U+202E" in answer.get_json()["error"]["message"]
    answer = grant(client, token, org.id, justification="Looking into\r\nthe 409s they see")
    assert answer.status_code == 201
    assert answer.get_json()["justification"] == "Looking into  the 409s they see"


def test_actor_search_finds_a_staff_member_on_the_embedded_store(embedded):
    app = embedded()
    org = make_org(app, "Acme")
    create_staff(app)
    client = app.test_client()
    api = Api(client)
    token = staff_token(client)
    grant(client, token, org.id)
    _read(client, token, org)
    settled(app)
    before = embedded_store.FALLBACKS[0]
    found = api.get(
        "/api/v1/audit-logs", as_=org.admin, query_string={"q": f"actor:{STAFF_EMAIL}"}
    ).get_json()["items"]
    assert {i["action"] for i in found} >= {"staff.grantRequested", "staff.access"}
    assert all(i["authType"] == "staff" for i in found)
    # an organization's own member, and an auth type that leaves the staff out
    mine = api.get(
        "/api/v1/audit-logs", as_=org.admin, query_string={"q": f"actor:{org.admin.email}"}
    ).get_json()["items"]
    assert mine and all(i["authType"] != "staff" for i in mine)
    none = api.get(
        "/api/v1/audit-logs",
        as_=org.admin,
        query_string={"q": f"actor:{STAFF_EMAIL}", "authType": "session"},
    ).get_json()["items"]
    assert none == []
    assert embedded_store.FALLBACKS[0] == before  # index walks, never mongomock's scan


def test_every_read_checks_the_setting_as_it_is_now(app, client, api, org):
    """The switch ends grants, and each read checks the setting too: a grant the switch
    did not reach (made by a request that raced it, or a setting written by an operator)
    reads nothing."""
    create_staff(app)
    token = staff_token(client)
    grant(client, token, org.id)
    with app.app_context():
        get_db().organizations.update_one({"_id": org.id}, {"$set": {"staffAccess": "approval"}})
    refused = _read(client, token, org)
    assert refused.status_code == 403 and "approval" in refused.get_json()["error"]["message"]
    with app.app_context():
        get_db().organizations.update_one({"_id": org.id}, {"$set": {"staffAccess": "none"}})
    assert _read(client, token, org).status_code == 403
    with app.app_context():
        get_db().organizations.update_one({"_id": org.id}, {"$set": {"staffAccess": "open"}})
    assert _read(client, token, org).status_code == 200
