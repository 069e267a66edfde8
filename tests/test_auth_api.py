"""Tokens, JWT verification and API keys."""

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from bson import ObjectId

from audit_app.db import get_db
from audit_app.organizations import repository as orgs

from .conftest import TEST_SECRET


def test_token_for_valid_credentials(api, org):
    answer = api.post(
        "/api/v1/auth/token",
        json={"email": org.owner.email.upper(), "password": org.owner.password},
    )
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] == 3600
    assert body["organizationId"] == str(org.id)
    claims = jwt.decode(body["token"], TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(org.owner.account_id)
    assert claims["org"] == str(org.id)
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize(
    "email,password",
    [("owner@acme.example", "wrong"), ("nobody@acme.example", "correct horse battery")],
)
def test_wrong_password_and_unknown_account_get_the_same_answer(api, org, email, password):
    answer = api.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert answer.status_code == 401
    assert answer.get_json()["error"]["message"] == "The email or password is incorrect."


def test_operator_injection_in_login_is_a_400_not_a_login(api, org):
    answer = api.post("/api/v1/auth/token", json={"email": {"$ne": None}, "password": {"$ne": 1}})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] in ("email", "password")


def test_token_for_a_chosen_organization_needs_membership(app, api, org, other_org):
    with app.app_context():
        orgs.add_membership(
            get_db(), other_org.id, org.owner.account_id, other_org.roles["member"]["_id"]
        )
    chosen = api.post(
        "/api/v1/auth/token",
        json={
            "email": org.owner.email,
            "password": org.owner.password,
            "organizationId": str(other_org.id),
        },
    )
    assert chosen.status_code == 200 and chosen.get_json()["organizationId"] == str(other_org.id)
    refused = api.post(
        "/api/v1/auth/token",
        json={
            "email": org.admin.email,
            "password": org.admin.password,
            "organizationId": str(other_org.id),
        },
    )
    assert refused.status_code == 403
    assert refused.get_json()["error"]["field"] == "organizationId"


def _forge(claims, key=TEST_SECRET, algorithm="HS256", headers=None):
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _claims(o, /, **changes):
    now = datetime.now(UTC)
    claims = {
        "sub": str(o.owner.account_id),
        "org": str(o.id),
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_a_valid_forged_by_us_token_works(api, org):
    assert api.get("/api/v1/organization", token=_forge(_claims(org))).status_code == 200


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "not_yet_valid",
        "no_exp",
        "no_iat",
        "no_sub",
        "no_org",
        "wrong_key",
        "alg_none",
        "hs512",
        "garbage",
        "sub_not_oid",
    ],
)
def test_bad_tokens_are_refused(api, org, case):
    now = datetime.now(UTC)
    if case == "expired":
        token = _forge(_claims(org, iat=now - timedelta(hours=2), exp=now - timedelta(hours=1)))
    elif case == "not_yet_valid":
        token = _forge(_claims(org, nbf=now + timedelta(hours=1)))
    elif case.startswith("no_"):
        token = _forge(_claims(org, **{case[3:]: None}))
    elif case == "wrong_key":
        token = _forge(_claims(org), key="another-secret-key-that-is-long-enough-000000")
    elif case == "alg_none":
        token = jwt.encode(_claims(org), None, algorithm="none")
    elif case == "hs512":
        token = _forge(_claims(org), algorithm="HS512")
    elif case == "sub_not_oid":
        token = _forge(_claims(org, sub="admin"))
    else:
        token = "abc.def.ghi"
    answer = api.get("/api/v1/organization", token=token)
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_of_a_removed_member_stops_working(app, api, org):
    token = api.token(org.member)
    assert api.get("/api/v1/organization", token=token).status_code == 200
    api.delete(f"/api/v1/members/{org.member.account_id}", as_=org.owner)
    answer = api.get("/api/v1/organization", token=token)
    assert answer.status_code == 401
    assert "no longer a member" in answer.get_json()["error"]["message"]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc"])
def test_malformed_authorization_header(api, org, header):
    answer = api.get("/api/v1/organization", headers={"Authorization": header})
    assert answer.status_code == 401
    assert "Bearer" in answer.get_json()["error"]["message"]


def test_no_credentials_is_401_with_a_hint(api, org):
    answer = api.get("/api/v1/workspaces")
    assert answer.status_code == 401
    assert "X-API-Key" in answer.get_json()["error"]["message"]


