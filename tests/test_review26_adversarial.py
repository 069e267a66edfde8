"""Adversarial review of issue #26 items 4 (Audit Streams form), 6 (search edges) and 8
(the Workspaces page). Each test asserts the SAFE behaviour: it fails if the hole exists."""

from __future__ import annotations

import json
import logging
import time

import pytest
from bson import ObjectId

from audit_app.db import get_audit_db, get_db
from audit_app.workspaces import repository as workspaces

from .factories import Api, audit_record, make_org, settled
from .test_web_session import csrf_from, login, signed_in
from .test_workspaces_page import _record, _token

PAGE = "/organization/workspaces"
LOG = "/organization/audit-logs"
XSS = '<img src=x onerror="alert(1)">'


@pytest.fixture
def app(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


@pytest.fixture
def owner(app, org):
    return signed_in(app, org.owner)


# Item 8: the Workspaces page ------------------------------------------------------------------


def test_a_name_with_markup_is_text_on_the_list_the_confirmation_the_flash_and_the_chip(
    app, org, owner, db
):
    token = _token(owner)
    made = owner.post(PAGE, data={"csrf_token": token, "name": XSS, "description": XSS})
    assert made.status_code == 302
    workspace = db.workspaces.find_one({"organizationId": org.id, "name": XSS})
    pages = [owner.get(PAGE).get_data(as_text=True)]  # the list and the flash
    asked = owner.post(f"{PAGE}/{workspace['_id']}/delete", data={"csrf_token": token})
    pages.append(asked.get_data(as_text=True))  # the confirmation page
    pages.append(owner.get(f"{LOG}?workspaceId={workspace['_id']}").get_data(as_text=True))
    for page in pages:
        assert XSS not in page
        assert "<img" not in page


def test_another_tenants_workspace_id_in_the_log_link_never_shows_its_name(
    app, org, other_org, owner
):
    theirs = other_org.workspace["_id"]
    for args in (f"workspaceId={theirs}", f"workspaceId={theirs}&q={'x' * 201}"):
        page = owner.get(f"{LOG}?{args}").get_data(as_text=True)
        assert "Globex" not in page


def test_another_tenants_api_key_id_in_the_log_link_never_shows_its_name(
    app, org, other_org, owner
):
    page = owner.get(f"{LOG}?apiKeyId={other_org.api_key_id}").get_data(as_text=True)
    shown = (
        page.split('id="filter-chips"', 1)[1].split("</ul>", 1)[0] if "filter-chips" in page else ""
    )
    assert "API key: ci" not in shown


@pytest.mark.parametrize(
    "data",
    [
        {"name": "x" * 10_000},
        {"name": "ok", "description": "d" * 100_000},
        {"name": "\x00nul"},
        {"name": "\u0130"},  # İ: lower() is two characters
        {"name": ["a", "b"]},
        {},
    ],
)
def test_odd_names_are_never_a_500(app, org, owner, data):
    answer = owner.post(PAGE, data={"csrf_token": _token(owner), **data})
    assert answer.status_code < 500


def test_rename_with_odd_names_is_never_a_500(app, org, owner, db):
    token = _token(owner)
    workspace = org.workspace["_id"]
    for data in ({"name": "x" * 10_000}, {"name": "   "}, {}, {"name": "Acme SECOND"}):
        answer = owner.post(f"{PAGE}/{workspace}", data={"csrf_token": token, **data})
        assert 400 <= answer.status_code < 500, data
    assert db.workspaces.find_one({"_id": workspace})["name"] == "Acme main"


def test_a_bearer_token_or_api_key_cannot_change_workspaces_through_the_page(app, org, db):
    api = Api(app.test_client())
    jwt = api.token(org.owner)
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
    workspace = org.workspace["_id"]
    for headers in ({"Authorization": f"Bearer {jwt}"}, {"X-API-Key": bound}):
        client.post(PAGE, data={"name": "ByToken"}, headers=headers)
        client.post(f"{PAGE}/{workspace}", data={"name": "ByToken2"}, headers=headers)
        client.post(f"{PAGE}/{workspace}/delete", data={"confirm": "yes"}, headers=headers)
    names = {w["name"] for w in db.workspaces.find({"organizationId": org.id})}
    assert names == {"Acme main", "Acme second"}


def test_confirmation_replayed_on_another_tenants_id_changes_nothing(
    app, org, other_org, owner, db
):
    token = _token(owner)
    ours = org.other_workspace["_id"]
    asked = owner.post(f"{PAGE}/{ours}/delete", data={"csrf_token": token, "x": "1"})
    assert asked.status_code == 200
    theirs = other_org.workspace["_id"]
    answer = owner.post(
        f"{PAGE}/{theirs}/delete",
        data={"csrf_token": token, "confirm": "yes", "workspaceId": str(ours)},
    )
    assert answer.status_code == 404
    assert db.workspaces.find_one({"_id": theirs}) is not None
    assert db.workspaces.find_one({"_id": ours}) is not None


def test_the_web_delete_record_holds_no_secret_of_the_revoked_keys(app, org, owner, db):
    api = Api(app.test_client())
    made = api.post(
        "/api/v1/api-keys",
        as_=org.owner,
        json={
            "name": "bound",
            "roleId": str(org.roles["member"]["_id"]),
            "workspaceId": str(org.other_workspace["_id"]),
        },
    ).get_json()
    answer = owner.post(
        f"{PAGE}/{org.other_workspace['_id']}/delete",
        data={"csrf_token": _token(owner), "confirm": "yes"},
    )
    assert answer.status_code == 302
    record = _record(db, answer)
    assert made["key"] not in json.dumps(record, default=str)


# Item 4: the Audit Streams form --------------------------------------------------------------

SECRET = "S3cretPassw0rd"


@pytest.fixture
def guarded(make_app):
    return make_app(WTF_CSRF_ENABLED=True, AUDIT_STREAM_ALLOW_PRIVATE=False)


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{SECRET}@exa\u2100mple.com/hook",  # NFKC: urlsplit's error quotes netloc
        f"https://user:{SECRET}@host:99999999/hook",
        f"https://user:{SECRET}@[::1/hook",
        f"https://{SECRET}@host/hook",
    ],
)
def test_a_refused_url_with_credentials_never_reaches_the_record_or_the_logs(guarded, caplog, url):
    org = make_org(guarded, "Creds")
    client = signed_in(guarded, org.owner)
    token = csrf_from(client.get("/organization/audit-streams").get_data(as_text=True))
    with caplog.at_level(logging.DEBUG):
        answer = client.post(
            "/organization/audit-streams",
            data={"csrf_token": token, "name": "S", "type": "webhook", "url": url},
        )
        by_api = Api(guarded.test_client()).post(
            "/api/v1/audit-streams",
            as_=org.owner,
            json={"name": "S", "destination": {"type": "webhook", "url": url}},
        )
    assert 400 <= answer.status_code < 500 and 400 <= by_api.status_code < 500
    with guarded.app_context():
        settled(guarded)
        stored = list(get_audit_db().audit_logs.find({"organizationId": org.id}))
    assert SECRET not in json.dumps(stored, default=str)
    assert SECRET not in json.dumps(by_api.get_json())  # the API's answer
    assert SECRET not in caplog.text
    # the page's message beside the form names no password either (the field keeps it)
    page = answer.get_data(as_text=True)
    if 'id="stream-error"' in page:
        assert SECRET not in page.split('id="stream-error"', 1)[1].split("</p>", 1)[0]


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1]/hook",
        "https://2130706433/hook",
        "https://0x7f000001/hook",
        "https://127.1/hook",
        "https://0177.0.0.1/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::ffff:7f00:1]/hook",
        "https://0.0.0.0/hook",
        "https://[::]/hook",
        "https://localhost./hook",
        "https://LOCALHOST/hook",
        "https://169.254.169.254/latest",
        "https://[fe80::1%25eth0]/hook",
    ],
)
def test_private_destinations_in_disguise_are_refused_with_the_hint(guarded, url):
    org = make_org(guarded, "Priv")
    client = signed_in(guarded, org.owner)
    token = csrf_from(client.get("/organization/audit-streams").get_data(as_text=True))
    answer = client.post(
        "/organization/audit-streams",
        data={"csrf_token": token, "name": "S", "type": "webhook", "url": url},
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code in (400, 422), page[:300]
    with guarded.app_context():
        assert get_db().audit_streams.count_documents({}) == 0


def test_a_refused_splunk_form_never_echoes_the_token_anywhere(guarded, caplog):
    org = make_org(guarded, "Tok")
    client = signed_in(guarded, org.owner)
    token = csrf_from(client.get("/organization/audit-streams").get_data(as_text=True))
    hec = "hec-" + SECRET
    with caplog.at_level(logging.DEBUG):
        answer = client.post(
            "/organization/audit-streams",
            data={
                "csrf_token": token,
                "name": "Splunk",
                "type": "splunk",
                "url": "https://127.0.0.1/services/collector",
                "token": hec,
                "q": "x",
            },
        )
    assert answer.status_code in (400, 422)
    page = answer.get_data(as_text=True)
    assert hec not in page
    assert hec not in caplog.text
    with guarded.app_context():
        settled(guarded)
        stored = list(get_audit_db().audit_logs.find({"organizationId": org.id}))
    assert hec not in json.dumps(stored, default=str)


# Item 6: the search's edges --------------------------------------------------------------------


@pytest.fixture
def api(app):
    return Api(app.test_client())


def _found(api, org, q, **params):
    answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"q": q, **params})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["items"]


