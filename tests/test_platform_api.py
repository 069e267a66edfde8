"""The platform endpoints: success paths and every error path of the contract."""

import pytest
from bson import ObjectId


def test_organization_read_and_rename(api, org):
    got = api.get("/api/v1/organization", as_=org.member)
    assert got.status_code == 200
    assert got.get_json()["name"] == "Acme"
    assert got.get_json()["createdAt"].endswith("Z")
    renamed = api.patch("/api/v1/organization", as_=org.admin, json={"name": "  Acme Corp  "})
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Acme Corp"


def test_workspace_lifecycle(api, org):
    made = api.post("/api/v1/workspaces", as_=org.admin, json={"name": "Sales", "description": "d"})
    assert made.status_code == 201
    workspace_id = made.get_json()["id"]
    assert len(workspace_id) == 24
    assert (
        api.get(f"/api/v1/workspaces/{workspace_id}", as_=org.member).get_json()["name"] == "Sales"
    )
    patched = api.patch(
        f"/api/v1/workspaces/{workspace_id}", as_=org.admin, json={"name": "Sales EU"}
    )
    assert patched.get_json()["name"] == "Sales EU"
    names = [w["name"] for w in api.get("/api/v1/workspaces", as_=org.member).get_json()["items"]]
    assert "Sales EU" in names
    assert api.delete(f"/api/v1/workspaces/{workspace_id}", as_=org.admin).status_code == 204
    assert api.get(f"/api/v1/workspaces/{workspace_id}", as_=org.admin).status_code == 404


def test_duplicate_workspace_name_is_409(api, org):
    answer = api.post(
        "/api/v1/workspaces", as_=org.admin, json={"name": org.workspace["name"].upper()}
    )
    assert answer.status_code == 409
    assert answer.get_json()["error"]["field"] == "name"


def test_pathway_lifecycle_in_a_workspace(api, org):
    ws = org.workspace["_id"]
    made = api.post(
        "/api/v1/pathways",
        as_=org.member,
        workspace=ws,
        json={"name": "Onboarding", "steps": [{"title": "Day 1"}, {"title": "Day 2"}]},
    )
    assert made.status_code == 201
    pathway = made.get_json()
    assert pathway["workspaceId"] == str(ws)
    assert [s["title"] for s in pathway["steps"]] == ["Day 1", "Day 2"]
    url = f"/api/v1/pathways/{pathway['id']}"
    assert api.get(url, as_=org.member, workspace=ws).status_code == 200
    assert api.get(url, as_=org.member, workspace=org.other_workspace["_id"]).status_code == 404
    patched = api.patch(url, as_=org.member, workspace=ws, json={"steps": [{"title": "Only"}]})
    assert [s["title"] for s in patched.get_json()["steps"]] == ["Only"]
    listed = api.get("/api/v1/pathways", as_=org.member, workspace=ws).get_json()["items"]
    assert [p["id"] for p in listed] == [pathway["id"]]
    assert api.delete(url, as_=org.member, workspace=ws).status_code == 204
    assert api.delete(url, as_=org.member, workspace=ws).status_code == 404


@pytest.mark.parametrize("header,status", [(None, 400), ("not-an-id", 400), (str(ObjectId()), 404)])
def test_pathways_need_a_workspace_of_the_organization(api, org, header, status):
    answer = api.get("/api/v1/pathways", as_=org.member, workspace=header)
    assert answer.status_code == status
    assert answer.get_json()["error"]["field"] == "X-Workspace-Id"


def test_deleting_a_workspace_deletes_its_pathways_and_revokes_bound_keys(api, org):
    ws = org.other_workspace["_id"]
    pathway = api.post(
        "/api/v1/pathways", as_=org.admin, workspace=ws, json={"name": "p"}
    ).get_json()
    key = api.post(
        "/api/v1/api-keys", as_=org.owner, json={"name": "bound", "workspaceId": str(ws)}
    ).get_json()["key"]
    assert api.delete(f"/api/v1/workspaces/{ws}", as_=org.admin).status_code == 204
    assert api.get("/api/v1/workspaces", key=key).status_code == 401
    assert (
        api.get(f"/api/v1/pathways/{pathway['id']}", as_=org.admin, workspace=ws).status_code == 404
    )


