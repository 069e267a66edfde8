"""The path search's trigram index on the embedded store (#25).

- agreement: the trigram index finds exactly the records a literal case-insensitive regex
  finds, on hypothesis-generated paths (non-ASCII and case folding included), and a search
  pages through the same records in the same order as MongoDB's engine, whichever road it
  takes (the bounded walk, the trigram index, or the rest of the walk);
- plans: the walk is bounded and covered by ``org_newest``, the index's matches drive the
  join by rowid, and nothing scans the table;
- in step: inserts, batches, updates, the retention purge and the backfill of a store of an
  earlier version leave the index equal to its table (FTS5's own ``integrity-check``).
"""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta

import mongomock
import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_app.audit.store import embedded
from audit_app.audit.store.embedded import AuditLogCollection, AuditTable, fold, plan_search
from audit_app.audit.store.query import AuditQuery, merge_search
from audit_app.audit.store.repository import NEWEST_FIRST, index_for, iter_records

from .test_embedded_store import BASE, ORG, OTHER, WORDS, Both, _pages

# letters whose cases fold in uncommon ways, beside plain ones
LETTERS = "aAbsSßẞ\u017fkK\u212a\u0131İiI\u03c3Σςé\u00c9/-.()*_0"
paths = st.text(alphabet=st.sampled_from(LETTERS), min_size=0, max_size=12)


def _integrity(table: AuditTable) -> None:
    """FTS5 compares its index with the table it indexes: raises when they differ."""
    table.writer().execute("INSERT INTO audit_paths (audit_paths) VALUES ('integrity-check')")