def test_minus_actor_of_a_staff_email_leaves_out_what_actor_finds(app, org, api, db):
    """``actor:<staff email>`` finds the staff member's records; ``-actor:`` of the same
    email must leave them out (an exclusion that excludes nothing widens the answer)."""
    email = "sam@platform.example"
    db.staff_accounts.insert_one({"_id": ObjectId(), "email": email, "name": "Sam"})
    staff = audit_record(
        org.id, authType="staff", accountEmail=email, action="auditLog.list", path="/staff/x"
    )
    db.audit_logs.insert_one(staff)
    found = {i["id"] for i in _found(api, org, f"actor:{email}")}
    assert str(staff["_id"]) in found
    kept = {i["id"] for i in _found(api, org, f"-actor:{email}", limit="200")}
    assert str(staff["_id"]) not in kept


@pytest.mark.parametrize(
    "q",
    [
        "action:\u017ftaff.*",  # U+017F (long s) folds to s
        "action:\u212aey.list",  # Kelvin sign folds to k
        "action:aud\u0131tLog.list",  # U+0131 (dotless i)
        "-action:aud\u0131tLog.list",
        "action:\u0130nvitation.revoke",
        "status:4\uff58\uff58",
        "-status:\u0664xx",  # Arabic-Indic 4
        "method:\u0131",
    ],
)
def test_unicode_case_folding_never_matches_a_declared_action(app, org, api, db, q):
    db.audit_logs.insert_many(
        [
            audit_record(org.id, action="staff.lookup"),
            audit_record(org.id, action="apiKey.list"),
            audit_record(org.id, action="auditLog.list"),
            audit_record(org.id, action="invitation.revoke", statusCode=404),
        ]
    )
    answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"q": q, "limit": 200})
    assert answer.status_code < 500
    if answer.status_code == 200:
        items = answer.get_json()["items"]
        if q.startswith("-"):
            return
        assert items == [], (q, [i["action"] for i in items])


