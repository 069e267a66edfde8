"""The ``-`` qualifiers and the hiding of a viewer's own views, as MongoDB receives them.

Each exclusion is a ``$ne`` / ``$nin`` / ``$nor`` inside ``$and``, never at the top level:
the branch still walks the index its other filters name (``org_newest`` when none),
newest first, with ``limit + 1`` and the request's ``maxTimeMS``; nothing counts, nothing
sorts in memory, nothing walks the action, status or target index for a "not".
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

import pytest
from bson import ObjectId
from werkzeug.datastructures import MultiDict

from audit_app.audit import service
from audit_app.audit.actions import LOG_VIEWS
from audit_app.auth.principal import Principal

from . import test_wire_queries
from .test_wire_queries import NEWEST, finds

wired = test_wire_queries.wired  # an app on the scripted server, and an Admin's JWT

MEMBER_ACTIONS = [
    "member.add",
    "member.invite",
    "member.list",
    "member.remove",
    "member.removeAsked",
    "member.roleChange",
]


def _only_find(server, wired, q: str, **params) -> dict:
    answer = wired("/api/v1/audit-logs?" + urlencode({"q": q, **params}))
    assert answer.status_code == 200, answer.get_json()
    sent = finds(server)
    assert len(sent) == 1, sent
    no_counts = [c for c in server.requests if next(iter(c)) in ("count", "aggregate", "distinct")]
    assert no_counts == []
    return sent[0]


@pytest.mark.parametrize(
    "q,clause",
    [
        ("-action:auditLog.list", {"action": {"$ne": "auditLog.list"}}),
        # any case: the declared spelling is sent, so it compares with what is stored
        ("-action:AUDITLOG.LIST", {"action": {"$ne": "auditLog.list"}}),
        ("-action:member.*", {"action": {"$nin": MEMBER_ACTIONS}}),
        (
            "-action:auditLog.list -action:auditLog.view",
            {"action": {"$nin": ["auditLog.list", "auditLog.view"]}},
        ),
        ("-status:4xx", {"statusCode": {"$nin": list(range(400, 500))}}),
        ("-status:404", {"statusCode": {"$ne": 404}}),
        ("-ip:2001:DB8:0::7", {"ip": {"$ne": "2001:db8::7"}}),
        ("-method:delete", {"method": {"$ne": "DELETE"}}),
        ("-requestId:r-1", {"requestId": {"$ne": "r-1"}}),
        ("-credential:jwt_abcdefgh", {"credentialId": {"$ne": "jwt_abcdefgh"}}),
        ("-path:pathways/(x", {"$nor": [{"path": {"$regex": r"pathways/\(x", "$options": "i"}}]}),
        ("-path:/api/v1/members", {"$nor": [{"path": {"$regex": "^/api/v1/members"}}]}),
    ],
)
def test_an_exclusion_alone_walks_org_newest_with_limit_plus_one(server, wired, q, clause):
    find = _only_find(server, wired, q)
    assert find["filter"] == {"$and": [clause], "organizationId": wired.organization_id}
    assert find["hint"] == "org_newest" and find["sort"] == NEWEST
    assert find["limit"] == 51 and find["maxTimeMS"] == 5000


def test_an_excluded_actor_is_the_accounts_id_never_its_index(server, wired):
    account = server.documents["accounts"][0]
    find = _only_find(server, wired, f"-actor:{account['email'].upper()}")
    assert find["filter"]["$and"] == [{"accountId": {"$ne": account["_id"]}}]
    assert find["hint"] == "org_newest" and find["limit"] == 51


def test_an_excluded_target_is_tested_on_the_walk_never_walked(server, wired):
    target = ObjectId()
    find = _only_find(server, wired, f"-target:{target}")
    assert find["filter"]["$and"] == [{"targets.id": {"$nin": [target]}}]
    assert find["hint"] == "org_newest"


@pytest.mark.parametrize(
    "q,top,clause,index",
    [
        # the equality picks the index; the "not" is tested on each of its entries
        (
            "method:GET -status:404",
            {"method": "GET"},
            {"statusCode": {"$ne": 404}},
            "org_method_newest",
        ),
        (
            "status:4xx -action:auditLog.list",
            {"statusCode": {"$in": list(range(400, 500))}},
            {"action": {"$ne": "auditLog.list"}},
            "org_status_newest",
        ),
        (
            "action:member.roleChange -status:2xx",
            {"action": "member.roleChange"},
            {"statusCode": {"$nin": list(range(200, 300))}},
            "org_action_newest",
        ),
    ],
)
def test_an_exclusion_beside_an_equality_walks_the_equalitys_index(
    server, wired, q, top, clause, index
):
    find = _only_find(server, wired, q)
    assert find["filter"] == {**top, "$and": [clause], "organizationId": wired.organization_id}
    assert find["hint"] == index and find["sort"] == NEWEST and find["limit"] == 51


def test_a_resources_actions_less_one_left_out_are_the_others_walks(server, wired):
    answer = wired("/api/v1/audit-logs?" + urlencode({"q": "action:member.* -action:member.ADD"}))
    assert answer.status_code == 200, answer.get_json()
    sent = finds(server)
    assert sorted(f["filter"]["action"] for f in sent) == [
        a for a in MEMBER_ACTIONS if a != "member.add"
    ]
    for find in sent:
        assert find["filter"]["$and"] == [{"action": {"$ne": "member.add"}}]
        assert find["hint"] == "org_action_newest" and find["limit"] == 51


def test_an_excluded_time_narrows_the_range_on_created_at(server, wired):
    find = _only_find(server, wired, "-created:>=2026-11-10 -created:<=2026-11-01")
    assert find["filter"]["createdAt"] == {
        "$gte": datetime(2026, 11, 2),
        "$lte": datetime(2026, 11, 9, 23, 59, 59, 999000),
    }
    assert "$and" not in find["filter"] and find["hint"] == "org_newest"


def test_the_chart_and_the_export_send_the_same_exclusion(server, wired):
    answer = wired(
        "/api/v1/audit-logs/histogram?interval=day&from=2026-11-01&to=2026-11-14&q=-status:4xx"
    )
    assert answer.status_code == 200, answer.get_json()
    [find] = finds(server)
    assert find["filter"]["$and"] == [{"statusCode": {"$nin": list(range(400, 500))}}]
    assert find["projection"] == {"createdAt": 1, "statusCode": 1}
    assert find["hint"] == "org_newest" and find["sort"] == NEWEST
    assert find["maxTimeMS"] == 5000
    answer = wired("/api/v1/audit-logs/export?format=ndjson&q=-action:auditLog.list")
    assert answer.status_code == 200
    find = finds(server)[-1]
    assert find["filter"]["$and"] == [{"action": {"$ne": "auditLog.list"}}]
    assert find["hint"] == "org_newest" and find["sort"] == NEWEST


def test_hiding_a_viewers_views_is_one_nor_on_the_same_walk(server, wired):
    """The web list's default: the viewer's own page views of the log (a web session's)
    left out on the walk the page makes anyway (``org_newest``, ``limit + 1``, the
    request's ``maxTimeMS``)."""
    viewer = server.documents["accounts"][0]["_id"]
    principal = Principal(
        auth_type="session",
        organization_id=wired.organization_id,
        account_id=viewer,
        permissions=frozenset({"viewAuditLog"}),
    )
    with wired.app.test_request_context("/organization/audit-logs"):
        page = service.list_page(principal, MultiDict({"limit": "25"}), hide_views_of=viewer)
    assert page.items == []
    [find] = finds(server)
    assert find["filter"] == {
        "$and": [
            {
                "$nor": [
                    {"accountId": viewer, "authType": "session", "action": {"$in": list(LOG_VIEWS)}}
                ]
            }
        ],
        "organizationId": wired.organization_id,
    }
    assert find["hint"] == "org_newest" and find["sort"] == NEWEST
    assert find["limit"] == 26 and find["maxTimeMS"] == 5000
