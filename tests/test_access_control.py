"""Who may change access, tried as each insider would (PRODUCT.md "Who may change access").

Every case is judged by its effect: what the actor, or the data, looks like afterwards,
not only by the status code of the attempt.
"""

from __future__ import annotations

import pytest

from audit_app.db import get_db
from audit_app.organizations import service as access
from audit_app.organizations.permissions import PERMISSIONS

from .factories import PASSWORD, Person


@pytest.fixture
def cast(app, api, org, bound_key):
    """The actors of the matrix, each with how to call as them and who they are."""
    owner2 = _person(app, org, "owner2", org.roles["owner"])
    custom = {
        "manageRoles": ["viewRoles", "manageRoles"],
        "manageMembers": ["viewMembers", "manageMembers"],
        "manageApiKeys": ["viewApiKeys", "manageApiKeys"],
    }
    actors = {
        "owner": {"as_": org.owner, "account": org.owner.account_id},
        "admin": {"as_": org.admin, "account": org.admin.account_id},
        "member": {"as_": org.member, "account": org.member.account_id},
    }
    for name, permissions in custom.items():
        role = api.post(
            "/api/v1/roles", as_=org.owner, json={"name": name, "permissions": permissions}
        ).get_json()
        person = _person(app, org, name.lower(), role)
        actors[f"custom {name}"] = {"as_": person, "account": person.account_id}
    actors["unbound key"] = {"key": org.api_key, "account": None}
    actors["bound key"] = {"key": bound_key, "account": None}
    return {"actors": actors, "owner2": owner2}


def _person(app, org, slug, role) -> Person:
    with app.app_context():
        role_doc = access.orgs.find_role(get_db(), org.id, _oid(role))
        account = access.add_member_as_operator(org.id, f"{slug}@acme.example", PASSWORD, role_doc)
    return Person(account["account"]["email"], PASSWORD, account["account"]["_id"], slug)


def _oid(role):
    from bson import ObjectId

    return role["_id"] if "_id" in role else ObjectId(role["id"])


def _role_of(db, org, account_id):
    return db.memberships.find_one({"organizationId": org.id, "accountId": account_id})["roleId"]


def _held_role(db, org, actor):
    if actor["account"] is not None:
        return _role_of(db, org, actor["account"])
    from audit_app.api_keys.repository import authenticate_api_key

    return authenticate_api_key(db, actor["key"])["roleId"]


# Each grant path: (attempt, effect). The attempt returns the response; the effect says
# whether the grant took hold, read from the store.


def edit_own_role(api, db, org, actor, cast):
    role_id = _held_role(db, org, actor)
    before = db.roles.find_one({"_id": role_id})["permissions"]
    answer = api.patch(
        f"/api/v1/roles/{role_id}", json={"permissions": sorted(PERMISSIONS)}, **_auth(actor)
    )
    return answer, db.roles.find_one({"_id": role_id})["permissions"] != before


def create_role_with_everything(api, db, org, actor, cast):
    answer = api.post(
        "/api/v1/roles",
        json={"name": "Everything", "permissions": sorted(PERMISSIONS)},
        **_auth(actor),
    )
    return answer, db.roles.find_one({"organizationId": org.id, "name": "Everything"}) is not None


def make_self_owner(api, db, org, actor, cast):
    target = actor["account"] or org.member.account_id  # a key has no membership: the member
    before = _role_of(db, org, target)
    answer = api.patch(
        f"/api/v1/members/{target}", json={"roleId": str(org.roles["owner"]["_id"])}, **_auth(actor)
    )
    return answer, _role_of(db, org, target) != before


def make_member_admin(api, db, org, actor, cast):
    answer = api.patch(
        f"/api/v1/members/{org.member.account_id}",
        json={"roleId": str(org.roles["admin"]["_id"])},
        **_auth(actor),
    )
    return answer, _role_of(db, org, org.member.account_id) == org.roles["admin"]["_id"]


