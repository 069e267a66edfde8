"""Property tests for the query builder and the cursor codec (hypothesis)."""

import string
from datetime import UTC, datetime, timedelta

import mongomock
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from audit_app.audit.query import AuditQuery, CursorCodec, search_clause
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
    found = sorted(d["path"] for d in collection.find(search_clause(needle)))
    expected = sorted(p for p in stored if needle.lower() in p.lower())
    assert found == expected


@settings(max_examples=100, deadline=None)
@given(
    path=paths,
    filters=st.dictionaries(st.sampled_from(["q", "path", "method"]), st.text(ASCII, max_size=5)),
)
def test_criteria_never_names_the_organization(path, filters):
    criteria = AuditQuery(filters=filters).criteria()
    assert "organizationId" not in repr(criteria)


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
            for d in collection.find(query.criteria()).sort([("createdAt", -1), ("_id", -1)])
        ]
        assert found == [d["_id"] for d in ordered[position + 1 :]]
