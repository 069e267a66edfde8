"""#26 item 6, the search's edges, through HTTP: refused long text, ``-`` qualifiers that
exclude (the list, the chart and the export alike), actions in any case, an empty chart's
words, a chip for each filter in force, and "Hide my views of this log"."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from . import test_qualifiers, test_web_pages
from .factories import audit_record
from .test_qualifiers import T0, found, names

# the fixtures of those tests: their seven records, and an Owner's web session
records = test_qualifiers.records
owner_client = test_web_pages.owner_client
web = test_web_pages.web

IN_ORG = {"role", "invite", "denied", "pathway", "key", "late"}

# each exclusion, and the search it is the complement of (within the organization's log)
NEGATIONS = [
    ("-action:member.invite", "action:member.invite"),
    ("-action:member.*", "action:member.*"),
    ("-actor:{admin}", "actor:{admin}"),
    ("-actor:{ADMIN}", "actor:{admin}"),
    ("-status:4xx", "status:4xx"),
    ("-status:201", "status:201"),
    ("-ip:198.51.100.7", "ip:198.51.100.7"),
    ("-ip:2001:DB8:0::7", "ip:2001:db8::7"),
    ("-requestId:req-role", "requestId:req-role"),
    ("-credential:ses_6b07a2242524", "credential:ses_6b07a2242524"),
    ("-method:post", "method:POST"),
    ("-created:>=2026-11-22", "created:>=2026-11-22"),
    ("-created:<=2026-11-21", "created:<=2026-11-21"),
    ("-path:/api/v1/pathways", "path:/api/v1/pathways"),
    ("-path:PATHWAYS", "path:pathways"),
]


@pytest.mark.parametrize(("negated", "positive"), NEGATIONS)
def test_a_minus_qualifier_keeps_exactly_what_its_qualifier_does_not(
    api, org, records, negated, positive
):
    fill = {"admin": org.admin.email, "ADMIN": org.admin.email.upper()}
    kept = names(records, found(api, org, negated.format(**fill)))
    matched = names(records, found(api, org, positive.format(**fill)))
    assert kept == IN_ORG - matched
    assert kept != IN_ORG or not matched


def test_a_target_excluded_leaves_out_every_record_that_acted_on_it(api, org):
    workspace = org.workspace["_id"]
    api.patch(f"/api/v1/workspaces/{workspace}", as_=org.admin, json={"name": "renamed"})
    api.get("/api/v1/pathways", as_=org.admin, workspace=workspace)
    everything = found(api, org, "-action:auditLog.list")
    kept = found(api, org, f"-target:{workspace} -action:auditLog.list")
    assert kept and len(kept) < len(everything)
    assert all(str(workspace) not in {t["id"] for t in i["targets"]} for i in kept)
    acted = found(api, org, f"target:{workspace}")
    assert {i["id"] for i in acted} == {i["id"] for i in everything} - {i["id"] for i in kept}


def test_exclusions_combine_with_each_other_and_with_what_is_kept(api, org, records):
    assert names(records, found(api, org, "action:member.* -action:member.invite")) == {
        "role",
        "denied",
    }
    assert names(records, found(api, org, "-action:member.invite -action:member.remove")) == (
        IN_ORG - {"invite", "denied"}
    )
    assert names(records, found(api, org, "-status:4xx -status:2xx")) == set()
    # what is asked for and left out at once is nothing, and no query needs to say so
    assert names(records, found(api, org, "action:member.invite -action:MEMBER.INVITE")) == set()
    assert names(records, found(api, org, "-actor:nobody@nowhere.example")) == IN_ORG
    assert names(records, found(api, org, "ip:198.51.100.7 -credential:jwt_tokenAAAAAAAA")) == {
        "invite"
    }


@pytest.mark.parametrize(
    ("q", "field"),
    [
        ("-action:", "-action: needs a value"),
        ("-status:4x", "status: must be a status code"),
        ("-actor:not-an-email", "actor: needs an email address"),
        ("-created:2026-11-01", "created: takes >= or <="),
        ("-colour:red", None),  # not a qualifier: plain text, a path search
    ],
)
def test_a_bad_exclusion_is_a_400_naming_q(api, org, records, q, field):
    answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"q": q})
    if field is None:
        assert answer.status_code == 200 and answer.get_json()["items"] == []
        return
    assert answer.status_code == 400, answer.get_json()
    error = answer.get_json()["error"]
    assert error["field"] == "q" and field in error["message"]


def test_an_exclusion_never_reaches_another_organization(api, org, other_org, records, db):
    """The foreign record shares the admin's account, ip and request id: excluding anything
    else still keeps to the caller's organization."""
    db.audit_logs.insert_one(audit_record(other_org.id, action="member.invite", path="/x"))
    for q in ("-action:member.invite", "-requestId:nothing-like-it", "-path:zzz", "-status:5xx"):
        items = found(api, org, q)
        assert {i["organizationId"] for i in items} == {str(org.id)}, q
        assert str(records["foreign"]["_id"]) not in {i["id"] for i in items}