def create_admin_key(api, db, org, actor, cast):
    answer = api.post(
        "/api/v1/api-keys",
        json={"name": "escalated", "roleId": str(org.roles["admin"]["_id"])},
        **_auth(actor),
    )
    made = answer.status_code == 201
    if made:  # the effect: the new key reads the audit log of the whole organization
        made = api.get("/api/v1/audit-logs", key=answer.get_json()["key"]).status_code == 200
    return answer, made


def invite_an_owner(api, db, org, actor, cast):
    answer = api.post(
        "/api/v1/members",
        json={"email": "newboss@acme.example", "roleId": str(org.roles["owner"]["_id"])},
        **_auth(actor),
    )
    return answer, db.invitations.find_one({"emailLower": "newboss@acme.example"}) is not None


def demote_an_owner(api, db, org, actor, cast):
    target = cast["owner2"].account_id
    answer = api.patch(
        f"/api/v1/members/{target}",
        json={"roleId": str(org.roles["member"]["_id"])},
        **_auth(actor),
    )
    return answer, _role_of(db, org, target) != org.roles["owner"]["_id"]


def remove_an_owner(api, db, org, actor, cast):
    target = cast["owner2"].account_id
    answer = api.delete(f"/api/v1/members/{target}", **_auth(actor))
    return answer, db.memberships.find_one({"accountId": target, "organizationId": org.id}) is None


def _auth(actor):
    return {"as_": actor["as_"]} if "as_" in actor else {"key": actor["key"]}


PATHS = [
    edit_own_role,
    create_role_with_everything,
    make_self_owner,
    make_member_admin,
    create_admin_key,
    invite_an_owner,
    demote_an_owner,
    remove_an_owner,
]
ACTORS = [
    "owner",
    "admin",
    "custom manageRoles",
    "custom manageMembers",
    "custom manageApiKeys",
    "member",
    "unbound key",
    "bound key",
]
# What is allowed; everything else is refused and leaves no trace.
ALLOWED = {
    ("owner", "create_role_with_everything"),
    ("owner", "make_member_admin"),
    ("owner", "create_admin_key"),
    ("owner", "invite_an_owner"),
    ("owner", "demote_an_owner"),
    ("owner", "remove_an_owner"),
    ("admin", "create_role_with_everything"),
    ("admin", "make_member_admin"),
    ("admin", "create_admin_key"),
    ("unbound key", "create_role_with_everything"),
    ("unbound key", "make_member_admin"),
    ("unbound key", "create_admin_key"),
}


@pytest.mark.parametrize("path", PATHS, ids=[p.__name__ for p in PATHS])
@pytest.mark.parametrize("who", ACTORS)
def test_escalation_matrix(api, db, org, cast, who, path):
    actor = cast["actors"][who]
    answer, took_hold = path(api, db, org, actor, cast)
    if (who, path.__name__) in ALLOWED:
        assert answer.status_code in (200, 201, 204), answer.get_json()
        assert took_hold
    else:
        assert answer.status_code in (403, 409), answer.get_json()
        assert not took_hold
        if who == "bound key":
            assert "bound to workspace" in answer.get_json()["error"]["message"]


def test_the_admins_takeover_of_the_finding_fails_step_by_step(api, db, org):
    """Finding 2: an Admin promotes itself, demotes the real Owner, removes him."""
    owner_role = str(org.roles["owner"]["_id"])
    steps = [
        api.patch(
            f"/api/v1/members/{org.admin.account_id}", as_=org.admin, json={"roleId": owner_role}
        ),
        api.patch(
            f"/api/v1/members/{org.owner.account_id}",
            as_=org.admin,
            json={"roleId": str(org.roles["member"]["_id"])},
        ),
        api.delete(f"/api/v1/members/{org.owner.account_id}", as_=org.admin),
    ]
    assert [s.status_code for s in steps] == [403, 403, 403]
    assert _role_of(db, org, org.owner.account_id) == org.roles["owner"]["_id"]
    assert _role_of(db, org, org.admin.account_id) == org.roles["admin"]["_id"]