@pytest.mark.parametrize(
    "path,extra",
    [
        ("/api/v1/audit-logs", {}),
        ("/api/v1/audit-logs/export", {"format": "ndjson"}),
        ("/api/v1/audit-logs/histogram", {}),
    ],
)
def test_the_200_character_limit_holds_on_every_door(app, org, api, path, extra):
    for params in (
        {"q": "a" * 201},
        {"path": "b" * 201},
        {"q": "-path:" + "c" * 195},
        {"q": " " * 5 + "d" * 201},
    ):
        answer = api.get(path, as_=org.owner, query_string={**params, **extra})
        assert answer.status_code == 400, (path, params)


def test_the_limit_holds_on_the_pages_export_and_a_streams_filter(app, org, owner, api):
    assert owner.get(f"{LOG}/export?format=ndjson&q={'a' * 201}").status_code == 400
    assert owner.get(f"{LOG}?q=a&q={'a' * 201}").status_code == 400
    made = api.post(
        "/api/v1/audit-streams",
        as_=org.owner,
        json={
            "name": "S",
            "destination": {"type": "webhook", "url": "https://siem.example.com/hook"},
            "filters": {"q": "z" * 201},
        },
    )
    assert made.status_code in (400, 422)


def test_hide_my_views_never_hides_another_accounts_or_a_non_view(app, org, owner, db):
    """Only the viewer's own page views go: another admin's page views, the viewer's
    other actions and reads of the log by another route stay."""
    others = [
        audit_record(
            org.id, accountId=org.admin.account_id, action="auditLog.view", authType="session"
        ),
        audit_record(
            org.id,
            accountId=org.admin.account_id,
            action="auditLog.viewIntegrity",
            authType="session",
        ),
        audit_record(
            org.id, accountId=org.owner.account_id, action="auditLog.export", authType="session"
        ),
        audit_record(
            org.id, accountId=org.owner.account_id, action="workspace.update", authType="session"
        ),
        audit_record(org.id, accountId=None, action="auditLog.list", authType="session"),
        audit_record(
            org.id, accountId=org.owner.account_id, action="auditLog.list", authType="apiKey"
        ),
    ]
    db.audit_logs.insert_many(others)
    page = owner.get(LOG, query_string={"limit": "200"}).get_data(as_text=True)
    for record in others:
        assert str(record["_id"]) in page, record["action"]