def test_a_workspace_bound_key_cannot_read_the_log_with_an_exclusion(api, org, bound_key):
    for q in ("-action:member.invite", f"-target:{org.workspace['_id']}", "-status:2xx"):
        answer = api.get("/api/v1/audit-logs", key=bound_key, query_string={"q": q})
        assert answer.status_code == 403
        answer = api.get("/api/v1/audit-logs/export", key=bound_key, query_string={"q": q})
        assert answer.status_code == 403


def test_the_chart_and_the_export_leave_out_what_is_excluded(api, org, records):
    window = {"from": "2026-11-19", "to": "2026-11-26", "interval": "day"}

    def total(q):
        answer = api.get(
            "/api/v1/audit-logs/histogram", as_=org.owner, query_string={**window, "q": q}
        )
        assert answer.status_code == 200, answer.get_json()
        return sum(b["count"] for b in answer.get_json()["buckets"])

    assert total("-status:4xx") == total("status:2xx") + total("status:3xx") + total("status:5xx")
    assert total("-status:4xx") == len(IN_ORG) - 1
    assert total("-action:member.*") == len(IN_ORG) - 3
    exported = api.get(
        "/api/v1/audit-logs/export",
        as_=org.owner,
        query_string={
            "format": "csv",
            "q": "-action:member.* -actor:" + org.member.email,
            "from": "2026-11-19",
            "to": "2026-11-26",
        },
    )
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    ids = {row["id"] for row in rows if row.get("id")}
    assert ids == {str(records[name]["_id"]) for name in ("key", "late")}


# actions in any case -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("action:member.INVITE", {"invite"}),
        ("action:MEMBER.roleCHANGE", {"role"}),
        ("action:Member.*", {"role", "invite", "denied"}),
        ("-action:AUDITLOG.LIST", IN_ORG - {"late"}),
        ("action:nothing.Declared", set()),  # unknown: as before, it names nothing stored
    ],
)
def test_actions_are_matched_in_any_case(api, org, records, q, expected):
    assert names(records, found(api, org, q)) == expected


def test_an_action_in_another_case_walks_the_declared_spelling(api, org, records):
    """The declared name is what is sent: the equality stays on the action index."""
    a = found(api, org, "action:member.INVITE")
    b = found(api, org, "action:member.invite")
    assert [i["id"] for i in a] == [i["id"] for i in b] == [str(records["invite"]["_id"])]


# long search text --------------------------------------------------------------------------


def test_search_text_over_200_characters_is_a_400_naming_q_and_the_limit(api, org):
    for name in ("q", "path"):
        answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={name: "a" * 201})
        assert answer.status_code == 400
        error = answer.get_json()["error"]
        assert error["field"] == name
        assert "200 characters" in error["message"] and "201" in error["message"]
    answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"q": "a" * 200})
    assert answer.status_code == 200


def _form_value(html: str, name: str) -> str | None:
    found_ = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', html)
    return unescape(found_.group(1)) if found_ else None


def test_the_page_refuses_long_text_with_the_limit_and_keeps_the_other_filters(owner_client, org):
    long = "/api/v1/pathways/" + "x" * 250
    page = owner_client.get(
        "/organization/audit-logs",
        query_string={
            "q": long,
            "method": "DELETE",
            "workspaceId": str(org.workspace["_id"]),
            "statusCode": "4xx",
        },
    )
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    alert = re.search(r'<div class="alert"[^>]*id="filter-error">(.*?)</div>', html, re.S).group(1)
    assert "Search" in alert and "200 characters" in alert and str(len(long)) in alert
    # the text as typed, uncut (the input sets no maxlength that would cut it silently)
    assert _form_value(html, "q") == long
    assert 'id="q"' in html and "maxlength" not in re.search(r"<input id=\"q\"[^>]*>", html).group(
        0
    )
    assert "<option selected>DELETE</option>" in html
    assert _form_value(html, "statusCode") == "4xx"
    assert _form_value(html, "workspaceId") == str(org.workspace["_id"])
    # and the workspace's chip, by name, removable
    assert "Acme main" in html


# the chart with nothing in it -------------------------------------------------------------


def test_an_empty_chart_says_there_is_no_activity_in_its_range(owner_client):
    page = owner_client.get(
        "/organization/audit-logs", query_string={"from": "2001-01-01", "to": "2001-01-05"}
    )
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="chart-empty">No activity in this range.' in html
    busy = owner_client.get("/organization/audit-logs", query_string={"q": "-action:none.such"})
    assert "chart-empty" not in busy.get_data(as_text=True)


# chips -------------------------------------------------------------------------------------