# Errors ---------------------------------------------------------------------------------


def test_wrong_content_type_is_415(api, org):
    answer = api.post(
        "/api/v1/workspaces",
        as_=org.admin,
        data="name=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 415
    assert "application/json" in answer.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "raw,message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("", "not valid JSON"),
        ("[" * 100000, "nested too deeply"),
        (b"\xff\xfe{", "not valid JSON"),
    ],
)
def test_malformed_bodies_are_400(api, org, raw, message):
    answer = api.post(
        "/api/v1/workspaces", as_=org.admin, data=raw, content_type="application/json"
    )
    assert answer.status_code == 400
    assert message in answer.get_json()["error"]["message"]


def test_unknown_field_is_400_naming_it_and_the_accepted_ones(api, org):
    answer = api.post("/api/v1/workspaces", as_=org.admin, json={"name": "x", "colour": "red"})
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert error["field"] == "colour"
    assert "description" in error["message"] and "name" in error["message"]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "p", "steps": "nope"}, "steps"),
        ({"name": "p", "steps": [{"title": ""}]}, "steps.0.title"),
    ],
)
def test_invalid_values_are_400_naming_the_field(api, org, body, field):
    answer = api.post("/api/v1/pathways", as_=org.admin, workspace=org.workspace["_id"], json=body)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == field


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/workspaces/zzz",
        "/api/v1/workspaces/123",
        f"/api/v1/workspaces/{ObjectId()}",
        "/api/v1/roles/nope",
        "/api/v1/does-not-exist",
        "/api/v2/anything",
    ],
)
def test_unknown_or_malformed_ids_and_paths_are_404_json(api, org, path):
    answer = api.get(path, as_=org.admin)
    assert answer.status_code == 404
    assert answer.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_405_json_with_allow(api, org):
    answer = api.call("PUT", "/api/v1/organization", as_=org.admin, json={})
    assert answer.status_code == 405
    assert "GET" in answer.headers["Allow"]
    assert answer.get_json()["error"]["code"] == "method_not_allowed"


def test_oversized_body_is_413_json(make_app, org):
    app = make_app(MAX_CONTENT_LENGTH=2048)
    answer = app.test_client().post(
        "/api/v1/auth/token", data="x" * 5000, content_type="application/json"
    )
    assert answer.status_code == 413
    assert answer.get_json()["error"]["code"] == "request_entity_too_large"


def test_unexpected_exception_is_a_json_500_without_details(app, api, org, monkeypatch):
    from audit_app.workspaces import repository

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(repository, "list_workspaces", explode)
    answer = api.get("/api/v1/workspaces", as_=org.admin)
    assert answer.status_code == 500
    assert "secret internal detail" not in answer.get_data(as_text=True)
    assert answer.get_json()["error"]["code"] == "internal_error"


# Members and roles ----------------------------------------------------------------------


def test_email_is_unique_case_insensitively(app, org):
    from audit_app.db import get_db
    from audit_app.errors import ApiError
    from audit_app.organizations import repository as orgs

    with app.app_context(), pytest.raises(ApiError) as raised:
        orgs.create_account(get_db(), "OWNER@ACME.example", "whatever123")
    assert raised.value.status == 409


def test_passwords_are_stored_as_argon2_hashes(db, org):
    account = db.accounts.find_one({"_id": org.owner.account_id})
    assert account["passwordHash"].startswith("$argon2id$")
    assert org.owner.password not in str(account)


