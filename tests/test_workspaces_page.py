"""Organization -> Workspaces (issue #26, item 8): list (paged), create, rename, delete (which
asks first), each workspace's audit log a click away; the API's permissions, tenancy and
records. Judged by effect: in the store, in the records, on the page."""

from __future__ import annotations

import html
import re

import pytest
from bson import ObjectId

from audit_app.db import get_db
from audit_app.organizations import repository as orgs
from audit_app.organizations import service as access
from audit_app.workspaces import repository as workspaces

from .factories import PASSWORD, Api, Person, make_org
from .test_web_session import csrf_from, signed_in

PAGE = "/organization/workspaces"


@pytest.fixture
def app(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


@pytest.fixture
def owner(app, org):
    return signed_in(app, org.owner)


def _token(client) -> str:
    return csrf_from(client.get("/organization/settings").get_data(as_text=True))


def _record(db, response):
    return db.audit_logs.find_one({"requestId": response.headers["X-Request-Id"]})


def _person_with(app, org, name: str, permissions: list[str]) -> Person:
    """A member whose custom role holds exactly ``permissions``."""
    slug = name.lower().replace(" ", "-")
    with app.app_context():
        role = orgs.create_role(get_db(), org.id, name, permissions)
        account = access.add_member_as_operator(org.id, f"{slug}@acme.example", PASSWORD, role)[
            "account"
        ]
    return Person(account["email"], PASSWORD, account["_id"], name)


def _hidden_fields(page: str) -> dict[str, str]:
    form = page.split('class="confirm-form"', 1)[1].split("</form>", 1)[0]
    return {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
    }


def _comparable(record) -> dict:
    """What a web action's record and the API's must share."""
    return {
        "action": record["action"],
        "outcome": record["outcome"],
        "targets": [t["type"] for t in record.get("targets", [])],
        "changes": sorted(change["field"] for change in record.get("changes", [])),
        "hasWorkspace": record.get("workspaceId") is not None,
    }


# The list ------------------------------------------------------------------------------------


def test_the_page_lists_workspaces_by_name_each_with_its_audit_log(app, org, owner, db):
    answer = owner.get(PAGE)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    main, second = str(org.workspace["_id"]), str(org.other_workspace["_id"])
    assert page.index("Acme main") < page.index("Acme second")  # by name
    for workspace_id, name in ((main, "Acme main"), (second, "Acme second")):
        row = page.split(f'id="workspace-{workspace_id}"', 1)[1].split("</tr>", 1)[0]
        assert name in row and workspace_id in row  # the name, and the id support pastes
        link = f'href="/organization/audit-logs?workspaceId={workspace_id}"'
        assert link in row and f"Audit log of {name}" in row
    assert 'href="/organization/workspaces" aria-current="page">Workspaces</a>' in page
    assert "Create workspace" in page and 'id="read-only"' not in page


def test_the_link_opens_the_audit_log_of_that_workspace(app, org, owner, db):
    made = owner.post(PAGE, data={"csrf_token": _token(owner), "name": "Linked"})
    assert made.status_code == 302
    linked = db.workspaces.find_one({"organizationId": org.id, "name": "Linked"})
    page = owner.get(PAGE).get_data(as_text=True)
    href = re.search(rf'href="([^"]*workspaceId={linked["_id"]})"', page).group(1)
    listed = owner.get(html.unescape(href))
    assert listed.status_code == 200
    shown = listed.get_data(as_text=True)
    assert "/organization/workspaces" in shown  # the record of its creation, on the page
    assert str(org.other_workspace["_id"]) not in shown


def test_the_list_pages_by_cursor(app, org, owner):
    with app.app_context():
        for i in range(60):
            workspaces.create_workspace(get_db(), org.id, f"Team {i:02d}")
    first = owner.get(PAGE).get_data(as_text=True)
    shown = re.findall(r'<span class="workspace-name">([^<]+)</span>', first)
    assert len(shown) == 50 and shown == sorted(shown, key=str.lower)
    following = html.unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))
    second = owner.get(following).get_data(as_text=True)
    rest = re.findall(r'<span class="workspace-name">([^<]+)</span>', second)
    assert len(rest) == 12 and not set(rest) & set(shown)  # 60 + the 2 of make_org
    assert 'rel="prev"' in second and 'rel="next"' not in second
    assert owner.get(f"{PAGE}?cursor=forged").status_code == 400


