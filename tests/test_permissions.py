"""The permission matrix: each endpoint against each built-in role, and a custom role."""

import pytest

from audit_app.organizations.permissions import BUILTIN_ROLES, PERMISSIONS

# (method, path template, permission needed, body)
ENDPOINTS = [
    ("GET", "/api/v1/organization", None, None),
    ("PATCH", "/api/v1/organization", "manageOrganization", {"name": "Renamed"}),
    ("GET", "/api/v1/workspaces", "viewWorkspaces", None),
    ("POST", "/api/v1/workspaces", "manageWorkspaces", {"name": "New ws"}),
    ("GET", "/api/v1/workspaces/{ws}", "viewWorkspaces", None),
    ("PATCH", "/api/v1/workspaces/{ws}", "manageWorkspaces", {"description": "x"}),
    ("DELETE", "/api/v1/workspaces/{ws2}", "manageWorkspaces", None),
    ("GET", "/api/v1/pathways", "viewPathways", None),
    ("POST", "/api/v1/pathways", "managePathways", {"name": "p"}),
    ("GET", "/api/v1/members", "viewMembers", None),
    (
        "POST",
        "/api/v1/members",
        "manageMembers",
        {"email": "x@acme.example", "roleId": "{member_role}"},
    ),
    ("GET", "/api/v1/invitations", "viewMembers", None),
    ("PATCH", "/api/v1/members/{member}", "manageMembers", {"roleId": "{member_role}"}),
    ("GET", "/api/v1/roles", "viewRoles", None),
    ("POST", "/api/v1/roles", "manageRoles", {"name": "R"}),
    ("GET", "/api/v1/roles/{member_role}", "viewRoles", None),
    ("PATCH", "/api/v1/roles/{member_role}", "manageRoles", {"description": "d"}),
    ("GET", "/api/v1/api-keys", "viewApiKeys", None),
    ("POST", "/api/v1/api-keys", "manageApiKeys", {"name": "k", "roleId": "{member_role}"}),
    ("DELETE", "/api/v1/api-keys/{key}", "manageApiKeys", None),
]


def _fill(value, org):
    ids = {
        "ws": org.workspace["_id"],
        "ws2": org.other_workspace["_id"],
        "member": org.member.account_id,
        "member_role": org.roles["member"]["_id"],
        "key": org.api_key_id,
    }
    if isinstance(value, str):
        return value.format(**{k: str(v) for k, v in ids.items()})
    if isinstance(value, dict):
        return {k: _fill(v, org) for k, v in value.items()}
    return value


def test_every_permission_is_documented_and_owner_holds_all():
    assert set(BUILTIN_ROLES["owner"]["permissions"]) == set(PERMISSIONS)
    assert "viewAuditLog" in BUILTIN_ROLES["admin"]["permissions"]
    assert "viewAuditLog" not in BUILTIN_ROLES["member"]["permissions"]


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
@pytest.mark.parametrize(
    "method,path,permission,body", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_permission_matrix(api, org, role, method, path, permission, body):
    person = getattr(org, role)
    allowed = permission is None or permission in BUILTIN_ROLES[role]["permissions"]
    answer = api.call(
        method, _fill(path, org), as_=person, json=_fill(body, org), workspace=org.workspace["_id"]
    )
    if allowed:
        assert answer.status_code < 400, answer.get_json()
    else:
        assert answer.status_code == 403
        assert permission in answer.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "method,path,permission,body",
    [e for e in ENDPOINTS if e[2]],
    ids=[f"{m} {p}" for m, p, perm, _ in ENDPOINTS if perm],
)
def test_custom_role_holds_exactly_what_it_is_granted(api, org, method, path, permission, body):
    role = api.post(
        "/api/v1/roles", as_=org.owner, json={"name": "Just one", "permissions": [permission]}
    ).get_json()
    key = api.post(
        "/api/v1/api-keys", as_=org.owner, json={"name": "k1", "roleId": role["id"]}
    ).get_json()
    if (method, path) in (("POST", "/api/v1/api-keys"), ("POST", "/api/v1/members")):
        body = {**body, "roleId": role["id"]}  # nobody grants more than they hold
    if (method, path) == ("PATCH", "/api/v1/members/{member}"):
        # a member whose role is within the actor's permissions, given the actor's role
        empty = api.post("/api/v1/roles", as_=org.owner, json={"name": "Nothing"}).get_json()
        api.patch(
            f"/api/v1/members/{org.member.account_id}", as_=org.owner, json={"roleId": empty["id"]}
        )
        body = {"roleId": role["id"]}
    if (method, path) == ("PATCH", "/api/v1/roles/{member_role}"):
        empty = api.post("/api/v1/roles", as_=org.owner, json={"name": "Nothing"}).get_json()
        path = f"/api/v1/roles/{empty['id']}"
    answer = api.call(
        method,
        _fill(path, org),
        key=key["key"],
        json=_fill(body, org),
        workspace=org.workspace["_id"],
    )
    assert answer.status_code < 400, answer.get_json()
    others = [e for e in ENDPOINTS if e[2] and e[2] != permission and e[0] == "GET"]
    for other_method, other_path, _, _ in others[:3]:
        refused = api.call(
            other_method, _fill(other_path, org), key=key["key"], workspace=org.workspace["_id"]
        )
        assert refused.status_code == 403


@pytest.mark.parametrize(
    "method,path,permission,body", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_unauthenticated_is_401_everywhere(api, org, method, path, permission, body):
    answer = api.call(method, _fill(path, org), json=_fill(body, org))
    assert answer.status_code == 401


def test_a_permission_that_does_not_exist_fails_when_the_view_is_declared():
    from audit_app.auth.principal import require_permission

    with pytest.raises(ValueError, match=r"viewAuditLogs.*no such permission"):
        require_permission("viewAuditLogs")
    assert require_permission("viewAuditLog") and require_permission(None)
