"""The qualifiers of the one search bar: alone, combined, with text, and their errors."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from .factories import audit_record
from .test_web_pages import owner_client, web  # noqa: F401 - fixtures

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def records(db, org):
    """Seven records a support engineer would tell apart by what they paste."""
    admin, member = org.admin.account_id, org.member.account_id
    made = {
        "role": audit_record(
            org.id,
            created_at=T0,
            accountId=admin,
            action="member.roleChange",
            method="PATCH",
            statusCode=200,
            ip="198.51.100.7",
            requestId="req-role",
            credentialId="jwt_tokenAAAAAAAA",
        ),
        "invite": audit_record(
            org.id,
            created_at=T0 + timedelta(hours=1),
            accountId=admin,
            action="member.invite",
            method="POST",
            statusCode=201,
            ip="198.51.100.7",
            credentialId="jwt_tokenBBBBBBBB",
        ),
        "denied": audit_record(
            org.id,
            created_at=T0 + timedelta(days=1),
            accountId=member,
            action="member.remove",
            method="DELETE",
            statusCode=403,
            ip="203.0.113.9",
            credentialId="ses_6b07a2242524",
        ),
        "pathway": audit_record(
            org.id,
            created_at=T0 + timedelta(days=2),
            accountId=member,
            action="pathway.create",
            method="POST",
            statusCode=201,
            path="/api/v1/pathways",
            ip="2001:db8::7",
            credentialId="ses_6b07a2242524",
        ),
        "key": audit_record(
            org.id,
            created_at=T0 + timedelta(days=2, hours=5),
            apiKeyId=org.api_key_id,
            authType="apiKey",
            action="workspace.list",
            ip="203.0.113.9",
            credentialId=f"key_{org.api_key_id}",
        ),
        "late": audit_record(
            org.id,
            created_at=datetime(2026, 11, 25, 23, 59, tzinfo=UTC),
            accountId=admin,
            action="auditLog.list",
            ip="198.51.100.7",
            credentialId="jwt_tokenAAAAAAAA",
        ),
        "foreign": audit_record(
            ObjectId(),
            created_at=T0,
            accountId=admin,
            action="member.roleChange",
            ip="198.51.100.7",
            requestId="req-role",
            credentialId="jwt_tokenAAAAAAAA",
        ),
    }
    db.audit_logs.insert_many(list(made.values()))
    return made


def found(api, org, q, **params):
    answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"q": q, **params})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["items"]


def names(records, items) -> set[str]:
    by_id = {str(r["_id"]): name for name, r in records.items()}
    return {by_id[item["id"]] for item in items if item["id"] in by_id}


CASES = [
    ("actor:{admin}", {"role", "invite", "late"}),
    ("actor:{ADMIN}", {"role", "invite", "late"}),  # an email in any case
    ("ip:198.51.100.7", {"role", "invite", "late"}),
    ("ip:2001:DB8:0::7", {"pathway"}),  # an IPv6 address in any notation
    ("requestId:req-role", {"role"}),
    ("action:member.invite", {"invite"}),
    ("action:member.*", {"role", "invite", "denied"}),
    ("method:delete", {"denied"}),
    ("status:4xx", {"denied"}),
    ("status:201", {"invite", "pathway"}),
    ("created:>=2026-11-22", {"pathway", "key", "late"}),
    ("created:<=2026-11-21", {"role", "invite", "denied"}),  # a date alone: to its end
    ("created:>=2026-11-21 created:<=2026-11-22", {"denied", "pathway", "key"}),
    ("credential:jwt_tokenAAAAAAAA", {"role", "late"}),
    ("credential:ses_6b07a2242524", {"denied", "pathway"}),
    ("path:/api/v1/pathways", {"role", "invite", "denied", "pathway", "key", "late"}),
    # combined, and with plain text
    ("actor:{admin} action:member.*", {"role", "invite"}),
    ("ip:203.0.113.9 status:4xx", {"denied"}),
    ("credential:ses_6b07a2242524 method:POST", {"pathway"}),
    ("action:member.* created:>=2026-11-20T09:30:00Z", {"invite", "denied"}),
    ("ip:198.51.100.7 /pathways", {"role", "invite", "late"}),
    ("actor:nobody@nowhere.example", set()),
]


@pytest.mark.parametrize(("q", "expected"), CASES)
def test_each_qualifier_alone_and_combined(api, org, records, q, expected):
    q = q.format(admin=org.admin.email, ADMIN=org.admin.email.upper())
    assert names(records, found(api, org, q)) == expected


def test_a_qualifier_and_the_id_search_combine(api, org, records):
    items = found(api, org, f"{org.admin.account_id} action:member.*")
    assert names(records, items) == {"role", "invite"}


def test_qualifiers_combine_with_parameters_and_pages(api, org, records):
    items = found(api, org, "ip:198.51.100.7", accountId=str(org.admin.account_id), limit=1)
    assert names(records, items) == {"late"}
    answer = api.get(
        "/api/v1/audit-logs",
        as_=org.owner,
        query_string={"q": "ip:198.51.100.7", "limit": 2},
    ).get_json()
    second = api.get(
        "/api/v1/audit-logs",
        as_=org.owner,
        query_string={"q": "ip:198.51.100.7", "limit": 2, "cursor": answer["nextCursor"]},
    ).get_json()
    assert names(records, answer["items"] + second["items"]) == {"role", "invite", "late"}


ERRORS = [
    ("owner:someone", "unknown qualifier owner:"),
    ("http://example.com", "unknown qualifier http:"),
    ("ip:", "ip: needs a value"),
    ("ip:999.1.1.1", "ip: needs an IPv4 or IPv6 address"),
    ("actor:not-an-email", "actor: needs an email address"),
    ("action:DROP", "action: needs an action such as member.roleChange"),
    ("status:42", "status: must be a status code"),
    ("method:FETCH", "method: must be one of"),
    ("created:2026-11-01", "created: takes >= or <="),
    ("created:>=yesterday", "created:>= needs an ISO 8601 date"),
    ("created:>=1969-12-31", "created:>= needs an ISO 8601 date"),
    ("created:>=2026-11-02 created:<=2026-11-01", "must not be after"),
    ("credential:abc", "credential: needs a credentialId"),
    ("requestId:a/b", "requestId: is 1 to 128 characters"),
    ("ip:10.0.0.1 ip:10.0.0.2", "repeats a qualifier"),
]


@pytest.mark.parametrize(("q", "words"), ERRORS)
def test_a_bad_qualifier_is_a_400_naming_q(api, org, q, words):
    answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"q": q})
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert error["field"] == "q" and words in error["message"], error


def test_an_unknown_qualifier_lists_the_accepted_ones(api, org):
    error = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"q": "who:me"}).get_json()[
        "error"
    ]
    for qualifier in ("actor:", "ip:", "requestId:", "action:", "credential:", "created:>="):
        assert qualifier in error["message"]


def test_a_qualifier_that_contradicts_a_parameter_is_a_400(api, org, records):
    answer = api.get(
        "/api/v1/audit-logs", as_=org.owner, query_string={"q": "method:GET", "method": "POST"}
    )
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "q"
    agreeing = found(api, org, "method:DELETE", method="DELETE")
    assert names(records, agreeing) == {"denied"}


def test_a_date_alone_in_to_means_the_end_of_that_day(api, org, records):
    answer = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"to": "2026-11-25"})
    assert names(records, answer.get_json()["items"]) == set(records) - {"foreign"}
    earlier = api.get("/api/v1/audit-logs", as_=org.owner, query_string={"to": "2026-11-24"})
    assert "late" not in names(records, earlier.get_json()["items"])


def test_the_export_follows_the_qualifiers_and_carries_the_new_fields(api, org, records, db):
    db.audit_logs.update_one(
        {"_id": records["role"]["_id"]},
        {"$set": {"changes": [{"field": "role", "from": "Member", "to": "Admin"}], "response": {}}},
    )
    db.audit_logs.update_one(
        {"_id": records["denied"]["_id"]},
        {"$set": {"response": {"errorCode": "forbidden", "errorMessage": "=cmd|' /C calc'!A0"}}},
    )
    answer = api.get(
        "/api/v1/audit-logs/export",
        as_=org.owner,
        query_string={"format": "csv", "q": "action:member.*"},
    )
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert {row["action"] for row in rows} == {
        "member.roleChange",
        "member.invite",
        "member.remove",
    }
    role = next(row for row in rows if row["action"] == "member.roleChange")
    assert json.loads(role["changes"]) == [{"field": "role", "from": "Member", "to": "Admin"}]
    assert role["credentialId"] == "jwt_tokenAAAAAAAA" and role["errorCode"] == ""
    denied = next(row for row in rows if row["action"] == "member.remove")
    assert denied["errorCode"] == "forbidden"
    assert denied["errorMessage"].startswith("'=")  # a formula is neutralised
    ndjson = api.get(
        "/api/v1/audit-logs/export",
        as_=org.owner,
        query_string={"format": "ndjson", "q": "requestId:req-role"},
    )
    [line] = ndjson.get_data(as_text=True).splitlines()
    item = json.loads(line)
    assert item["action"] == "member.roleChange" and item["changes"][0]["to"] == "Admin"


def test_the_page_suggests_the_qualifier_the_text_looked_like(owner_client, org, records):  # noqa: F811
    cases = {
        org.admin.email: f"actor:{org.admin.email}",
        "198.51.100.7": "ip:198.51.100.7",
        "jwt_tokenAAAAAAAA": "credential:jwt_tokenAAAAAAAA",
        "member.invite": "action:member.invite",
    }
    for text, suggestion in cases.items():
        page = owner_client.get("/organization/audit-logs", query_string={"q": text})
        html = page.get_data(as_text=True)
        assert "No matching records" in html and suggestion in html, text
    hint = owner_client.get("/organization/audit-logs").get_data(as_text=True)
    examples = ("actor:", "ip:", "requestId:", "action:member.*", "credential:", "created:&gt;=")
    for example in examples:
        assert example in hint


def test_the_page_points_a_workspace_name_to_the_workspace(owner_client, org, records):  # noqa: F811
    name = org.workspace["name"]
    html = owner_client.get("/organization/audit-logs", query_string={"q": name.upper()}).get_data(
        as_text=True
    )
    assert "No matching records" in html and f"workspaceId={org.workspace['_id']}" in html
    assert "is a workspace" in html