# Create, rename, delete: recorded as the API records them -------------------------------------


def test_creating_renaming_and_deleting_are_recorded_as_the_api_records_them(app, org, owner, db):
    api = Api(app.test_client())
    token = _token(owner)

    made = owner.post(PAGE, data={"csrf_token": token, "name": " Research ", "description": "R&D"})
    assert made.status_code == 302
    assert "Workspace &#39;Research&#39; created." in owner.get(PAGE).get_data(as_text=True)
    research = db.workspaces.find_one({"organizationId": org.id, "name": "Research"})
    assert research["description"] == "R&D"
    web = _record(db, made)
    assert web["workspaceId"] == research["_id"] and web["response"]["id"] == str(research["_id"])
    assert web["targets"] == [{"type": "workspace", "id": research["_id"], "name": "Research"}]
    by_api = api.post(
        "/api/v1/workspaces", as_=org.owner, json={"name": "Sales", "description": "S"}
    )
    assert _comparable(web) == _comparable(_record(db, by_api))

    renamed = owner.post(f"{PAGE}/{research['_id']}", data={"csrf_token": token, "name": "Labs"})
    assert renamed.status_code == 302
    assert db.workspaces.find_one({"_id": research["_id"]})["name"] == "Labs"
    web = _record(db, renamed)
    assert web["action"] == "workspace.update" and web["workspaceId"] == research["_id"]
    assert {"field": "name", "from": "Research", "to": "Labs"} in web["changes"]
    sales = by_api.get_json()["id"]
    by_api = api.patch(f"/api/v1/workspaces/{sales}", as_=org.owner, json={"name": "Sales EU"})
    assert _comparable(web) == _comparable(_record(db, by_api))

    with app.app_context():  # what goes with it: its pathways, the keys bound to it
        workspaces.create_pathway(get_db(), org.id, research["_id"], {"name": "p"}, None)
    bound = api.post(
        "/api/v1/api-keys",
        as_=org.owner,
        json={
            "name": "bound",
            "roleId": str(org.roles["member"]["_id"]),
            "workspaceId": str(research["_id"]),
        },
    ).get_json()["id"]
    asked = owner.post(f"{PAGE}/{research['_id']}/delete", data={"csrf_token": token})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Delete workspace Labs?" in page
    assert "API keys bound to it are revoked" in page and f'href="{PAGE}"' in page
    assert db.workspaces.find_one({"_id": research["_id"]}) is not None  # nothing yet
    record = _record(db, asked)
    assert record["action"] == "workspace.deleteAsked" and "changes" not in record
    assert record["targets"] == [{"type": "workspace", "id": research["_id"], "name": "Labs"}]

    deleted = owner.post(f"{PAGE}/{research['_id']}/delete", data=_hidden_fields(page))
    assert deleted.status_code == 302
    assert db.workspaces.find_one({"_id": research["_id"]}) is None
    assert db.pathways.count_documents({"workspaceId": research["_id"]}) == 0
    assert db.api_keys.find_one({"_id": ObjectId(bound)})["revokedAt"] is not None
    web = _record(db, deleted)
    assert web["action"] == "workspace.delete" and web["workspaceId"] == research["_id"]
    assert {"field": "pathways", "from": 1, "to": None} in web["changes"]
    by_api = api.delete(f"/api/v1/workspaces/{sales}", as_=org.owner)
    assert _comparable(web)["action"] == _comparable(_record(db, by_api))["action"]
    assert _comparable(web)["targets"] == _comparable(_record(db, by_api))["targets"]
    assert "Workspace &#39;Labs&#39; deleted." in owner.get(PAGE).get_data(as_text=True)