def _chips(html: str) -> list[tuple[str, str, str]]:
    """(filter, text, the link that removes it) of each chip."""
    return [
        (name, re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)).strip(), unescape(href))
        for name, text, href in re.findall(
            r'<li class="chip" data-filter="([^"]+)"[^>]*>(.*?)'
            r'<a class="chip-remove" href="([^"]+)"',
            html,
            re.S,
        )
    ]


def _query(href: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(href).query)


def test_each_filter_in_force_has_a_chip_with_a_name_and_an_x_that_drops_it_alone(
    owner_client, org, db
):
    db.audit_logs.insert_one(
        audit_record(
            org.id,
            accountId=org.admin.account_id,
            accountEmail=org.admin.email,
            workspaceId=org.workspace["_id"],
            apiKeyId=org.api_key_id,
            created_at=T0,
        )
    )
    args = {
        "workspaceId": str(org.workspace["_id"]),
        "accountId": str(org.admin.account_id),
        "apiKeyId": str(org.api_key_id),
        "from": "2026-11-01",
        "to": "2026-11-30",
        "q": "-action:member.invite status:2xx",
    }
    page = owner_client.get("/organization/audit-logs", query_string=args)
    assert page.status_code == 200
    chips = _chips(page.get_data(as_text=True))
    texts = {text for _, text, _ in chips}
    assert "Workspace: Acme main" in texts  # its name, not its id
    assert f"Account: {org.admin.email}" in texts  # the email the records hold
    assert "API key: ci" in texts
    assert "From: 2026-11-01 00:00:00 UTC" in texts
    assert "To: 2026-11-30 23:59:59 UTC" in texts
    assert "Not action: member.invite" in texts and "Status: 2xx" in texts
    assert len(chips) == 7
    for name, text, href in chips:
        left = _query(href)
        if name == "q":  # one word of the search goes, the other stays
            word = "-action:member.invite" if text.startswith("Not") else "status:2xx"
            other = "status:2xx" if word.startswith("-") else "-action:member.invite"
            assert left["q"] == [other], (text, href)
            assert {k for k in left if k != "q"} == set(args) - {"q"}
        else:
            assert set(left) == set(args) - {name}, (text, href)
            assert all(left[k] == [args[k]] for k in left)
        # the link works, without JavaScript
        assert owner_client.get(href).status_code == 200


# hide my views of this log -----------------------------------------------------------------


def test_the_viewers_own_views_are_hidden_by_default_on_the_page_only(owner_client, org, api):
    for _ in range(3):
        owner_client.get("/organization/audit-logs")
    api.get("/api/v1/audit-logs", as_=org.admin)  # someone else's read: always listed
    page = owner_client.get("/organization/audit-logs", query_string={"q": "action:auditLog.*"})
    html = page.get_data(as_text=True)
    assert re.search(r'id="hide-my-views"[^>]*checked', html)
    listed = re.findall(r'<td data-label="Account">\s*([^<\s]+)', html)
    assert org.admin.email in listed and org.owner.email not in listed
    # off: the page says so in its URL, and lists them
    shown = owner_client.get(
        "/organization/audit-logs", query_string={"q": "action:auditLog.*", "myViews": "shown"}
    ).get_data(as_text=True)
    assert not re.search(r'id="hide-my-views"[^>]*checked', shown)
    listed = re.findall(r'<td data-label="Account">\s*([^<\s]+)', shown)
    assert listed.count(org.owner.email) >= 4 and org.admin.email in listed
    # the form's two values: the ticked box wins over the hidden "shown"
    ticked = owner_client.get(
        "/organization/audit-logs?q=action:auditLog.*&myViews=shown&myViews=hidden"
    ).get_data(as_text=True)
    assert re.search(r'id="hide-my-views"[^>]*checked', ticked)
    assert org.owner.email not in re.findall(r'<td data-label="Account">\s*([^<\s]+)', ticked)
    # the API lists every read, the owner's page views included
    items = found(api, org, "action:auditLog.list")
    assert sum(i.get("accountId") == str(org.owner.account_id) for i in items) >= 4
    # the toggle is the page's: the API takes no such parameter
    refused = api.get("/api/v1/audit-logs?myViews=hidden", as_=org.owner)
    assert refused.status_code == 400 and refused.get_json()["error"]["field"] == "myViews"