def _records(texts, org=ORG):
    return [
        {
            "_id": ObjectId(),
            "organizationId": org,
            "createdAt": BASE + timedelta(milliseconds=(i // 2) * 7),  # ties on purpose
            "storedAt": BASE,
            "path": text,
            "statusCode": 200,
            "method": "GET",
        }
        for i, text in enumerate(texts)
    ]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(st.one_of(paths, st.text(max_size=12)), max_size=12),
    needle=st.one_of(paths, st.text(min_size=1, max_size=5)),
    pick=st.integers(0, 11),
    start=st.integers(0, 8),
    swap=st.booleans(),
)
def test_the_trigram_index_finds_exactly_what_the_regex_finds(
    tmp_path_factory, texts, needle, pick, start, swap
):
    if texts and swap:  # often a piece of a stored path, in another case
        source = texts[pick % len(texts)]
        needle = source[start : start + 3 + pick % 4].swapcase() or needle
    needle = _CONTROLS.sub("", needle)  # as the API refuses them in search text
    table = AuditTable(str(tmp_path_factory.mktemp("t") / "audit.sqlite3"))
    try:
        records = _records(texts)  # paths may hold any character, a NUL too
        AuditLogCollection(table).insert_many([dict(r) for r in records])
        expected = {
            r["_id"] for r in records if re.search(re.escape(needle), r["path"], re.IGNORECASE)
        }
        if len(needle) >= embedded.TRIGRAM:
            rowids = table.connection().execute(
                "SELECT rowid FROM audit_paths WHERE audit_paths MATCH ?",
                ['"' + fold(needle).replace('"', '""') + '"'],
            )
            found = ",".join(str(rowid) for (rowid,) in rowids)
            keys = {
                row[0]
                for row in table.connection().execute(
                    f"SELECT id FROM audit_logs WHERE rowid IN ({found})"
                )
            }
            assert keys == {embedded._key(i) for i in expected}
        _integrity(table)
    finally:
        table.close()


_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


@pytest.fixture
def small_walks(monkeypatch):
    """A walk of two keys and a sort of at most four matches, so that a handful of
    records takes every road a million does."""
    monkeypatch.setattr(embedded, "PATH_WALK_KEYS", 2)
    monkeypatch.setattr(embedded, "PATH_MATCHES_SORTED", 4)


SEARCHES = st.sampled_from(
    [
        "pathways",
        "STRASSE",
        "straße",
        "été",
        "σας",
        "star",
        "k",  # shorter than a trigram: the walk alone
        "v1/",
        "/api/v1/ΣΑΣ",
        "path:/api/v1/members/",  # anchored: the start of the path, exact case
        "path:/api/v1/Straße",
        "path:/API/v1/",  # no path starts so: nothing, whatever the case of the rest
        "path:/a",
        "path:/api/v1/pathways/1 method:GET",
        "nothing-like-this",
    ]
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    words=st.lists(
        st.tuples(st.sampled_from(WORDS), st.sampled_from([ORG, ORG, OTHER])), max_size=25
    ),
    q=SEARCHES,
    also=st.sampled_from([None, "AP", "/1"]),
    limit=st.integers(1, 4),
)
def test_a_path_search_pages_as_mongodb_s_engine_on_every_road(
    tmp_path_factory, small_walks, words, q, also, limit
):
    both = Both(tmp_path_factory.mktemp("s") / "audit.sqlite3")
    records = _records([f"/api/v1/{word}/{i}" for i, (word, _) in enumerate(words)])
    for record, (_, org) in zip(records, words, strict=True):
        record["organizationId"] = org
    both.insert(records)
    filters = merge_search({"q": q, **({"path": also} if also else {})})
    before = embedded.FALLBACKS[0]
    try:
        assert _pages(both.sql, filters, limit) == _pages(both.mock, filters, limit)
        assert embedded.FALLBACKS[0] == before
    finally:  # (a failing example shrinks through many: each would keep its files open)
        both.table.close()


def test_a_path_with_a_nul_is_found_past_it_on_every_road(tmp_path, small_walks):
    """A request to ``/api/v1/x%00/roles`` has a NUL in its path: SQLite's trigram
    tokenizer would stop there, so the folded path keeps it as \\x01 (new records, and
    those of an earlier version when the index is built)."""
    both = Both(tmp_path / "audit.sqlite3")
    texts = ["/api/v1/x\x00/ROLES/1", "/a\x00b\x00roles"]
    texts += [f"/api/v1/other/{i}" for i in range(9)]
    both.insert(_records(texts))  # the two with a NUL are the oldest: the index finds them
    for q in ("roles", "path:/api/v1/x"):
        filters = merge_search({"q": q})
        assert _pages(both.sql, filters, 2) == _pages(both.mock, filters, 2)
    _integrity(both.table)
    both.table.close()


@pytest.mark.parametrize("matches", [3, 50])  # few: the index's matches; many: the walk
def test_a_search_past_the_walk_takes_the_index_or_the_rest_of_the_walk(
    tmp_path, small_walks, matches
):
    both = Both(tmp_path / "audit.sqlite3")
    texts = ["/api/v1/rare/x" if i < matches else f"/api/v1/common/{i}" for i in range(60)]
    both.insert(_records(texts))  # the rare ones are the oldest
    for limit in (1, 2, 50):
        filters = merge_search({"q": "rare"})
        assert _pages(both.sql, filters, limit) == _pages(both.mock, filters, limit)
    both.table.close()


def _plan(connection, sql, parameters):
    return " | ".join(r[3] for r in connection.execute("EXPLAIN QUERY PLAN " + sql, parameters))


@pytest.mark.parametrize("q", ["roles", "path:/api/v1/roles/", "/Roles/ method:GET"])
def test_each_part_of_a_path_search_walks_an_index(tmp_path, q):
    table = AuditTable(str(tmp_path / "plan.sqlite3"))
    connection = table.connection()
    after = (BASE, ObjectId())
    for position in (None, after):
        [branch] = AuditQuery(filters=merge_search({"q": q}), after=position).branches()
        hint = index_for(branch)
        search = plan_search({**branch, "organizationId": ORG}, NEWEST_FIRST, hint)
        assert search is not None
        expected = "org_method_newest" if "method" in q else "org_newest"
        # the bounded walk: keys of the branch's index, in order, no sort
        walk = _plan(connection, *search.walk(None, 4000))
        assert f"INDEX {expected}" in walk and "TEMP B-TREE" not in walk, walk
        if q == "roles":  # the folded path is in its keys; the anchored form reads a
            # record's exact path only when the folded one starts as asked
            assert "COVERING INDEX org_newest" in walk, walk
        # past it: the trigram index drives, each record found by its rowid
        matched = _plan(connection, *search.matched((1, b"\x07" + bytes(12))))
        assert re.search(r"SCAN audit_paths VIRTUAL TABLE INDEX \d+:M", matched), matched
        assert "SEARCH audit_logs USING INTEGER PRIMARY KEY (rowid=?)" in matched, matched
        assert "SCAN audit_logs" not in matched, matched
        counted = _plan(connection, *search.counted())
        assert "VIRTUAL TABLE INDEX" in counted and "audit_logs" not in counted, counted
        rest = _plan(connection, *search.walk((1, b"\x07" + bytes(12)), None))
        assert f"INDEX {expected}" in rest and "TEMP B-TREE" not in rest, rest
    table.close()


def test_short_texts_and_other_shapes_are_no_trigram_search():
    def planned(q):
        [branch] = AuditQuery(filters=merge_search({"q": q})).branches()
        return plan_search({**branch, "organizationId": ORG}, NEWEST_FIRST, index_for(branch))

    assert planned("ro") is None  # no trigram to look up: the walk as before
    assert planned("path:/a") is None
    assert planned("method:GET") is None
    assert planned("ro les") is not None  # words are one text: "ro les"
    assert planned("rol\x00es") is None  # a NUL would end the FTS5 query: the walk


def test_every_writer_keeps_the_index_in_step(tmp_path):
    table = AuditTable(str(tmp_path / "audit.sqlite3"))
    collection = AuditLogCollection(table)
    records = _records([f"/api/v1/{word}/{i}" for i, word in enumerate(WORDS * 3)])
    collection.insert_many([dict(r) for r in records[:20]])
    for record in records[20:]:
        collection.insert_one(dict(record))
    collection.insert_one({**records[0], "_id": ObjectId(), "path": 42})  # no text: no row
    _integrity(table)
    collection.update_one({"_id": records[3]["_id"]}, {"$set": {"path": "/api/v1/renamed"}})
    table.writer().execute(  # an operator edits a column by hand: the trigger follows
        "UPDATE audit_logs SET path_fold = '/edited' WHERE id = ?",
        (embedded._key(records[4]["_id"]),),
    )
    _integrity(table)
    collection.delete_many({"_id": {"$in": [r["_id"] for r in records[:10]]}})
    _integrity(table)
    found = list(
        iter_records({"audit_logs": collection}, ORG, AuditQuery({"q": "renamed"}).branches(), 2000)
    )
    assert found == []  # deleted with the first ten
    table.close()


def test_the_retention_purge_keeps_the_index_in_step(tmp_path):
    from audit_app.audit.store.repository import delete_records, stored_before

    table = AuditTable(str(tmp_path / "audit.sqlite3"))
    collection = AuditLogCollection(table)
    collection.insert_many([dict(r) for r in _records([f"/p/{i}/roles" for i in range(30)])])
    db = {"audit_logs": collection}
    batch = stored_before(db, ORG, BASE + timedelta(days=1), 1000)
    assert delete_records(db, ORG, [record_id for record_id, _ in batch]) == 30
    _integrity(table)
    count = table.connection().execute(
        "SELECT count(*) FROM audit_paths WHERE audit_paths MATCH 'roles'"
    )
    assert count.fetchone() == (0,)
    table.close()


def _as_before_the_index(path: str) -> None:
    """Leave a table as the previous version did: no trigram index, no triggers, no fill."""
    old = sqlite3.connect(path)
    for name in ("audit_paths_added", "audit_paths_deleted", "audit_paths_changed"):
        old.execute(f"DROP TRIGGER {name}")
    old.execute("DROP TABLE audit_paths")
    old.execute("DELETE FROM audit_backfills WHERE name = 'paths'")
    old.commit()
    old.close()


def test_a_store_of_an_earlier_version_is_indexed_in_bounded_resumable_batches(
    tmp_path, monkeypatch, small_walks
):
    path = str(tmp_path / "old.sqlite3")
    table = AuditTable(path)
    records = _records([f"/api/v1/{word}/{i}" for i, word in enumerate(WORDS * 3)])
    records[5]["path"] = "/api/v1/x\x00/later/z"  # kept with its NUL by earlier versions
    AuditLogCollection(table).insert_many([dict(r) for r in records])
    table.close()
    _as_before_the_index(path)
    old = sqlite3.connect(path)
    old.execute(
        "UPDATE audit_logs SET path_fold = ? WHERE id = ?",
        (fold(records[5]["path"]), embedded._key(records[5]["_id"])),
    )
    old.commit()
    old.close()
    monkeypatch.setattr(embedded, "PATHS_BACKFILL_BATCH", 4)
    killer = sqlite3.connect(path)  # the process dies while committing its third batch
    killer.execute(
        "CREATE TRIGGER killed BEFORE UPDATE ON audit_backfills "
        "WHEN NEW.name = 'paths' AND NEW.next_rowid > 8 BEGIN SELECT RAISE(ABORT, 'killed'); END"
    )
    killer.commit()
    with pytest.raises(sqlite3.IntegrityError):
        AuditTable(path).connection()
    state = "SELECT next_rowid, last_rowid FROM audit_backfills WHERE name = 'paths'"
    assert killer.execute(state).fetchone() == (8, 30)  # two batches of four committed
    # a record stored meanwhile is indexed by its trigger; a deleted one not yet indexed
    # leaves nothing behind
    killer.execute("DROP TRIGGER killed")
    killer.commit()
    killer.close()
    table = AuditTable(path)
    assert table.connection().execute(state).fetchone() == (30, 30)
    collection = AuditLogCollection(table)
    later = _records(["/api/v1/later/σας"])[0]
    collection.insert_one(dict(later))
    _integrity(table)
    mock = mongomock.MongoClient(tz_aware=True).db
    mock.audit_logs.insert_many([dict(r) for r in [*records, later]])
    for q in ("σας", "STRASSE", "path:/api/v1/later/", "later/z"):
        filters = merge_search({"q": q})
        assert _pages({"audit_logs": collection}, filters, 2) == _pages(mock, filters, 2)
    assert collection.column_mismatches(ORG) == []  # the NUL kept as now: no edit
    table.close()


def test_a_record_deleted_before_the_backfill_reached_it_is_never_indexed(tmp_path, monkeypatch):
    path = str(tmp_path / "old.sqlite3")
    table = AuditTable(path)
    records = _records([f"/api/v1/roles/{i}" for i in range(12)])
    AuditLogCollection(table).insert_many([dict(r) for r in records])
    table.close()
    _as_before_the_index(path)
    monkeypatch.setattr(embedded, "PATHS_BACKFILL_BATCH", 4)
    killer = sqlite3.connect(path)
    killer.execute(
        "CREATE TRIGGER killed BEFORE UPDATE ON audit_backfills "
        "WHEN NEW.name = 'paths' AND NEW.next_rowid > 4 BEGIN SELECT RAISE(ABORT, 'killed'); END"
    )
    killer.commit()
    with pytest.raises(sqlite3.IntegrityError):
        AuditTable(path).connection()
    killer.execute("DROP TRIGGER killed")
    killer.execute("DELETE FROM audit_logs WHERE rowid IN (2, 10)")  # one indexed, one not yet
    killer.commit()
    killer.close()
    table = AuditTable(path)
    _integrity(table)
    collection = AuditLogCollection(table)
    found = list(
        iter_records({"audit_logs": collection}, ORG, AuditQuery({"q": "roles"}).branches(), 2000)
    )
    assert len(found) == 10
    table.close()


# The histogram's counts in SQL ----------------------------------------------------------


def _walked(db, branches, step, cap):
    """What the service's walk counts: the newest ``cap`` records by bucket and class."""
    from audit_app.audit.store.counters import status_class
    from audit_app.ids import floor_to

    counts = {}
    walked = iter_records(db, ORG, branches, 5000, projection={"createdAt": 1, "statusCode": 1})
    for seen, record in enumerate(walked):
        if seen >= cap:
            return counts, record["createdAt"]
        family = status_class(record.get("statusCode"))
        if family is not None:
            key = (floor_to(record["createdAt"], step), int(family[0]))
            counts[key] = counts.get(key, 0) + 1
    return counts, None


HISTOGRAM_FILTERS = st.sampled_from(
    [
        {},
        {"method": "DELETE"},
        {"statusCode": "4xx"},
        {"q": "pathways"},
        {"q": "STRASSE"},
        {"q": "k"},
        {"q": "path:/api/v1/members/"},
        {"q": f"{OTHER}"},  # an id: four branches, merged
        {"q": "action:member.*"},
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    words=st.lists(
        st.tuples(
            st.sampled_from(WORDS),
            st.sampled_from(["GET", "DELETE"]),
            st.sampled_from([200, 404, 500, 99, 600, None]),
            st.integers(0, 90),
            st.booleans(),
        ),
        max_size=30,
    ),
    args=HISTOGRAM_FILTERS,
    cap=st.integers(1, 12),
    hourly=st.booleans(),
)
def test_the_histogram_s_sql_counts_equal_the_walk_s(
    tmp_path_factory, small_walks, words, args, cap, hourly
):
    from audit_app.audit.store.repository import count_by_bucket

    table = AuditTable(str(tmp_path_factory.mktemp("h") / "audit.sqlite3"))
    collection = AuditLogCollection(table)
    records = _records([f"/api/v1/{word}/{i}" for i, (word, *_) in enumerate(words)])
    for record, (_, method, status, minutes, by_other) in zip(records, words, strict=True):
        record.update(method=method, statusCode=status, accountId=OTHER if by_other else None)
        record["createdAt"] = BASE + timedelta(minutes=minutes * 20, milliseconds=minutes % 3)
        record["action"] = "member.invite" if by_other else "pathway.update"
    collection.insert_many([dict(r) for r in records])
    filters = merge_search(dict(args))
    if filters.get("action") == "member.*":
        filters["action"] = ["member.invite", "member.remove"]
    filters.update(from_=BASE, to=BASE + timedelta(days=2))
    branches = AuditQuery(filters=filters).branches()
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    db = {"audit_logs": collection}
    try:
        rows, more = count_by_bucket(db, ORG, branches, step, cap, 5000)
        counted = {(start, family): n for start, family, n in rows if family is not None}
        assert (counted, more) == _walked(db, branches, step, cap)
    finally:
        table.close()


def test_the_histogram_s_sql_walks_the_branch_s_index_and_reads_records_only_to_count(tmp_path):
    table = AuditTable(str(tmp_path / "plan.sqlite3"))
    collection = AuditLogCollection(table)
    seen = []
    table.connection().set_trace_callback(seen.append)
    for args, index in (({"method": "GET"}, "org_method_newest"), ({}, "org_newest")):
        filters = {**merge_search(args), "from_": BASE, "to": BASE + timedelta(days=30)}
        [branch] = AuditQuery(filters=filters).branches()
        scoped = [({**branch, "organizationId": ORG}, index_for(branch))]
        collection.bucket_counts(scoped, 3600000, 20000, 5000)
        boundary, counts = (
            " | ".join(r[3] for r in table.connection().execute("EXPLAIN QUERY PLAN " + sql))
            for sql in seen[-2:]
        )
        # where the newest 20,000 end: the index's keys alone
        assert f"USING COVERING INDEX {index}" in boundary, boundary
        assert "TEMP B-TREE" not in boundary, boundary
        # their counts: the same walk, each record read for its status; groups, no sort
        assert f"USING INDEX {index}" in counts, counts
        assert "TEMP B-TREE FOR ORDER BY" not in counts, counts
    table.close()