def test_both_credentials_at_once_are_refused(api, org):
    answer = api.get("/api/v1/organization", as_=org.owner, key=org.api_key)
    assert answer.status_code == 401


# API keys -------------------------------------------------------------------------------


def test_api_key_authenticates_and_records_last_use(app, api, org, db):
    assert db.api_keys.find_one({"_id": org.api_key_id})["lastUsedAt"] is None
    answer = api.get("/api/v1/workspaces", key=org.api_key)
    assert answer.status_code == 200
    assert db.api_keys.find_one({"_id": org.api_key_id})["lastUsedAt"] is not None


def test_api_key_secret_is_stored_only_as_a_hash(api, org, db):
    stored = db.api_keys.find_one({"_id": org.api_key_id})
    assert org.api_key not in str(stored)
    assert stored["prefix"] == org.api_key[:12]
    assert len(stored["keyHash"]) == 64


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),
        lambda k: k[:12],
        lambda k: "oal_" + "x" * 40,
        lambda k: "nope",
    ],
)
def test_wrong_api_keys_are_refused(api, org, mangle):
    assert api.get("/api/v1/workspaces", key=mangle(org.api_key)).status_code == 401


def test_revoked_key_is_refused(api, org):
    assert api.delete(f"/api/v1/api-keys/{org.api_key_id}", as_=org.owner).status_code == 204
    answer = api.get("/api/v1/workspaces", key=org.api_key)
    assert answer.status_code == 401
    assert "revoked" in answer.get_json()["error"]["message"]


def test_key_created_through_the_api_is_shown_once(api, org):
    created = api.post(
        "/api/v1/api-keys",
        as_=org.admin,
        json={"name": "deploy bot", "roleId": str(org.roles["member"]["_id"])},
    )
    assert created.status_code == 201
    body = created.get_json()
    assert body["key"].startswith(body["prefix"])
    listed = api.get("/api/v1/api-keys", as_=org.admin).get_json()["items"]
    assert all("key" not in item and "keyHash" not in item for item in listed)
    assert body["id"] in [item["id"] for item in listed]
    assert api.get("/api/v1/workspaces", key=body["key"]).status_code == 200


def test_role_limited_key_gets_403_for_what_its_role_lacks(api, org):
    created = api.post(
        "/api/v1/api-keys",
        as_=org.owner,
        json={"name": "reader", "roleId": str(org.roles["member"]["_id"])},
    ).get_json()
    answer = api.get("/api/v1/api-keys", key=created["key"])
    assert answer.status_code == 403
    assert "viewApiKeys" in answer.get_json()["error"]["message"]


def test_workspace_bound_key_acts_in_its_workspace_only(api, org):
    created = api.post(
        "/api/v1/api-keys",
        as_=org.owner,
        json={
            "name": "bound",
            "roleId": str(org.roles["member"]["_id"]),
            "workspaceId": str(org.workspace["_id"]),
        },
    ).get_json()
    key = created["key"]
    made = api.post("/api/v1/pathways", key=key, json={"name": "From the bound key"})
    assert made.status_code == 201
    assert made.get_json()["workspaceId"] == str(org.workspace["_id"])
    other = api.get("/api/v1/pathways", key=key, workspace=org.other_workspace["_id"])
    assert other.status_code == 403
    assert other.get_json()["error"]["field"] == "X-Workspace-Id"
    listed = api.get("/api/v1/workspaces", key=key).get_json()["items"]
    assert [w["id"] for w in listed] == [str(org.workspace["_id"])]
    assert api.get(f"/api/v1/workspaces/{org.other_workspace['_id']}", key=key).status_code == 404


def test_key_cannot_be_created_with_more_power_than_its_creator(app, api, org):
    custom = api.post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "Key makers", "permissions": ["manageApiKeys", "viewApiKeys"]},
    ).get_json()
    api.patch(
        f"/api/v1/members/{org.member.account_id}", as_=org.owner, json={"roleId": custom["id"]}
    )
    answer = api.post(
        "/api/v1/api-keys",
        as_=org.member,
        json={"name": "escalate", "roleId": str(org.roles["owner"]["_id"])},
    )
    assert answer.status_code == 403


def test_key_with_foreign_or_unknown_workspace_is_422(api, org, other_org):
    for workspace in (other_org.workspace["_id"], ObjectId()):
        answer = api.post(
            "/api/v1/api-keys", as_=org.owner, json={"name": "x", "workspaceId": str(workspace)}
        )
        assert answer.status_code == 422
        assert answer.get_json()["error"]["field"] == "workspaceId"
