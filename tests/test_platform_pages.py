"""The platform lists, a page at a time: the contract, its cursors, and the index each walks.

Every list of the API pages as the audit log does (``limit``, ``cursor`` -> ``nextCursor``).
On the embedded store each page is a walk of the list's index kept as a SQLite table
(``audit_app/sorted_store.py``): the plan of every walk the app sends is checked with
``EXPLAIN QUERY PLAN``. MongoDB's commands are pinned by the wire tests at the end.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from bson import ObjectId

from audit_app import sorted_store
from audit_app.api_keys import repository as api_keys
from audit_app.auth.tokens import issue_token
from audit_app.db import get_db, stores
from audit_app.ids import utcnow
from audit_app.organizations import repository as orgs
from audit_app.organizations import service as access
from audit_app.sorted_store import SortedIndex, plan_sql, sort_key
from audit_app.workspaces import repository as workspaces

from .factories import Api, make_org
from .test_web_session import login
from .wire import app_on, member_documents

LISTS = {
    "/api/v1/workspaces": "name",
    "/api/v1/members": "email",
    "/api/v1/roles": "name",
    "/api/v1/api-keys": "name",
    "/api/v1/invitations": "email",
    "/api/v1/audit-streams": "name",
}


def _fill(app, org, count=7):
    """``count`` more of each kind in the organization, through the repositories."""
    with app.app_context():
        db = get_db()
        role = org.roles["member"]["_id"]
        for i in range(count):
            workspaces.create_workspace(db, org.id, f"ws {i:02d}")
            orgs.create_role(db, org.id, f"role {i:02d}", [])
            api_keys.create_api_key(
                db, org.id, name=f"key {i:02d}", role_id=role, workspace_id=None, created_by=None
            )
            access.add_member_as_operator(
                org.id,
                f"person{i:02d}@{org.name.lower()}.example",
                "a-long-password",
                orgs.find_role(db, org.id, role),
            )
            orgs.create_invitation(
                db,
                org.id,
                email=f"invitee{i:02d}@elsewhere.example",
                role_id=role,
                invited_by={"accountId": org.owner.account_id},
                lifetime=timedelta(days=7, seconds=i),
            )
            workspaces.create_pathway(
                db, org.id, org.workspace["_id"], {"name": f"pathway {i:02d}"}, None
            )


def _walk(api, path, person, limit=3, **kw):
    """Every item of a list, page by page; and the pages' sizes."""
    items, sizes, cursor = [], [], None
    while True:
        joiner = "&" if "?" in path else "?"
        url = f"{path}{joiner}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        answer = api.get(url, as_=person, **kw)
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        items.extend(body["items"])
        sizes.append(len(body["items"]))
        cursor = body["nextCursor"]
        if cursor is None:
            return items, sizes


@pytest.fixture(params=["mongomock", "embedded"])
def filled(request, make_app):
    app = (
        make_app() if request.param == "mongomock" else make_app(MONGO_CLIENT=None, MONGO_URI=None)
    )
    org = make_org(app, "Paged")
    _fill(app, org)
    return app, org, Api(app.test_client())


@pytest.mark.parametrize("path", sorted(LISTS))
def test_every_list_pages_through_everything_once_in_its_order(filled, path):
    _app, org, api = filled
    walked = sorted_store.FALLBACKS[0]
    items, sizes = _walk(api, path, org.owner)
    first = api.get(path, as_=org.owner).get_json()
    ids = [item.get("id") or item.get("invitationId") or item["accountId"] for item in items]
    assert len(ids) == len(set(ids)) and len(ids) == len(first["items"])  # default limit 50
    assert all(size == 3 for size in sizes[:-1]) and sizes[-1] <= 3
    field = LISTS[path]
    keys = [item[field].lower() for item in items]
    if path in ("/api/v1/api-keys", "/api/v1/audit-streams"):
        assert [i["createdAt"] for i in items] == sorted(
            (i["createdAt"] for i in items), reverse=True
        )
    elif path != "/api/v1/invitations":
        assert keys == sorted(keys)
    assert sorted_store.FALLBACKS[0] == walked  # never litemongo's sort