def test_a_refused_form_comes_back_as_typed(app, org, owner, db):
    token = _token(owner)
    duplicate = owner.post(
        PAGE, data={"csrf_token": token, "name": "acme MAIN", "description": "typed words"}
    )
    page = duplicate.get_data(as_text=True)
    assert duplicate.status_code == 409
    section = page.split('id="new-workspace"', 1)[1]
    assert "A workspace with this name already exists." in section.split("</p>", 1)[0]
    assert 'value="acme MAIN"' in section and 'value="typed words"' in section
    assert 'aria-invalid="true"' in section.split('id="workspace-name"', 1)[1].split(">", 1)[0]
    assert _record(db, duplicate)["response"]["errorCode"] == "conflict"

    empty = owner.post(PAGE, data={"csrf_token": token, "name": "   "})
    assert empty.status_code == 400 and "name: Must not be empty." in empty.get_data(True)
    too_long = owner.post(PAGE, data={"csrf_token": token, "name": "x" * 201})
    assert too_long.status_code == 400 and "name:" in too_long.get_data(True)

    second = org.other_workspace["_id"]
    clash = owner.post(f"{PAGE}/{second}", data={"csrf_token": token, "name": "Acme Main"})
    row = clash.get_data(as_text=True).split(f'id="workspace-{second}"', 1)[1].split("</tr>")[0]
    assert clash.status_code == 409 and 'value="Acme Main"' in row
    assert "already exists" in row
    assert db.workspaces.count_documents({"organizationId": org.id}) == 2
    assert db.workspaces.find_one({"_id": second})["name"] == "Acme second"


# Who may: the API's permissions ---------------------------------------------------------------


def _changes(client, org, token):
    """Every change the page offers, on the organization's first workspace."""
    workspace = org.workspace["_id"]
    return [
        client.post(PAGE, data={"csrf_token": token, "name": "Mine"}),
        client.post(f"{PAGE}/{workspace}", data={"csrf_token": token, "name": "Renamed"}),
        client.post(f"{PAGE}/{workspace}/delete", data={"csrf_token": token}),
        client.post(f"{PAGE}/{workspace}/delete", data={"csrf_token": token, "confirm": "yes"}),
    ]


def _unchanged(db, org) -> bool:
    names = {w["name"] for w in db.workspaces.find({"organizationId": org.id})}
    return names == {"Acme main", "Acme second"}


def test_a_member_sees_the_list_read_only_and_may_change_nothing(app, org, db):
    member = signed_in(app, org.member)  # Member: viewWorkspaces, not manageWorkspaces
    page = member.get(PAGE).get_data(as_text=True)
    assert "Acme main" in page and 'id="read-only"' in page and "manageWorkspaces" in page
    assert "Create workspace" not in page and "/delete" not in page and "Rename" not in page
    assert "Audit log of" not in page and "needs viewAuditLog" in page  # no dead-end link
    for answer in _changes(member, org, _token(member)):
        assert answer.status_code == 403
        record = _record(db, answer)
        assert record["outcome"] == "failure" and record["statusCode"] == 403
    assert _unchanged(db, org)


def test_a_custom_role_without_view_workspaces_is_refused_the_page(app, org, db):
    person = _person_with(app, org, "Auditor", ["viewMembers", "viewAuditLog"])
    client = signed_in(app, person)
    assert client.get(PAGE).status_code == 403
    assert 'href="/organization/workspaces"' not in client.get("/").get_data(as_text=True)
    for answer in _changes(client, org, _token(client)):
        assert answer.status_code == 403
    assert _unchanged(db, org)


