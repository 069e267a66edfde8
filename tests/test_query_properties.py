"""Property tests for the query builder and the cursor codec (hypothesis)."""

import string
from datetime import UTC, datetime, timedelta

import mongomock
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from audit_app.audit.store.query import AuditQuery, CursorCodec
from audit_app.audit.store.repository import search_records
from audit_app.errors import ApiError

ASCII = string.ascii_letters + string.digits + string.punctuation + " "
paths = st.text(alphabet=ASCII, min_size=1, max_size=30).map(lambda p: "/api/" + p)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stored=st.lists(paths, min_size=1, max_size=15),
    needle=st.text(alphabet=ASCII, min_size=1, max_size=8),
)
def test_search_text_is_a_literal_case_insensitive_substring(stored, needle):
    assume(needle.strip() == needle and needle)
    assume(not (len(needle) == 24 and ObjectId.is_valid(needle)))
    collection = mongomock.MongoClient().db.audit_logs
    collection.insert_many([{"path": p} for p in stored])
    [branch] = AuditQuery(filters={"q": needle}).branches()
    found = sorted(d["path"] for d in collection.find(branch))
    expected = sorted(p for p in stored if needle.lower() in p.lower())
    assert found == expected


@settings(max_examples=100, deadline=None)
@given(
    path=paths,
    filters=st.dictionaries(st.sampled_from(["q", "path", "method"]), st.text(ASCII, max_size=5)),
)
def test_criteria_never_names_the_organization(path, filters):
    branches = AuditQuery(filters=filters).branches()
    assert "organizationId" not in repr(branches)


codec = CursorCodec("property-test-secret-0123456789-0123456789-0123456789")
when = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC)
)


@settings(max_examples=200, deadline=None)
@given(at=when, filters=st.dictionaries(st.sampled_from(["q", "path"]), st.text(ASCII, max_size=6)))
def test_cursor_round_trip(at, filters):
    organization, record = ObjectId(), {"_id": ObjectId(), "createdAt": at}
    query = AuditQuery(filters=filters)
    token = codec.encode(organization, query, record)
    assert codec.decode(token, organization, query) == (at, record["_id"])


@settings(max_examples=300, deadline=None)
@given(
    at=when,
    position=st.integers(min_value=0),
    replacement=st.sampled_from(list(string.ascii_letters + "-_.")),
)
def test_any_change_to_a_cursor_is_refused(at, position, replacement):
    organization, record = ObjectId(), {"_id": ObjectId(), "createdAt": at}
    query = AuditQuery()
    token = codec.encode(organization, query, record)
    index = position % len(token)
    assume(token[index] != replacement)
    forged = token[:index] + replacement + token[index + 1 :]
    try:
        decoded = codec.decode(forged, organization, query)
    except ApiError as error:
        assert error.status == 400 and error.field == "cursor"
    else:  # base64 padding bits can absorb a change that decodes to the very same payload
        assert decoded == (at, record["_id"])


def test_cursor_of_another_organization_is_refused():
    query = AuditQuery()
    token = codec.encode(ObjectId(), query, {"_id": ObjectId(), "createdAt": datetime.now(UTC)})
    with pytest.raises(ApiError):
        codec.decode(token, ObjectId(), query)