def test_a_manage_roles_insider_cannot_reach_the_audit_log(api, db, org):
    """Finding 2: viewRoles + manageRoles PATCHes its own role to everything."""
    role = api.post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "Role editors", "permissions": ["viewRoles", "manageRoles"]},
    ).get_json()
    api.patch(
        f"/api/v1/members/{org.member.account_id}", as_=org.owner, json={"roleId": role["id"]}
    )
    for target in (role["id"], str(org.roles["member"]["_id"]), str(org.roles["admin"]["_id"])):
        answer = api.patch(
            f"/api/v1/roles/{target}", as_=org.member, json={"permissions": sorted(PERMISSIONS)}
        )
        assert answer.status_code == 403
    assert api.get("/api/v1/audit-logs", as_=org.member).status_code == 403
    assert api.delete(f"/api/v1/roles/{org.roles['admin']['_id']}", as_=org.member).status_code in (
        403,
        409,
    )


def test_nobody_edits_the_owner_role_not_even_its_description(api, db, org):
    owner_role = org.roles["owner"]["_id"]
    before = db.roles.find_one({"_id": owner_role})
    for who in (org.admin, org.owner):
        answer = api.patch(
            f"/api/v1/roles/{owner_role}", as_=who, json={"description": "Owned by Mallory"}
        )
        assert answer.status_code in (403, 409)
    assert db.roles.find_one({"_id": owner_role}) == before


# Workspace-bound keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/api/v1/api-keys", {"name": "escape"}),
        ("GET", "/api/v1/api-keys", None),
        ("POST", "/api/v1/members", {"email": "friend@acme.example", "roleId": "{admin}"}),
        ("GET", "/api/v1/members", None),
        ("GET", "/api/v1/invitations", None),
        ("GET", "/api/v1/roles", None),
        ("POST", "/api/v1/roles", {"name": "r"}),
        ("GET", "/api/v1/organization", None),
        ("PATCH", "/api/v1/organization", {"name": "Renamed"}),
        ("GET", "/api/v1/audit-logs", None),
        ("POST", "/api/v1/workspaces", {"name": "w3"}),
        ("PATCH", "/api/v1/workspaces/{ws}", {"name": "renamed"}),
        ("DELETE", "/api/v1/workspaces/{ws}", None),
    ],
)
def test_a_workspace_bound_key_is_refused_organization_endpoints(
    api, db, org, bound_key, method, path, body
):
    fill = {"{admin}": str(org.roles["admin"]["_id"]), "{ws}": str(org.workspace["_id"])}
    for placeholder, value in fill.items():
        path = path.replace(placeholder, value)
        if body:
            body = {k: v.replace(placeholder, value) for k, v in body.items()}
    keys, accounts = db.api_keys.count_documents({}), db.invitations.count_documents({})
    answer = api.call(method, path, key=bound_key, json=body)
    assert answer.status_code == 403
    error = answer.get_json()["error"]
    assert error["code"] == "forbidden" and str(org.workspace["_id"]) in error["message"]
    assert (db.api_keys.count_documents({}), db.invitations.count_documents({})) == (keys, accounts)
    assert db.workspaces.find_one({"_id": org.workspace["_id"]})["name"] == org.workspace["name"]


def test_a_workspace_bound_key_still_works_inside_its_workspace(api, org, bound_key):
    listed = api.get("/api/v1/workspaces", key=bound_key).get_json()["items"]
    assert [w["id"] for w in listed] == [str(org.workspace["_id"])]
    assert api.get(f"/api/v1/workspaces/{org.workspace['_id']}", key=bound_key).status_code == 200
    assert (
        api.get(f"/api/v1/workspaces/{org.other_workspace['_id']}", key=bound_key).status_code
        == 404
    )
    made = api.post("/api/v1/pathways", key=bound_key, json={"name": "inside"})
    assert made.status_code == 201
    assert api.get("/api/v1/pathways", key=bound_key).status_code == 200
    assert api.get(
        "/api/v1/pathways", key=bound_key, workspace=org.other_workspace["_id"]
    ).status_code in (403, 404)


