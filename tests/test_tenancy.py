"""Two organizations cannot see or touch each other's objects: always a 404, never data."""

import pytest

CROSS = [
    ("GET", "/api/v1/workspaces/{ws}", None),
    ("PATCH", "/api/v1/workspaces/{ws}", {"name": "stolen"}),
    ("DELETE", "/api/v1/workspaces/{ws}", None),
    ("GET", "/api/v1/pathways/{pathway}", None),
    ("PATCH", "/api/v1/pathways/{pathway}", {"name": "stolen"}),
    ("DELETE", "/api/v1/pathways/{pathway}", None),
    ("PATCH", "/api/v1/members/{member}", {"roleId": "{own_member_role}"}),
    ("DELETE", "/api/v1/members/{member}", None),
    ("GET", "/api/v1/roles/{role}", None),
    ("PATCH", "/api/v1/roles/{role}", {"permissions": []}),
    ("DELETE", "/api/v1/roles/{role}", None),
    ("DELETE", "/api/v1/api-keys/{key}", None),
]


@pytest.fixture
def victim_pathway(api, other_org):
    return api.post(
        "/api/v1/pathways",
        as_=other_org.owner,
        workspace=other_org.workspace["_id"],
        json={"name": "Victim's pathway"},
    ).get_json()


@pytest.mark.parametrize("credential", ["jwt", "apiKey"])
@pytest.mark.parametrize("method,path,body", CROSS, ids=[f"{m} {p}" for m, p, _ in CROSS])
def test_another_organizations_objects_are_404(
    api, org, other_org, victim_pathway, credential, method, path, body
):
    ids = {
        "ws": other_org.workspace["_id"],
        "pathway": victim_pathway["id"],
        "member": other_org.member.account_id,
        "role": other_org.roles["member"]["_id"],
        "key": other_org.api_key_id,
        "own_member_role": org.roles["member"]["_id"],
    }
    fill = {k: str(v) for k, v in ids.items()}
    url = path.format(**fill)
    json_body = {
        k: (v.format(**fill) if isinstance(v, str) else v) for k, v in (body or {}).items()
    } or None
    auth = {"as_": org.owner} if credential == "jwt" else {"key": org.api_key}
    # The attacker even names the victim's workspace in the header: still nothing.
    answer = api.call(method, url, json=json_body, workspace=other_org.workspace["_id"], **auth)
    assert answer.status_code == 404
    assert "Victim" not in answer.get_data(as_text=True)
    # and the victim's object is untouched
    assert (
        api.get(
            f"/api/v1/pathways/{victim_pathway['id']}",
            as_=other_org.owner,
            workspace=other_org.workspace["_id"],
        ).get_json()["name"]
        == "Victim's pathway"
    )


def test_lists_show_only_the_callers_organization(api, org, other_org):
    for path in ("/api/v1/workspaces", "/api/v1/members", "/api/v1/roles", "/api/v1/api-keys"):
        mine = api.get(path, as_=org.owner).get_data(as_text=True)
        assert "globex" not in mine.lower(), path
        assert str(other_org.workspace["_id"]) not in mine


def test_organization_endpoint_is_the_callers_own(api, org, other_org):
    assert api.get("/api/v1/organization", key=other_org.api_key).get_json()["id"] == str(
        other_org.id
    )
    assert api.get("/api/v1/organization", as_=org.member).get_json()["id"] == str(org.id)