def test_exclusions_on_the_embedded_store_stay_in_the_organization(embedded):
    app = embedded()
    org, other = make_org(app, "Acme"), make_org(app, "Globex")
    api = Api(app.test_client())
    api.token(org.owner)
    with app.app_context():
        get_audit_db().audit_logs.insert_many(
            [
                audit_record(
                    other.id,
                    accountId=org.owner.account_id,
                    action="x.y",
                    path="/globex-only",
                    targets=[],
                ),
                audit_record(other.id, action="auditLog.list", path="/globex-only"),
            ]
        )
    settled(app)
    for q in (
        "-action:member.invite",
        f"-actor:{org.owner.email}",
        f"-target:{org.workspace['_id']}",
        "-status:2xx -status:4xx",
        "-path:zzz",
        "-created:>=2999-01-01",
        f"actor:{org.owner.email} -action:auditLog.list",
        "globex -method:POST",
    ):
        answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"q": q, "limit": 200})
        assert answer.status_code == 200, (q, answer.get_json())
        items = answer.get_json()["items"]
        assert {i["organizationId"] for i in items} <= {str(org.id)}, q
        assert not any(i.get("path") == "/globex-only" for i in items), q


def test_an_exclusion_that_skips_everything_is_bounded_on_the_embedded_store(embedded):
    """Many records, all of them excluded: the walk must answer (200, empty) or stop at the
    time budget (503 saying so), fast; never hang, never a 500, never the generic road."""
    from audit_app.audit.store import embedded as store

    app = embedded(AUDIT_QUERY_TIMEOUT_MS=200)
    org = make_org(app, "Big")
    api = Api(app.test_client())
    api.token(org.owner)
    settled(app)
    with app.app_context():
        log = get_audit_db().audit_logs
        for start in range(0, 60_000, 5_000):
            log.insert_many(
                [audit_record(org.id, action="auditLog.list", statusCode=200) for _ in range(5_000)]
            )
    before = store.FALLBACKS[0]
    for q in (
        "-action:auditLog.list",
        "-status:2xx",
        "-action:auditLog.* -method:POST",
        "-path:/api/v1/pathways",
        "pathways -status:2xx",
    ):
        started = time.monotonic()
        answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"q": q})
        took = time.monotonic() - started
        assert answer.status_code in (200, 503), (q, answer.status_code)
        if answer.status_code == 503:
            assert "took too long" in answer.get_json()["error"]["message"]
        assert took < 5, (q, took)
        answer = api.get("/api/v1/audit-logs/histogram", as_=org.owner, query_string={"q": q})
        assert answer.status_code in (200, 503), (q, answer.status_code)
    assert store.FALLBACKS[0] == before


