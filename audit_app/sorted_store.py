"""The embedded store's platform lists: a sorted SQLite index beside a collection's documents.

litemongo keeps each collection in one SQLite file (table ``documents``: the encoded ``_id``
and the BSON) and answers queries with mongomock's engine in Python, helped by hash indexes
for equality only; so a sorted page of 10,000 workspaces was a sort of all 10,000 in Python.
Here each index that serves a list of the API (``pagination.Listing``) also gets a table in
the collection's own file: one row per document with that index's key, each value in a
typed encoding whose byte order is MongoDB's order (``sort_key``), and a SQLite index on the
key. The row is written in the same transaction as its document (``SortedDocuments``: every
write of mongomock's engine goes through litemongo's table of documents) and deleted with it
(a trigger), so the index never lags its documents, in any process of the app.

A find that names such an index in its ``hint``, sorted as the index is (after the fields
its filter fixes), is answered by SQL: a walk of that index from the filter's bounds (the
organization, equalities, ranges, the keyset position of a page), joined to the documents in
the index's order and stopped by ``LIMIT``. Every document it yields is still tested against
the whole filter by mongomock's own matcher, so a row can never widen what a filter selects,
and conditions SQL cannot express are tested there. Any other find goes to litemongo as
before.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import struct
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
from bson import ObjectId
from bson.codec_options import CodecOptions
from bson.datetime_ms import _datetime_to_millis
from litemongo import MongoClient  # type: ignore[attr-defined]  # litemongo ships no types
from litemongo import sqlite_store as lite  # type: ignore[attr-defined]
from litemongo._vendor.mongomock import filtering

VERSION = 1  # of the table's layout and encoding: another version rebuilds the tables
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,60}$")
_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
SqlValue = bytes | int | str | None
# the latest walks (index, SQL, parameters) and how many finds that named a sorted index
# went to litemongo instead, since the process started: tests read both, EXPLAIN the SQL
WALKS: deque[tuple[str, str, tuple[SqlValue, ...]]] = deque(maxlen=100)
FALLBACKS = [0]
_AWARE: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)

# Sort keys ----------------------------------------------------------------------------
#
# A value's key is a type tag, in MongoDB's order of types (null, numbers, strings, objects,
# arrays, binary, ObjectId, booleans, dates, the rest), then bytes that sort as the values do
# within the type: so comparing keys as SQLite blobs (memcmp) compares values as MongoDB does.

_NULL, _NUMBER, _STRING, _OBJECT, _ARRAY, _BINARY = (
    b"\x10",
    b"\x20",
    b"\x30",
    b"\x40",
    b"\x50",
    b"\x60",
)
_OBJECT_ID, _BOOLEAN, _DATE, _OTHER = b"\x70", b"\x80", b"\x90", b"\xa0"
_TAGS = (_NULL, _NUMBER, _STRING, _OBJECT, _ARRAY, _BINARY, _OBJECT_ID, _BOOLEAN, _DATE, _OTHER)


def sort_key(value: Any) -> bytes:
    """The value's key: ``sort_key(a) < sort_key(b)`` exactly when MongoDB sorts a before b
    (numbers as doubles; a missing field is null, as in MongoDB's indexes)."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _BOOLEAN + (b"\x01" if value else b"\x00")
    if isinstance(value, int | float | bson.Int64):
        number = float(value)
        if math.isnan(number):
            return _NUMBER  # NaN sorts before every other number in MongoDB
        bits = struct.unpack(">Q", struct.pack(">d", number + 0.0))[0]  # -0.0 as 0.0
        bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | (1 << 63)
        return _NUMBER + b"\x01" + struct.pack(">Q", bits)
    if isinstance(value, str):
        return _STRING + value.encode("utf-8", "surrogatepass")
    if isinstance(value, ObjectId):
        return _OBJECT_ID + value.binary
    if isinstance(value, datetime):
        return _DATE + struct.pack(">Q", _datetime_to_millis(value) + (1 << 63))
    if isinstance(value, bytes | bson.Binary):
        return _BINARY + bytes(value)
    if isinstance(value, Mapping):
        return _OBJECT + bson.encode(dict(value))
    if isinstance(value, list | tuple):
        return _ARRAY + bson.encode({"v": list(value)})
    return _OTHER + repr(value).encode("utf-8", "surrogatepass")


def _type_bounds(key: bytes) -> tuple[bytes, bytes]:
    """The keys every value of the same type lies between (MongoDB compares a range's bound
    only with values of its type)."""
    tag = key[:1]
    after = _TAGS[_TAGS.index(tag) + 1] if tag != _OTHER else b"\xff"
    return tag, after


def _field(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


# The index tables ---------------------------------------------------------------------


@dataclass(frozen=True)
class SortedIndex:
    """A declared index (its name and keys) kept as a table in the collection's file."""

    name: str
    fields: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or not self.fields or len(self.fields) > 8:
            raise ValueError(f"not an index this store can keep: {self.name!r}")

    @property
    def table(self) -> str:
        return f"sorted_{self.name}"

    @property
    def walk(self) -> str:
        """The name of the SQLite index on the key (what ``EXPLAIN QUERY PLAN`` shows)."""
        return f"sorted_{self.name}_walk"

    @property
    def signature(self) -> str:
        return json.dumps([VERSION, [list(f) for f in self.fields]])

    def create_sql(self) -> list[str]:
        # every name is checked by __post_init__ or fixed here; values travel as parameters
        keys = ", ".join(f"k{i} BLOB" for i in range(len(self.fields)))
        order = ", ".join(
            f"k{i}{' DESC' if direction == -1 else ''}"
            for i, (_, direction) in enumerate(self.fields)
        )
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} (doc_key TEXT PRIMARY KEY, {keys})",
            f"CREATE INDEX IF NOT EXISTS {self.walk} ON {self.table} ({order})",
            f"CREATE TRIGGER IF NOT EXISTS {self.table}_gone AFTER DELETE ON documents "  # noqa: S608 # nosec B608
            f"BEGIN DELETE FROM {self.table} WHERE doc_key = OLD._id; END",
        ]

    def drop_sql(self) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {self.table}_gone", f"DROP TABLE IF EXISTS {self.table}"]

    @property
    def upsert_sql(self) -> str:
        marks = ", ".join("?" * (len(self.fields) + 1))
        return f"INSERT OR REPLACE INTO {self.table} VALUES ({marks})"  # noqa: S608 # nosec B608

    def row(self, doc_key: str, document: Mapping[str, Any]) -> tuple[SqlValue, ...]:
        return (doc_key, *(sort_key(_field(document, path)) for path, _ in self.fields))