def test_pathways_page_within_their_workspace(filled):
    _app, org, api = filled
    items, _ = _walk(api, "/api/v1/pathways", org.owner, workspace=org.workspace["_id"])
    assert [p["name"] for p in items] == [f"pathway {i:02d}" for i in reversed(range(7))]
    first = api.get("/api/v1/pathways?limit=2", as_=org.owner, workspace=org.workspace["_id"])
    cursor = first.get_json()["nextCursor"]
    other = api.get(
        f"/api/v1/pathways?cursor={cursor}", as_=org.owner, workspace=org.other_workspace["_id"]
    )
    assert other.status_code == 400 and other.get_json()["error"]["field"] == "cursor"


def test_members_search_by_the_start_of_an_email_any_case(filled):
    _app, org, api = filled
    items, _ = _walk(api, "/api/v1/members?email=PERSON0", org.owner, limit=2)
    assert [m["email"] for m in items] == [f"person{i:02d}@paged.example" for i in range(7)]
    none = api.get("/api/v1/members?email=nobody", as_=org.owner).get_json()
    assert none == {"items": [], "nextCursor": None}
    first = api.get("/api/v1/members?email=person&limit=2", as_=org.owner).get_json()
    other_search = api.get(
        f"/api/v1/members?email=admin&cursor={first['nextCursor']}", as_=org.owner
    )
    assert other_search.status_code == 400
    assert "another search" in other_search.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("limit=1&limit=2", "limit"),
        ("cursor=forged", "cursor"),
        ("cursor=" + "x" * 600, "cursor"),
        ("email=" + "a" * 300, "email"),
        ("email=a%00b", "email"),
        ("nope=1", "nope"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(filled, query, field):
    _app, org, api = filled
    for path in (*LISTS, "/api/v1/pathways"):
        if field == "email" and path != "/api/v1/members":
            continue
        answer = api.get(f"{path}?{query}", as_=org.owner, workspace=org.workspace["_id"])
        assert answer.status_code == 400, (path, query, answer.get_json())
        assert answer.get_json()["error"]["field"] == field


def test_an_attacker_gets_nothing_from_another_organizations_cursor(make_app):
    """As the attacker: a cursor issued to another organization, a cursor of another list,
    one with its payload edited, and one re-signed with a guessed key are all refused, and
    no item of the other organization ever appears."""
    app = make_app()
    victim, attacker = make_org(app, "Victim"), make_org(app, "Attacker")
    _fill(app, victim)
    api = Api(app.test_client())
    stolen = api.get("/api/v1/workspaces?limit=2", as_=victim.owner).get_json()["nextCursor"]
    answer = api.get(f"/api/v1/workspaces?cursor={stolen}", as_=attacker.owner)
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "cursor"
    keys_cursor = api.get("/api/v1/api-keys?limit=1", as_=attacker.owner).get_json()["nextCursor"]
    assert (
        api.get(f"/api/v1/workspaces?cursor={keys_cursor}", as_=attacker.owner).status_code == 400
    )
    payload, signature = stolen.rsplit(".", 1)
    edited = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    assert api.get(f"/api/v1/workspaces?cursor={edited}", as_=attacker.owner).status_code == 400
    from itsdangerous import URLSafeSerializer

    own = [f"{attacker.id}", "workspaces", "x", '{"v": ""}', str(ObjectId())]
    guessed = URLSafeSerializer("secret", salt="platform-list-cursor").dumps(own)
    assert api.get(f"/api/v1/workspaces?cursor={guessed}", as_=attacker.owner).status_code == 400
    for path in LISTS:
        items, _ = _walk(api, path, attacker.owner, limit=2)
        assert all("victim" not in str(item).lower() for item in items), path


def test_a_key_bound_to_a_workspace_still_lists_that_one_only(filled, bound_key_factory=None):
    _app, org, api = filled
    made = api.post(
        "/api/v1/api-keys",
        as_=org.owner,
        json={"name": "bound", "workspaceId": str(org.workspace["_id"])},
    ).get_json()
    answer = api.get("/api/v1/workspaces", key=made["key"]).get_json()
    assert [w["id"] for w in answer["items"]] == [str(org.workspace["_id"])]
    assert answer["nextCursor"] is None


@pytest.mark.parametrize(
    "page",
    [
        "/organization/members",
        "/organization/members?email=person",
        "/organization/roles",
        "/organization/api-keys",
        "/organization/audit-streams",
    ],
)
def test_the_web_pages_page_by_cursor(filled, page):
    app, org, _api = filled
    client = app.test_client()
    login(client, org.owner)
    with app.app_context():
        db = get_db()
        for i in range(60):
            workspaces.create_workspace(db, org.id, f"more {i:02d}")
            orgs.create_role(db, org.id, f"more role {i:02d}", [])
            api_keys.create_api_key(
                db,
                org.id,
                name=f"more {i:02d}",
                role_id=org.roles["member"]["_id"],
                workspace_id=None,
                created_by=None,
            )
            access.add_member_as_operator(
                org.id, f"person{i + 10:02d}@paged.example", "a-long-password", org.roles["member"]
            )
    first = client.get(page)
    text = first.get_data(as_text=True)
    if page.endswith("audit-streams"):
        assert first.status_code == 200  # no streams here: no pager
        return
    assert first.status_code == 200 and 'rel="next"' in text and 'rel="prev"' not in text
    next_url = (
        text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    )
    second = client.get(next_url)
    assert second.status_code == 200 and 'rel="prev"' in second.get_data(as_text=True)
    assert client.get(page + ("&" if "?" in page else "?") + "cursor=forged").status_code == 400


# The embedded store: the plan of every walk ------------------------------------------------


def test_every_walk_the_app_sends_uses_its_index_and_never_sorts(make_app):
    app = make_app(MONGO_CLIENT=None, MONGO_URI=None)
    org = make_org(app, "Plans")
    _fill(app, org)
    api = Api(app.test_client())
    sorted_store.WALKS.clear()
    before = sorted_store.FALLBACKS[0]
    with app.app_context():  # streams: through the repository (a stream needs a destination)
        from audit_app.pagination import PageRequest
        from audit_app.streams import repository as streams

        db = get_db()
        for i in range(3):
            streams.insert_stream(
                db, org.id, {"_id": ObjectId(), "name": f"s{i}", "createdAt": utcnow()}
            )
        page, more = streams.page_streams(db, org.id, PageRequest(2))
        assert more and len(page) == 2
    for path in (*LISTS, "/api/v1/members?email=person0", "/api/v1/pathways"):
        if path == "/api/v1/audit-streams":
            continue
        first = api.get(
            f"{path}{'&' if '?' in path else '?'}limit=2",
            as_=org.owner,
            workspace=org.workspace["_id"],
        )
        cursor = first.get_json()["nextCursor"]
        assert cursor, path
        joiner = "&" if "?" in path else "?"
        assert (
            api.get(
                f"{path}{joiner}limit=2&cursor={cursor}",
                as_=org.owner,
                workspace=org.workspace["_id"],
            ).status_code
            == 200
        )
    assert sorted_store.FALLBACKS[0] == before
    walked = {name for name, _, _ in sorted_store.WALKS}
    assert walked == {
        "org_name_id",
        "org_email_id",
        "org_newest_id",
        "org_pending_expiry",
        "org_workspace_newest_id",
    }
    collections = {
        "org_name_id": ("workspaces", "roles"),
        "org_email_id": ("memberships",),
        "org_newest_id": ("api_keys", "audit_streams"),
        "org_pending_expiry": ("invitations",),
        "org_workspace_newest_id": ("pathways",),
    }
    with app.app_context():
        database = stores(app)["main"].client["audit_app"]
        for name, sql, parameters in list(sorted_store.WALKS):
            for collection in collections[name]:
                store = database[collection]._store
                if name not in store.sorted_indexes:
                    continue
                plan = " / ".join(store.explain(sql, parameters))
                assert f"INDEX sorted_{name}_walk" in plan, plan
                assert "TEMP B-TREE" not in plan, plan  # the index gives the order
                assert "SCAN d" not in plan and "SCAN documents" not in plan, plan
                assert "LIMIT" in sql or "expiresAt" not in sql


def test_the_plan_is_none_when_the_index_cannot_give_the_sort():
    index = SortedIndex("org_name_id", (("organizationId", 1), ("nameLower", 1), ("_id", 1)))
    org = ObjectId()
    assert plan_sql(index, {"organizationId": org}, [("nameLower", 1), ("_id", 1)])
    assert plan_sql(index, {"organizationId": org}, [("nameLower", -1), ("_id", -1)])
    assert plan_sql(index, {"organizationId": org}, [("createdAt", 1)]) is None
    assert plan_sql(index, {}, [("nameLower", 1), ("_id", 1)]) is None  # no organization


def test_sort_keys_order_values_as_mongodb_does():
    now = utcnow()
    values = [
        None,
        -5,
        -0.5,
        0,
        2,
        10.5,
        "",
        "B",
        "a",
        "ab",
        "é",
        {"a": 1},
        [1],
        ObjectId(),
        False,
        True,
        now - timedelta(days=1),
        now,
    ]
    keys = [sort_key(v) for v in values]
    assert keys == sorted(keys)
    assert sort_key(0) == sort_key(0.0) == sort_key(-0.0)


def test_the_index_follows_every_write_and_a_store_of_an_earlier_version_is_filled(
    make_app, tmp_path
):
    app = make_app(MONGO_CLIENT=None, MONGO_URI=None)
    org = make_org(app, "Writes")
    api = Api(app.test_client())
    made = api.post("/api/v1/workspaces", as_=org.owner, json={"name": "zeta"}).get_json()
    api.patch(f"/api/v1/workspaces/{made['id']}", as_=org.owner, json={"name": "Alpha"})
    names = [w["name"] for w in api.get("/api/v1/workspaces", as_=org.owner).get_json()["items"]]
    assert names == ["Alpha", "Writes main", "Writes second"]
    api.delete(f"/api/v1/workspaces/{made['id']}", as_=org.owner)
    names = [w["name"] for w in api.get("/api/v1/workspaces", as_=org.owner).get_json()["items"]]
    assert names == ["Writes main", "Writes second"]
    with app.app_context():
        store = stores(app)["main"].client["audit_app"]["workspaces"]._store
        connection = store._connection
        connection.execute("DELETE FROM sorted_org_name_id")  # as an earlier version left it
        connection.execute("DELETE FROM info WHERE key = 'sorted:org_name_id'")
        connection.commit()
        assert connection.execute("SELECT count(*) FROM sorted_org_name_id").fetchone()[0] == 0
    for store in set(stores(app).values()):
        store.close()
    again = make_app(MONGO_CLIENT=None, MONGO_URI=None)
    api = Api(again.test_client())
    names = [w["name"] for w in api.get("/api/v1/workspaces", as_=org.owner).get_json()["items"]]
    assert names == ["Writes main", "Writes second"]


def test_memberships_of_an_earlier_version_get_their_email_once(app, db, org):
    db.memberships.update_many({}, {"$unset": {"emailLower": ""}})
    db.app_upgrades.delete_many({"_id": "membership-emails"})
    with app.app_context():
        assert orgs.fill_membership_emails(db) == 3
        assert orgs.fill_membership_emails(db) == 0
    emails = sorted(m["emailLower"] for m in db.memberships.find({"organizationId": org.id}))
    assert emails == ["admin@acme.example", "member@acme.example", "owner@acme.example"]


# MongoDB: the commands the driver sends ----------------------------------------------------

VIEW_ALL = [
    "viewWorkspaces",
    "viewMembers",
    "viewRoles",
    "viewApiKeys",
    "manageAuditStreams",
    "viewAuditLog",
    "viewPathways",
]


@pytest.fixture
def wired(server, tmp_path):
    documents, organization_id = member_documents(VIEW_ALL)
    server.documents.update(documents)
    app = app_on(server.uri, tmp_path)
    with app.app_context():
        token = issue_token(documents["accounts"][0], organization_id).token
    client = app.test_client()

    def get(path: str, **headers):
        return client.get(path, headers={"Authorization": f"Bearer {token}", **headers})

    get.organization_id = organization_id
    yield get
    for store in set(stores(app).values()):
        store.close()


@pytest.mark.parametrize(
    "path, collection, hint, sort, extra",
    [
        ("/api/v1/workspaces", "workspaces", "org_name_id", {"nameLower": 1, "_id": 1}, {}),
        ("/api/v1/roles", "roles", "org_name_id", {"nameLower": 1, "_id": 1}, {}),
        ("/api/v1/members", "memberships", "org_email_id", {"emailLower": 1, "_id": 1}, {}),
        (
            "/api/v1/members?email=Ana",
            "memberships",
            "org_email_id",
            {"emailLower": 1, "_id": 1},
            {"emailLower": {"$gte": "ana", "$lt": "anb"}},
        ),
        ("/api/v1/api-keys", "api_keys", "org_newest_id", {"createdAt": -1, "_id": -1}, {}),
        (
            "/api/v1/audit-streams",
            "audit_streams",
            "org_newest_id",
            {"createdAt": -1, "_id": -1},
            {},
        ),
        (
            "/api/v1/invitations",
            "invitations",
            "org_pending_expiry",
            {"expiresAt": 1, "_id": 1},
            {"acceptedAt": None, "revokedAt": None},
        ),
    ],
)
def test_each_list_is_one_hinted_walk_of_limit_plus_one(
    server, wired, path, collection, hint, sort, extra
):
    joiner = "&" if "?" in path else "?"
    answer = wired(f"{path}{joiner}limit=20")
    assert answer.status_code == 200, answer.get_json()
    [find] = server.sent("find", collection)[-1:]
    assert find["hint"] == hint
    assert find["sort"] == sort
    assert find["limit"] == 21
    assert find["filter"]["organizationId"] == wired.organization_id
    for name, value in extra.items():
        assert find["filter"][name] == value
    if collection == "invitations":
        assert set(find["filter"]["expiresAt"]) == {"$gt"}


def test_the_next_page_is_bounded_by_its_cursor_on_the_index(server, wired):
    now = utcnow().replace(microsecond=0)
    server.documents["workspaces"] = [
        {
            "_id": ObjectId(),
            "organizationId": wired.organization_id,
            "name": n,
            "nameLower": n,
            "createdAt": now,
        }
        for n in ("a", "b", "c")
    ]
    first = wired("/api/v1/workspaces?limit=2").get_json()
    assert first["nextCursor"]
    last = server.documents["workspaces"][1]
    assert wired(f"/api/v1/workspaces?limit=2&cursor={first['nextCursor']}").status_code == 200
    find = server.sent("find", "workspaces")[-1]
    assert find["filter"]["organizationId"] == wired.organization_id
    assert find["filter"]["$and"] == [
        {"nameLower": {"$gte": "b"}},
        {"$or": [{"nameLower": {"$gt": "b"}}, {"_id": {"$gt": last["_id"]}}]},
    ]
    assert find["hint"] == "org_name_id" and find["limit"] == 3


def test_pathways_walk_their_workspace_on_its_index(server, wired):
    workspace_id = ObjectId()
    server.documents["workspaces"] = [
        {
            "_id": workspace_id,
            "organizationId": wired.organization_id,
            "name": "w",
            "nameLower": "w",
        }
    ]
    answer = wired("/api/v1/pathways?limit=5", **{"X-Workspace-Id": str(workspace_id)})
    assert answer.status_code == 200, answer.get_json()
    find = server.sent("find", "pathways")[-1]
    assert find["filter"] == {"organizationId": wired.organization_id, "workspaceId": workspace_id}
    assert find["sort"] == {"createdAt": -1, "_id": -1}
    assert find["hint"] == "org_workspace_newest_id" and find["limit"] == 6