# API keys of people who leave or lose power ----------------------------------------------


def test_a_key_never_holds_more_than_its_creator_holds_now(api, org):
    key = api.post(
        "/api/v1/api-keys",
        as_=org.admin,
        json={"name": "admin's", "roleId": str(org.roles["admin"]["_id"])},
    ).get_json()
    assert api.get("/api/v1/audit-logs", key=key["key"]).status_code == 200
    api.patch(
        f"/api/v1/members/{org.admin.account_id}",
        as_=org.owner,
        json={"roleId": str(org.roles["member"]["_id"])},
    )
    assert api.get("/api/v1/audit-logs", key=key["key"]).status_code == 403
    assert (
        api.get("/api/v1/pathways", key=key["key"], workspace=org.workspace["_id"]).status_code
        == 200
    )


def test_a_removed_members_keys_are_revoked_with_the_membership(api, db, org):
    key = api.post(
        "/api/v1/api-keys",
        as_=org.admin,
        json={"name": "admin's", "roleId": str(org.roles["admin"]["_id"])},
    ).get_json()
    child = api.post(
        "/api/v1/api-keys",
        key=key["key"],
        json={"name": "child", "roleId": str(org.roles["member"]["_id"])},
    ).get_json()
    assert api.delete(f"/api/v1/members/{org.admin.account_id}", as_=org.owner).status_code == 204
    for secret in (key["key"], child["key"]):
        answer = api.get("/api/v1/pathways", key=secret, workspace=org.workspace["_id"])
        assert answer.status_code == 401
    listed = {k["name"]: k for k in api.get("/api/v1/api-keys", as_=org.owner).get_json()["items"]}
    assert listed["admin's"]["revokedAt"] and listed["child"]["revokedAt"]


def test_api_keys_cannot_hold_the_owner_role(api, db, org):
    answer = api.post(
        "/api/v1/api-keys",
        as_=org.owner,
        json={"name": "k", "roleId": str(org.roles["owner"]["_id"])},
    )
    assert answer.status_code == 422 and answer.get_json()["error"]["field"] == "roleId"
    assert db.api_keys.count_documents({"roleId": org.roles["owner"]["_id"]}) == 0


# Responses that carry secrets --------------------------------------------------------------


def test_responses_with_secrets_are_never_cached(api, org):
    token = api.client.post(
        "/api/v1/auth/token", json={"email": org.owner.email, "password": PASSWORD}
    )
    key = api.post("/api/v1/api-keys", as_=org.owner, json={"name": "k"})
    invitation = api.post(
        "/api/v1/members",
        as_=org.owner,
        json={"email": "someone@acme.example", "roleId": str(org.roles["member"]["_id"])},
    )
    for answer in (token, key, invitation):
        assert answer.status_code in (200, 201)
        assert answer.headers["Cache-Control"] == "no-store"
    static = api.client.get("/static/app.css")
    assert static.headers.get("Cache-Control") != "no-store"
    static.close()


def test_a_key_cannot_change_its_creators_role(api, db, org):
    key = api.post(
        "/api/v1/api-keys",
        as_=org.admin,
        json={"name": "mine", "roleId": str(org.roles["admin"]["_id"])},
    ).get_json()
    answer = api.patch(
        f"/api/v1/members/{org.admin.account_id}",
        key=key["key"],
        json={"roleId": str(org.roles["member"]["_id"])},
    )
    assert answer.status_code == 403
    assert _role_of(db, org, org.admin.account_id) == org.roles["admin"]["_id"]