def test_last_owner_cannot_be_removed_or_demoted(api, org):
    owner_id = org.owner.account_id
    admin_role = str(org.roles["admin"]["_id"])
    # an Admin may not touch an Owner; the Owner may not change their own role
    assert (
        api.patch(
            f"/api/v1/members/{owner_id}", as_=org.admin, json={"roleId": admin_role}
        ).status_code
        == 403
    )
    assert api.delete(f"/api/v1/members/{owner_id}", as_=org.admin).status_code == 403
    own = api.patch(f"/api/v1/members/{owner_id}", as_=org.owner, json={"roleId": admin_role})
    assert own.status_code == 403 and "own role" in own.get_json()["error"]["message"]
    leave = api.delete(f"/api/v1/members/{owner_id}", as_=org.owner)
    assert leave.status_code == 409 and "last Owner" in leave.get_json()["error"]["message"]
    promote = api.patch(
        f"/api/v1/members/{org.admin.account_id}",
        as_=org.owner,
        json={"roleId": str(org.roles["owner"]["_id"])},
    )
    assert promote.status_code == 200 and promote.get_json()["roleName"] == "Owner"
    api._tokens.clear()
    assert api.delete(f"/api/v1/members/{owner_id}", as_=org.admin).status_code == 204


def test_owner_role_is_locked_and_builtins_cannot_be_deleted(api, org):
    owner_role = org.roles["owner"]["_id"]
    answer = api.patch(
        f"/api/v1/roles/{owner_role}", as_=org.owner, json={"permissions": ["viewAuditLog"]}
    )
    assert answer.status_code == 409
    assert api.delete(f"/api/v1/roles/{owner_role}", as_=org.owner).status_code == 409
    assert (
        api.patch(
            f"/api/v1/roles/{org.roles['member']['_id']}", as_=org.owner, json={"name": "Crew"}
        ).status_code
        == 409
    )


def test_granting_view_audit_log_to_member_role(api, org):
    member_role = org.roles["member"]["_id"]
    role = api.get(f"/api/v1/roles/{member_role}", as_=org.member).get_json()
    assert "viewAuditLog" not in role["permissions"]
    granted = api.patch(
        f"/api/v1/roles/{member_role}",
        as_=org.admin,
        json={"permissions": [*role["permissions"], "viewAuditLog"]},
    )
    assert "viewAuditLog" in granted.get_json()["permissions"]


def test_custom_role_lifecycle_and_unknown_permission(api, org):
    bad = api.post(
        "/api/v1/roles", as_=org.admin, json={"name": "Auditors", "permissions": ["readMinds"]}
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "permissions"
    assert "viewAuditLog" in bad.get_json()["error"]["message"]
    made = api.post(
        "/api/v1/roles", as_=org.admin, json={"name": "Auditors", "permissions": ["viewAuditLog"]}
    )
    assert made.status_code == 201 and made.get_json()["builtIn"] is False
    role_id = made.get_json()["id"]
    assert api.post("/api/v1/roles", as_=org.admin, json={"name": "auditors"}).status_code == 409
    api.patch(f"/api/v1/members/{org.member.account_id}", as_=org.admin, json={"roleId": role_id})
    in_use = api.delete(f"/api/v1/roles/{role_id}", as_=org.admin)
    assert in_use.status_code == 409
    api.patch(
        f"/api/v1/members/{org.member.account_id}",
        as_=org.admin,
        json={"roleId": str(org.roles["member"]["_id"])},
    )
    assert api.delete(f"/api/v1/roles/{role_id}", as_=org.admin).status_code == 204
    names = [r["name"] for r in api.get("/api/v1/roles", as_=org.admin).get_json()["items"]]
    assert names == ["Admin", "Member", "Owner"]  # by name (the list is paged on its index)


def test_role_of_another_organization_cannot_be_assigned(api, org, other_org):
    answer = api.patch(
        f"/api/v1/members/{org.member.account_id}",
        as_=org.admin,
        json={"roleId": str(other_org.roles["owner"]["_id"])},
    )
    assert answer.status_code == 422 and answer.get_json()["error"]["field"] == "roleId"