def test_the_web_page_with_an_exclusion_that_skips_everything_is_bounded(embedded):
    """The page walks the list, the chart and more: each bounded; the whole page answers
    within a few budgets, a 200 or a 503 page, never a 500."""
    app = embedded(AUDIT_QUERY_TIMEOUT_MS=200)
    org = make_org(app, "Big")
    client = app.test_client()
    login(client, org.owner)
    with app.app_context():
        log = get_audit_db().audit_logs
        for _ in range(8):
            log.insert_many(
                [
                    audit_record(
                        org.id,
                        accountId=org.owner.account_id,
                        authType="session",
                        action="auditLog.list",
                    )
                    for _ in range(5_000)
                ]
            )
    for url in (LOG, f"{LOG}?q=-status:2xx", f"{LOG}/export?format=ndjson&q=-status:2xx"):
        started = time.monotonic()
        answer = client.get(url)
        body = answer.get_data()  # an export streams: read it all
        took = time.monotonic() - started
        assert answer.status_code in (200, 503), (url, answer.status_code)
        assert took < 8, (url, took, len(body))


def test_a_workspace_list_cursor_of_another_organization_is_refused(app, org, other_org, owner):
    with app.app_context():
        for i in range(55):
            workspaces.create_workspace(get_db(), org.id, f"Team {i:02d}")
    import html as html_lib
    import re

    first = owner.get(PAGE).get_data(as_text=True)
    following = html_lib.unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))
    theirs = signed_in(app, other_org.owner)
    answer = theirs.get(following)
    assert answer.status_code == 400
    assert "Team" not in answer.get_data(as_text=True)