def test_links_of_a_page_with_the_views_shown_keep_them_shown(owner_client, org, db):
    db.audit_logs.insert_many(
        [audit_record(org.id, created_at=T0 - timedelta(minutes=i)) for i in range(30)]
    )
    html = owner_client.get(
        "/organization/audit-logs", query_string={"limit": "25", "myViews": "shown"}
    ).get_data(as_text=True)
    older = unescape(re.search(r'href="([^"]+)" rel="next"', html).group(1))
    assert _query(older)["myViews"] == ["shown"]
    assert owner_client.get(older).status_code == 200
    exports = [unescape(h) for h in re.findall(r'href="([^"]*/export[^"]*)"', html)]
    assert exports and all(_query(h)["myViews"] == ["shown"] for h in exports)
    # by default no link says anything: hidden is the default
    html = owner_client.get("/organization/audit-logs", query_string={"limit": "25"}).get_data(
        as_text=True
    )
    older = unescape(re.search(r'href="([^"]+)" rel="next"', html).group(1))
    assert "myViews" not in _query(older)


def test_the_export_from_the_page_leaves_out_the_viewers_views_as_the_page_does(owner_client, org):
    for _ in range(2):
        owner_client.get("/organization/audit-logs")
    hidden = owner_client.get("/organization/audit-logs/export?format=ndjson&q=action:auditLog.*")
    shown = owner_client.get(
        "/organization/audit-logs/export?format=ndjson&q=action:auditLog.*&myViews=shown"
    )
    assert hidden.status_code == shown.status_code == 200
    owner = str(org.owner.account_id)
    assert owner not in hidden.get_data(as_text=True)
    assert shown.get_data(as_text=True).count(owner) >= 2


def test_hiding_the_viewers_views_never_hides_another_accounts(owner_client, org, db):
    """Another member's page views, and the owner's records that are no page view (an
    export, a script's reads with the owner's JWT), stay."""
    someone = audit_record(
        org.id, accountId=org.admin.account_id, action="auditLog.list", authType="session"
    )
    mine = audit_record(org.id, accountId=org.owner.account_id, action="member.invite")
    export = audit_record(org.id, accountId=org.owner.account_id, action="auditLog.export")
    # a script reading the log with the owner's JWT: no page view, listed
    script = audit_record(
        org.id, accountId=org.owner.account_id, action="auditLog.list", authType="jwt"
    )
    # the same person's page view from another session (another device, a stolen cookie):
    # listed too, only this session's own views are hidden
    elsewhere = audit_record(
        org.id,
        accountId=org.owner.account_id,
        action="auditLog.view",
        authType="session",
        credentialId="sess_another",
    )
    db.audit_logs.insert_many([someone, mine, export, script, elsewhere])
    # a page view of this session: the detail page of one of them
    assert owner_client.get(f"/organization/audit-logs/{mine['_id']}").status_code == 200
    page_view = db.audit_logs.find_one(
        {
            "accountId": org.owner.account_id,
            "action": "auditLog.view",
            "authType": "session",
            "credentialId": {"$ne": "sess_another"},
        }
    )
    assert page_view is not None
    html = owner_client.get("/organization/audit-logs", query_string={"limit": "100"}).get_data(
        as_text=True
    )
    assert str(page_view["_id"]) not in html
    assert str(elsewhere["_id"]) in html
    for record in (someone, mine, export, script):
        assert str(record["_id"]) in html


# attacks -------------------------------------------------------------------------------------


def test_a_role_without_view_audit_log_cannot_exclude_its_way_in(api, org):
    for q in ("-action:member.invite", "-status:5xx", f"-actor:{org.owner.email}"):
        answer = api.get("/api/v1/audit-logs", as_=org.member, query_string={"q": q})
        assert answer.status_code == 403


def test_an_excluded_path_is_literal_and_linear(api, org, db):
    """A pattern-looking text is the text itself (escaped, so MongoDB's engine and the
    embedded store match it literally): no regex of the client's is ever run."""
    import time

    db.audit_logs.insert_many(
        [
            audit_record(org.id, path="/api/v1/x/(a+)+$", created_at=T0),
            audit_record(org.id, path="/api/v1/" + "a" * 150 + "!", created_at=T0),
        ]
    )
    kept = found(api, org, "-path:(a+)+$", **{"from": "2026-11-20", "to": "2026-11-20"})
    assert [i["path"] for i in kept] == ["/api/v1/" + "a" * 150 + "!"]
    started = time.monotonic()
    evil = "-path:" + "(a*)*" * 30 + "b"
    answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"q": evil})
    assert answer.status_code == 200 and time.monotonic() - started < 2


def test_chips_show_what_was_typed_as_text_never_as_markup(owner_client):
    page = owner_client.get(
        "/organization/audit-logs", query_string={"q": '<script>alert(1)</script> -path:"x'}
    )
    html = page.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_chips_link_keeps_the_page_size_and_the_views_shown(owner_client):
    html = owner_client.get(
        "/organization/audit-logs",
        query_string={"q": "method:GET status:2xx", "limit": "25", "myViews": "shown"},
    ).get_data(as_text=True)
    for _, _, href in _chips(html):
        left = _query(href)
        assert left["limit"] == ["25"] and left["myViews"] == ["shown"]
        assert len(left["q"][0].split()) == 1