class SortedDocuments(lite.TableDict):
    """litemongo's table of documents, writing each document's index rows with it."""

    def __init__(self, *args: Any, sorted_indexes: Sequence[SortedIndex], **kwargs: Any) -> None:
        self.sorted_indexes = tuple(sorted_indexes)
        super().__init__(*args, **kwargs)

    def __setitem__(self, key: Any, val: Any) -> None:
        document = self._decode_doc(val) if isinstance(val, bytes) else val
        blob = val if isinstance(val, bytes) else self._encode_doc(val)
        doc_key = self.encode_key(key)
        with self._connection:  # one transaction: the document and its index rows
            self._cur.execute(
                f"INSERT INTO {self._table_name} VALUES(?, ?) "  # nosec B608
                f"ON CONFLICT({self.ID}) DO UPDATE SET {self.DOC}=excluded.{self.DOC}",
                (doc_key, blob),
            )
            for index in self.sorted_indexes:
                self._cur.execute(index.upsert_sql, index.row(doc_key, document))


class SortedCollectionStore(lite.CollectionStore):
    """A collection file whose declared list indexes are kept as sorted tables."""

    def __init__(
        self, filename: Path, codec_options: Any = None, sorted_indexes: Iterable[SortedIndex] = ()
    ) -> None:
        self.sorted_indexes = {index.name: index for index in sorted_indexes}
        super().__init__(filename, codec_options=codec_options)

    def open(self) -> None:
        """litemongo's, one connection at a time per database folder, across threads and
        processes (an ``flock`` on the folder). Alone, two connections opening a new file at
        once collide: both set the journal mode (``database is locked``), both read no key
        format in the ``info`` table and both insert one (``UNIQUE constraint failed:
        info.key``). A connection opens each collection once."""
        folder = os.open(self._path.parent, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            self._open()
        finally:
            os.close(folder)  # and with it the lock

    def _open(self) -> None:
        super().open()
        if not self.sorted_indexes:
            return
        plain: Any = self._documents  # type: ignore[has-type]
        self._documents = SortedDocuments(
            self.DOCUMENTS,
            self._connection,
            self._cur,
            codec_options=self._codec_options,
            key_format=plain.key_format,
            sorted_indexes=list(self.sorted_indexes.values()),
        )
        self._prepare()

    def _prepare(self) -> None:
        """Create the tables, and fill each from the documents when it is new or of another
        layout (a store written by an earlier version); one writer at a time, across
        processes (``BEGIN IMMEDIATE``)."""
        connection = self._connection
        want = {index.name: index.signature for index in self.sorted_indexes.values()}
        if all(self._signature(name) == value for name, value in want.items()):
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            for index in self.sorted_indexes.values():
                if self._signature(index.name) == index.signature:
                    continue
                for statement in (*index.drop_sql(), *index.create_sql()):
                    connection.execute(statement)
                rows = connection.execute(f"SELECT {self.ID}, {self.DOC} FROM {self.DOCUMENTS}")  # noqa: S608 # nosec B608
                connection.executemany(
                    index.upsert_sql,
                    (index.row(key, self._documents._decode_doc(blob)) for key, blob in rows),
                )
                connection.execute(
                    f"INSERT OR REPLACE INTO {self.INFO} VALUES (?, ?)",  # noqa: S608 # nosec B608
                    (f"sorted:{index.name}", index.signature),
                )
            connection.commit()
        except BaseException:
            connection.rollback()
            raise

    def _signature(self, name: str) -> str | None:
        row = self._connection.execute(
            f"SELECT value FROM {self.INFO} WHERE key = ?",  # noqa: S608 # nosec B608
            (f"sorted:{name}",),
        ).fetchone()
        return row[0] if row else None

    def drop(self) -> None:
        super().drop()  # the trigger empties the index tables with the documents
        with self._connection:
            for name in self.sorted_indexes:
                self._connection.execute(
                    f"DELETE FROM {self.INFO} WHERE key = ?",  # noqa: S608 # nosec B608
                    (f"sorted:{name}",),
                )

    def copy_from(self, source: lite.CollectionStore) -> None:
        super().copy_from(source)  # rows copied as they are: refill the index tables
        with self._connection:
            self._connection.execute(
                f"DELETE FROM {self.INFO} WHERE key LIKE 'sorted:%'"  # noqa: S608 # nosec B608
            )
        self._prepare()

    def explain(self, sql: str, parameters: Sequence[SqlValue]) -> list[str]:
        """SQLite's plan of a walk, a line per step."""
        rows = self._connection.execute("EXPLAIN QUERY PLAN " + sql, parameters).fetchall()
        return [row[-1] for row in rows]

    def walk(self, sql: str, parameters: Sequence[SqlValue]) -> Iterator[dict[str, Any]]:
        """The documents a planned walk (``plan_sql``) reads, in its order."""
        with self._rwlock.reader():
            rows = self._connection.execute(sql, parameters).fetchall()
        for (blob,) in rows:
            yield bson.decode(blob, codec_options=_AWARE)  # as the app's clients read them


class SortedDatabaseStore(lite.DatabaseStore):
    def __init__(
        self, path: Path, sorted_indexes: Mapping[str, Sequence[SortedIndex]], **kwargs: Any
    ) -> None:
        self.sorted_indexes = sorted_indexes
        path.mkdir(parents=True, exist_ok=True)  # litemongo's mkdir fails if another made it
        super().__init__(path, **kwargs)

    def __getitem__(self, col_name: str) -> lite.CollectionStore:
        if col_name not in self._collections:
            self._collections[col_name] = SortedCollectionStore(
                self._dirpath / col_name,
                codec_options=self._codec_options,
                sorted_indexes=self.sorted_indexes.get(col_name, ()),
            )
        return self._collections[col_name]


class SortedServerStore(lite.ServerStore):
    def __init__(self, dirpath: str, sorted_indexes: Mapping[str, Sequence[SortedIndex]]) -> None:
        self.sorted_indexes = sorted_indexes
        Path(dirpath).mkdir(parents=True, exist_ok=True)  # as in SortedDatabaseStore
        super().__init__(dirpath)

    def __getitem__(self, db_name: str) -> lite.DatabaseStore:
        if db_name not in self._databases:
            self._databases[db_name] = SortedDatabaseStore(
                self._dirpath / db_name, self.sorted_indexes
            )
        return self._databases[db_name]


def connect(dirpath: str, sorted_indexes: Mapping[str, Sequence[SortedIndex]]) -> Any:
    """litemongo's client on a folder, with these indexes kept sorted per collection."""
    return MongoClient(SortedServerStore(dirpath, sorted_indexes), tz_aware=True)


# Planning a find ----------------------------------------------------------------------


class _NotPlanned(Exception):
    """The find is not one the index answers: litemongo will."""


def plan_sql(
    index: SortedIndex,
    filter_: Mapping[str, Any],
    sort: Sequence[tuple[str, int]],
    limit: int = 0,
) -> tuple[str, tuple[SqlValue, ...]] | None:
    """The SQL that walks ``index`` for this find, or None when the index cannot give the
    sort: the sort must be the index's keys after the ones the filter fixes by equality (or
    all of those reversed). The walk may read more than the filter selects (a condition SQL
    cannot say is left to the caller's test of each document), never less."""
    if not isinstance(filter_, Mapping):
        return None
    positions = {path: i for i, (path, _) in enumerate(index.fields)}
    where: list[str] = []
    parameters: list[SqlValue] = []
    exact = [True]  # whether SQL says the whole filter (then LIMIT is the find's)
    try:
        _conditions(filter_, positions, where, parameters, exact)
    except _NotPlanned:
        return None
    fixed = _fixed(filter_, positions)
    start = 0
    while start < len(index.fields) and start in fixed:
        start += 1
    rest = index.fields[start:]
    wanted = [(path, 1 if direction == 1 else -1) for path, direction in sort]
    if wanted == list(rest):
        reverse = False
    elif wanted == [(path, -direction) for path, direction in rest]:
        reverse = True
    else:
        return None
    order = ", ".join(
        f"s.k{positions[path]}{' DESC' if (direction == -1) != reverse else ''}"
        for path, direction in rest
    )
    sql = (
        f"SELECT d.doc FROM {index.table} AS s INDEXED BY {index.walk} "  # noqa: S608 # nosec B608
        f"CROSS JOIN documents AS d WHERE d._id = s.doc_key"
    )
    if where:
        sql += " AND " + " AND ".join(where)
    if order:
        sql += f" ORDER BY {order}"
    if limit and exact[0]:
        sql += f" LIMIT {int(limit)}"
    return sql, tuple(parameters)


def _fixed(filter_: Mapping[str, Any], positions: Mapping[str, int]) -> set[int]:
    """The positions of the index's keys the filter fixes by equality at its top level."""
    fixed = set()
    for path, value in filter_.items():
        if path in positions and _equality(value) is not None:
            fixed.add(positions[path])
    return fixed


def _equality(value: Any) -> tuple[Any] | None:
    if isinstance(value, Mapping):
        if list(value) == ["$eq"]:
            value = value["$eq"]
        else:
            return None
    if isinstance(value, (list | tuple | re.Pattern | bson.Regex, Mapping)):
        return None  # arrays match elements too; regexes and documents are left to the test
    return (value,)


def _conditions(
    filter_: Mapping[str, Any],
    positions: Mapping[str, int],
    where: list[str],
    parameters: list[SqlValue],
    exact: list[bool],
) -> None:
    for path, value in filter_.items():
        if path == "$and" and isinstance(value, list):
            for clause in value:
                if not isinstance(clause, Mapping):
                    raise _NotPlanned
                _conditions(clause, positions, where, parameters, exact)
        elif path == "$or" and isinstance(value, list) and value:
            branches: list[str] = []
            branch_parameters: list[SqlValue] = []
            for clause in value:
                said = _clause(clause, positions, branch_parameters)
                if said is None:
                    branches = []
                    break
                branches.append(said)
            if branches:
                where.append("(" + " OR ".join(branches) + ")")
                parameters.extend(branch_parameters)
            else:
                exact[0] = False
        elif path in positions:
            said_parameters: list[SqlValue] = []
            said = _condition(positions[path], value, said_parameters)
            if said is None:
                exact[0] = False
            else:
                where.append(said)
                parameters.extend(said_parameters)
        else:
            exact[0] = False


def _clause(clause: Any, positions: Mapping[str, int], parameters: list[SqlValue]) -> str | None:
    """One branch of an ``$or``: a single condition on a key of the index."""
    if not isinstance(clause, Mapping) or len(clause) != 1:
        return None
    [(path, value)] = clause.items()
    if path not in positions:
        return None
    said: list[SqlValue] = []
    text = _condition(positions[path], value, said)
    if text is not None:
        parameters.extend(said)
    return text


def _condition(position: int, value: Any, parameters: list[SqlValue]) -> str | None:
    column = f"s.k{position}"
    equal = _equality(value)
    if equal is not None:
        parameters.append(sort_key(equal[0]))
        return f"{column} = ?"
    if not isinstance(value, Mapping) or not value or any(op not in _RANGE for op in value):
        return None
    parts = []
    for operator, bound in value.items():
        if _equality(bound) is None or bound is None:
            return None
        key = sort_key(bound)
        floor, ceiling = _type_bounds(key)
        parts.append(f"{column} {_RANGE[operator]} ?")
        parameters.append(key)
        # only values of the bound's type: MongoDB's type bracketing
        parts.append(f"{column} >= ?" if operator in ("$lt", "$lte") else f"{column} < ?")
        parameters.append(floor if operator in ("$lt", "$lte") else ceiling)
    return "(" + " AND ".join(parts) + ")"


# The collection as the app sees it ----------------------------------------------------


class SortedCursor:
    """A find on a collection with sorted indexes: the walk of the index its hint names when
    the plan allows it, else litemongo's cursor with the same modifiers."""

    def __init__(
        self, collection: Any, filter_: Any, projection: Any, args: tuple, kwargs: dict
    ) -> None:
        self._collection = collection
        self._filter = filter_ if filter_ is not None else {}
        self._projection = projection
        self._args = args
        self._kwargs = kwargs
        self._calls: list[tuple[str, tuple, dict]] = []
        self._sort: list[tuple[str, int]] = []
        self._limit = 0
        self._hint: str | None = None
        self._skip = 0
        self._iterator: Iterator[dict[str, Any]] | None = None

    def _record(self, name: str, *args: Any, **kwargs: Any) -> SortedCursor:
        self._calls.append((name, args, kwargs))
        return self

    def sort(self, key_or_list: Any, direction: int | None = None) -> SortedCursor:
        if isinstance(key_or_list, str):
            self._sort = [(key_or_list, direction or 1)]
        else:
            self._sort = [(k, v) for k, v in key_or_list]
        return self._record("sort", key_or_list, *(() if direction is None else (direction,)))

    def limit(self, count: int) -> SortedCursor:
        self._limit = count
        return self._record("limit", count)

    def skip(self, count: int) -> SortedCursor:
        self._skip = count
        return self._record("skip", count)

    def hint(self, index: Any) -> SortedCursor:
        self._hint = index if isinstance(index, str) else None
        return self._record("hint", index)

    def __getattr__(self, name: str) -> Any:  # batch_size, max_time_ms, ...
        return lambda *args, **kwargs: self._record(name, *args, **kwargs)

    def __iter__(self) -> SortedCursor:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._iterator is None:
            self._iterator = self._run()
        return next(self._iterator)

    def next(self) -> dict[str, Any]:
        return self.__next__()

    def plan(self) -> tuple[SortedIndex, tuple[str, tuple[SqlValue, ...]]] | None:
        """The index and SQL this find walks, or None (litemongo answers it)."""
        store = self._collection._store
        indexes = getattr(store, "sorted_indexes", {})
        index = indexes.get(self._hint) if self._hint else None
        if index is None or self._skip or self._args or self._kwargs:
            return None
        if not _projectable(self._projection):
            return None
        planned = plan_sql(index, self._filter, self._sort, self._limit)
        return None if planned is None else (index, planned)

    def _run(self) -> Iterator[dict[str, Any]]:
        planned = self.plan()
        if planned is None:
            if self._hint in getattr(self._collection._store, "sorted_indexes", {}):
                FALLBACKS[0] += 1
            cursor = self._collection.find(
                self._filter, self._projection, *self._args, **self._kwargs
            )
            for name, args, kwargs in self._calls:
                cursor = getattr(cursor, name)(*args, **kwargs)
            yield from cursor
            return
        index, (sql, parameters) = planned
        WALKS.append((index.name, sql, parameters))
        found = 0
        for document in self._collection._store.walk(sql, parameters):
            if not filtering.filter_applies(self._filter, document):
                continue
            yield _project(document, self._projection)
            found += 1
            if self._limit and found >= self._limit:
                return


def _projectable(projection: Any) -> bool:
    if projection is None:
        return True
    if not isinstance(projection, Mapping):
        return False
    return all(
        "." not in name and value in (0, 1, True, False) for name, value in projection.items()
    )


def _project(document: dict[str, Any], projection: Mapping[str, Any] | None) -> dict[str, Any]:
    if not projection:
        return document
    kept = {name for name, value in projection.items() if value}
    if not kept - {"_id"}:
        excluded = {name for name, value in projection.items() if not value}
        return {k: v for k, v in document.items() if k not in excluded}
    keep_id = projection.get("_id", 1)
    return {k: v for k, v in document.items() if k in kept or (k == "_id" and keep_id)}


class SortedCollection:
    """A litemongo collection whose finds may walk a sorted index; the rest is litemongo's."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    def find(self, filter_: Any = None, projection: Any = None, *args: Any, **kwargs: Any) -> Any:
        return SortedCursor(self._collection, filter_, projection, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


class SortedDatabase:
    """litemongo's database, handing out ``SortedCollection``s for collections with sorted
    indexes."""

    def __init__(self, database: Any, collections: Iterable[str]) -> None:
        self._database = database
        self._sorted = frozenset(collections)

    def __getitem__(self, name: str) -> Any:
        found = self._database[name]
        return SortedCollection(found) if name in self._sorted else found

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        found = getattr(self._database, name)
        return SortedCollection(found) if name in self._sorted else found

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self[name]