def test_a_custom_role_that_manages_workspaces_needs_no_more(app, org, db):
    person = _person_with(app, org, "Workspace admin", ["viewWorkspaces", "manageWorkspaces"])
    client = signed_in(app, person)
    page = client.get(PAGE).get_data(as_text=True)
    assert "Create workspace" in page and "Audit log of" not in page
    made = client.post(PAGE, data={"csrf_token": _token(client), "name": "Theirs"})
    assert made.status_code == 302
    assert db.workspaces.find_one({"organizationId": org.id, "name": "Theirs"}) is not None


# Another organization's workspace, CSRF, other credentials -----------------------------------


def test_another_organizations_workspace_is_a_404_and_stays(app, org, other_org, owner, db):
    token = _token(owner)
    theirs = other_org.workspace["_id"]
    for url, data in (
        (f"{PAGE}/{theirs}", {"name": "Taken"}),
        (f"{PAGE}/{theirs}/delete", {}),
        (f"{PAGE}/{theirs}/delete", {"confirm": "yes"}),
        (f"{PAGE}/not-an-id/delete", {"confirm": "yes"}),
        (f"{PAGE}/{ObjectId()}", {"name": "Ghost"}),
    ):
        answer = owner.post(url, data={"csrf_token": token, **data})
        assert answer.status_code == 404, url
        assert "Globex main" not in answer.get_data(as_text=True)
    assert db.workspaces.find_one({"_id": theirs})["name"] == "Globex main"
    assert "Globex" not in owner.get(PAGE).get_data(as_text=True)


def test_every_change_needs_the_csrf_token(app, org, owner, db):
    for token in (None, "forged"):
        for answer in _changes(owner, org, token):
            assert answer.status_code == 400
    assert _unchanged(db, org)


def test_an_api_key_is_no_credential_for_the_page(app, org, db, make_app):
    api = Api(app.test_client())
    bound = api.post(
        "/api/v1/api-keys",
        as_=org.owner,
        json={
            "name": "ws",
            "roleId": str(org.roles["admin"]["_id"]),
            "workspaceId": str(org.workspace["_id"]),
        },
    ).get_json()["key"]
    client = app.test_client()
    for key in (bound, org.api_key):
        answer = client.get(PAGE, headers={"X-API-Key": key})
        assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_the_page_works_on_the_embedded_store(embedded):
    """The store ``make run`` uses: the list walks its index, and the workspace's audit log
    behind the link holds what the page did."""
    app = embedded(WTF_CSRF_ENABLED=True)
    org = make_org(app, "Acme")
    owner = signed_in(app, org.owner)
    with app.app_context():
        for i in range(55):
            workspaces.create_workspace(get_db(), org.id, f"Team {i:02d}")
    token = _token(owner)
    assert owner.post(PAGE, data={"csrf_token": token, "name": "Embedded"}).status_code == 302
    with app.app_context():
        made = workspaces.find_workspace_by_name(get_db(), org.id, "Embedded")
    url = f"{PAGE}/{made['_id']}"
    assert owner.post(url, data={"csrf_token": token, "name": "Embedded 2"}).status_code == 302
    first = owner.get(PAGE).get_data(as_text=True)
    following = html.unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))
    second = owner.get(following).get_data(as_text=True)
    names = re.findall(r'<span class="workspace-name">([^<]+)</span>', first + second)
    assert len(names) == 58 and "Embedded 2" in names
    log = owner.get(f"/organization/audit-logs?workspaceId={made['_id']}").get_data(True)
    assert f"{PAGE}/{made['_id']}" in log  # the rename, in the workspace's own log
    confirmed = {"csrf_token": token, "confirm": "yes"}
    assert owner.post(f"{url}/delete", data=confirmed).status_code == 302
    after = owner.get(PAGE).get_data(as_text=True)
    assert "Workspace &#39;Embedded 2&#39; deleted." in after
    assert '<span class="workspace-name">Embedded 2</span>' not in after