def test_keyset_criteria_select_strictly_older_records():
    collection = mongomock.MongoClient().db.audit_logs
    base = datetime(2026, 1, 1, tzinfo=UTC)
    docs = [{"_id": ObjectId(), "createdAt": base + timedelta(seconds=i // 3)} for i in range(12)]
    collection.insert_many(docs)
    ordered = sorted(docs, key=lambda d: (d["createdAt"], d["_id"]), reverse=True)
    for position, pivot in enumerate(ordered):
        query = AuditQuery(after=(pivot["createdAt"].replace(tzinfo=UTC), pivot["_id"]))
        found = [
            d["_id"]
            for d in collection.find(query.branches()[0]).sort([("createdAt", -1), ("_id", -1)])
        ]
        assert found == [d["_id"] for d in ordered[position + 1 :]]


# A model check of the query shapes: every combination of filters, an id search merged
# from one branch per id field, paged forwards with cursors and back with ``before``,
# must list exactly what a plain Python filter over the same records lists.
ORG = ObjectId()
IDS = [ObjectId() for _ in range(4)]
BASE = datetime(2026, 3, 1, tzinfo=UTC)


def _record(i, account, workspace, key, status, method):
    return {
        "_id": ObjectId(),
        "organizationId": ORG,
        "createdAt": BASE + timedelta(milliseconds=(i // 3) * 7),  # ties on purpose
        "accountId": IDS[account] if account is not None else None,
        "workspaceId": IDS[workspace] if workspace is not None else None,
        "apiKeyId": IDS[key] if key is not None else None,
        "statusCode": status,
        "method": method,
        "path": f"/api/v1/pathways/{IDS[i % 4]}",
    }


maybe_id = st.one_of(st.none(), st.integers(0, 3))
records = st.lists(
    st.tuples(
        maybe_id,
        maybe_id,
        maybe_id,
        st.sampled_from([200, 201, 404, 409, 500]),
        st.sampled_from(["GET", "POST"]),
    ),
    min_size=0,
    max_size=25,
)
filters_strategy = st.fixed_dictionaries(
    {},
    optional={
        "q": st.sampled_from([str(i) for i in IDS] + ["pathways", "PATHWAYS/" + str(IDS[1])[:6]]),
        "accountId": st.sampled_from(IDS),
        "workspaceId": st.sampled_from(IDS),
        "statusCode": st.sampled_from(["4xx", "2xx", "404", "5xx"]),
        "method": st.sampled_from(["GET", "POST"]),
        "from_": st.sampled_from([BASE + timedelta(milliseconds=14)]),
    },
)


def _matches(record, filters):
    for name in ("accountId", "workspaceId", "method"):
        if name in filters and record[name] != filters[name]:
            return False
    status = filters.get("statusCode")
    if status and (
        str(record["statusCode"])[0] != status[0]
        if status.endswith("xx")
        else record["statusCode"] != int(status)
    ):
        return False
    if "from_" in filters and record["createdAt"] < filters["from_"]:
        return False
    q = filters.get("q")
    if q is not None:
        if ObjectId.is_valid(q) and len(q) == 24:
            return ObjectId(q) in (record["accountId"], record["workspaceId"], record["apiKeyId"])
        return q.lower() in record["path"].lower()
    return True


@settings(max_examples=120, deadline=None)
@given(rows=records, filters=filters_strategy, limit=st.integers(1, 4))
def test_every_shape_pages_through_exactly_the_matching_records(rows, filters, limit):
    db = mongomock.MongoClient(tz_aware=True).db
    stored = [_record(i, *row) for i, row in enumerate(rows)]
    if stored:
        db.audit_logs.insert_many([dict(r) for r in stored])
    expected = [
        r["_id"]
        for r in sorted(stored, key=lambda r: (r["createdAt"], r["_id"]), reverse=True)
        if _matches(r, filters)
    ]
    seen, query = [], AuditQuery(filters=filters, limit=limit)
    pages = []
    for _ in range(len(stored) + 2):
        items, more = search_records(db, ORG, query.branches(), limit, 1000)
        pages.append([r["_id"] for r in items])
        seen += pages[-1]
        if not more:
            break
        last = items[-1]
        query = AuditQuery(filters=filters, limit=limit, after=(last["createdAt"], last["_id"]))
    assert seen == expected
    # and back: from the last page, ``before`` its first record gives the page before it
    if len(pages) > 1:
        first_of_last = next(r for r in stored if r["_id"] == pages[-1][0])
        query = AuditQuery(
            filters=filters, before=(first_of_last["createdAt"], first_of_last["_id"])
        )
        items, _ = search_records(db, ORG, query.branches(), limit, 1000, towards_newer=True)
        assert [r["_id"] for r in items] == pages[-2]