def test_the_confirmation_page_reflects_no_markup_from_field_names_or_values(app, org, owner):
    answer = owner.post(
        f"{PAGE}/{org.other_workspace['_id']}/delete",
        data={"csrf_token": _token(owner), '"><script>x()</script>': '"><b>v</b>'},
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "<script>x()" not in page and "<b>v</b>" not in page


def test_a_refused_stream_form_shows_what_was_typed_as_text(make_app):
    app = make_app(WTF_CSRF_ENABLED=True, AUDIT_STREAM_ALLOW_PRIVATE=False)
    org = make_org(app, "Mark")
    client = signed_in(app, org.owner)
    token = csrf_from(client.get("/organization/audit-streams").get_data(as_text=True))
    answer = client.post(
        "/organization/audit-streams",
        data={
            "csrf_token": token,
            "name": XSS,
            "type": '"><svg onload=alert(1)>',
            "url": 'https://127.0.0.1/"><svg onload=alert(2)>',
            "host": XSS,
            "port": '"><svg onload=alert(3)>',
            "format": XSS,
            "q": XSS,
        },
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code < 500
    assert "<img" not in page and "<svg" not in page


def test_the_pages_path_filter_is_refused_past_200_characters_too(app, org, owner):
    answer = owner.get(LOG, query_string={"path": "p" * 201})
    assert answer.status_code == 400
    assert "200 characters" in answer.get_data(as_text=True)


def test_combined_shapes_on_the_embedded_store_never_take_the_generic_road(embedded):
    from audit_app.audit.store import embedded as store

    app = embedded()
    org = make_org(app, "Emb")
    email = "sam@platform.example"
    with app.app_context():
        get_db().staff_accounts.insert_one({"_id": ObjectId(), "email": email})
    client = app.test_client()
    login(client, org.owner)
    for _ in range(2):
        client.get(LOG)
    settled(app)
    target = org.workspace["_id"]
    before = store.FALLBACKS[0]
    for q in (
        f"actor:{email} -action:auditLog.list",
        f"{target} -status:4xx",
        f"target:{target} {org.other_workspace['_id']} -path:zzz",
        f"actor:{email} {target} -ip:10.0.0.1",
        "action:member.* -action:member.add -status:2xx pathways",
        f"-target:{target} -target:{org.other_workspace['_id']} -requestId:abc",
        "-created:>=2026-01-01 -created:<=2025-01-01",
    ):
        for url, extra in ((LOG, {}), (f"{LOG}/export", {"format": "ndjson"})):
            answer = client.get(url, query_string={"q": q, **extra})
            answer.get_data()
            assert answer.status_code == 200, (q, url, answer.status_code)
    assert store.FALLBACKS[0] == before


def test_a_page_link_shared_with_another_admin_opens_for_them(app, org, owner, db):
    """Page 2 of the log, its URL pasted to a colleague: the hidden views are each viewer's
    own, but the link names no viewer, so it must open for them too (not a 400 saying the
    filters changed, when they did not)."""
    import html as html_lib
    import re
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    db.audit_logs.insert_many(
        [audit_record(org.id, created_at=now - timedelta(minutes=i)) for i in range(60)]
    )
    page = owner.get(LOG, query_string={"limit": "25"}).get_data(as_text=True)
    older = html_lib.unescape(re.search(r'href="([^"]+)" rel="next"', page).group(1))
    colleague = signed_in(app, org.admin)
    answer = colleague.get(older)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]


def test_a_workspace_name_with_markup_is_text_where_the_log_names_it(app, org, owner, db):
    token = _token(owner)
    owner.post(PAGE, data={"csrf_token": token, "name": XSS})
    workspace = db.workspaces.find_one({"organizationId": org.id, "name": XSS})
    owner.post(f"{PAGE}/{workspace['_id']}", data={"csrf_token": token, "name": XSS + "2"})
    pages = [
        owner.get(LOG, query_string={"q": XSS + "2", "myViews": "shown"}),  # names it
        owner.get(LOG, query_string={"workspaceId": str(workspace["_id"])}),
        owner.get(LOG, query_string={"q": str(workspace["_id"])}),
    ]
    record = db.audit_logs.find_one({"workspaceId": workspace["_id"]})
    pages.append(owner.get(f"{LOG}/{record['_id']}"))
    for answer in pages:
        page = answer.get_data(as_text=True)
        assert answer.status_code == 200
        assert "<img" not in page


@pytest.mark.parametrize(
    "query",
    [
        "limit=1000000",
        "limit=-1",
        "limit=abc",
        "cursor=x&before=y",
        "before=" + "A" * 600,
        "limit=5&limit=6",
        "cursor=%00",
    ],
)
def test_the_workspaces_list_parameters_are_never_a_500(app, org, owner, query):
    answer = owner.get(f"{PAGE}?{query}")
    assert answer.status_code in (200, 400), (query, answer.status_code)


def test_hide_my_views_does_not_hide_reads_of_the_log_from_another_session_of_my_account(
    app, org, owner, db
):
    """Judgment call (design): the page views of the viewer's account made in ANOTHER
    session (another device, or a stolen cookie from another address) are not "my views of
    this log" as the person at this screen knows them; hidden by default, a hijacked
    session's reading of the log is invisible to the one person most likely to notice it."""
    elsewhere = audit_record(
        org.id,
        accountId=org.owner.account_id,
        authType="session",
        action="auditLog.list",
        credentialId="ses_stolen0000000000",
        ip="198.51.100.66",
        path="/organization/audit-logs",
    )
    db.audit_logs.insert_one(elsewhere)
    page = owner.get(LOG, query_string={"limit": "200"}).get_data(as_text=True)
    assert str(elsewhere["_id"]) in page
