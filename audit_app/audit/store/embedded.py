"""The embedded store's audit log: one SQLite table with real indexes.

The platform collections of the embedded store stay in litemongo (mongomock's engine on
SQLite files): they hold thousands of documents. ``audit_logs`` holds millions, and
there every page must be an index walk, as on MongoDB. So on the embedded store it is a
table with a typed column for each field that is filtered or sorted, the record's exact
BSON as a blob (types round-trip exactly, so digests hash the same as on MongoDB), and one
index per query shape, mirroring ``repository.INDEXES``.

``AuditLogCollection`` gives the table the part of pymongo's ``Collection`` API that the
repositories use, so the app has one set of repository functions whatever the store:

- the query shapes the app sends (``AuditQuery.branches()``, the sealing reads, the
  retention purge, a record by id) are recognised and answered by SQL walking the index
  the ``hint`` names (``INDEXED BY``), sorted by the index, stopped by ``LIMIT``;
- ``targets.id`` (what a request acted on: an array, so a record has none, one or a few)
  has a side table, ``audit_targets``, one row per distinct target id of a record, written
  in the same transaction as the record and deleted with it (a trigger); its index
  ``org_target_newest`` is the walk of a branch that leads with ``targets.id``, joined back
  to the record by rowid, as MongoDB walks its multikey index of the same name;
- anything else (an operator's or a test's ad-hoc filter, an update) is answered by
  mongomock's engine over the candidate rows: correct, and as slow as the embedded store
  always was. Nothing in the request path takes that road (tests assert it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import bson
import mongomock
from bson import ObjectId
from bson.codec_options import CodecOptions
from bson.datetime_ms import _datetime_to_millis
from pymongo.errors import BulkWriteError, DuplicateKeyError, ExecutionTimeout, OperationFailure

from ...db import Document
from . import repository

COLLECTION = repository.COLLECTION
CODEC: CodecOptions[Document] = CodecOptions(tz_aware=True, tzinfo=UTC)
BUSY_TIMEOUT_MS = 5_000  # as docs/audit-schema.md says; past it, the record is spooled

# the organization's newest-first order, with the tie-break on _id
_NEWEST = "created_at DESC, id DESC"
NEWEST = (("createdAt", -1), ("_id", -1))  # the same, as the app asks for it
TABLE = """
CREATE TABLE IF NOT EXISTS audit_logs (
    rowid INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,          -- the _id, type-tagged (see _key)
    organization_id BLOB,             -- ObjectId bytes, NULL when not an ObjectId
    created_at INTEGER,               -- milliseconds since the epoch, NULL when not a date
    stored_at INTEGER,
    account_id BLOB,
    workspace_id BLOB,
    api_key_id BLOB,
    status_code NUMERIC,
    status_class INTEGER,             -- statusCode // 100 for integral codes
    method TEXT,
    auth_type TEXT,
    resource TEXT,
    path_fold TEXT,                   -- the path case-folded as a case-insensitive regex sees it
    doc BLOB NOT NULL,                -- the record's exact BSON
    ip TEXT,                          -- (columns added later come after doc: see _migrate)
    request_id TEXT,
    action TEXT,
    credential_id TEXT,
    account_email TEXT                -- a staff member's records are found by it (actor:)
);
-- what each record acted on (``targets.id``): one row per distinct ObjectId of a record's
-- targets, with copies of the columns its index sorts on, so a target's records are one
-- index walk newest first (the multikey index of MongoDB, as a table)
CREATE TABLE IF NOT EXISTS audit_targets (
    log_rowid INTEGER NOT NULL,       -- the record's row in audit_logs
    target_id BLOB NOT NULL,          -- ObjectId bytes
    organization_id BLOB,             -- the record's organization_id, created_at and id
    created_at INTEGER,
    id BLOB NOT NULL,
    PRIMARY KEY (log_rowid, target_id)
) WITHOUT ROWID;
-- a record that goes takes its target rows with it, whoever deletes it (the purge, an update
-- that rewrites it, an operator); a changed position moves them along
CREATE TRIGGER IF NOT EXISTS audit_targets_deleted AFTER DELETE ON audit_logs
BEGIN
    DELETE FROM audit_targets WHERE log_rowid = OLD.rowid;
END;
CREATE TRIGGER IF NOT EXISTS audit_targets_moved
AFTER UPDATE OF organization_id, created_at, id ON audit_logs
BEGIN
    UPDATE audit_targets
    SET organization_id = NEW.organization_id, created_at = NEW.created_at, id = NEW.id
    WHERE log_rowid = OLD.rowid;
END;
-- fills of tables of earlier versions: the rows up to last_rowid, done up to next_rowid
CREATE TABLE IF NOT EXISTS audit_backfills (
    name TEXT PRIMARY KEY,
    next_rowid INTEGER NOT NULL,
    last_rowid INTEGER NOT NULL
);
"""
# columns added to tables of earlier versions, filled from each row's BSON when added
ADDED_COLUMNS = ("ip", "request_id", "action", "credential_id", "account_email")
SCHEMA = f"""
CREATE INDEX IF NOT EXISTS org_newest ON audit_logs (organization_id, {_NEWEST}, path_fold);
CREATE INDEX IF NOT EXISTS org_account_newest
    ON audit_logs (organization_id, account_id, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_apikey_newest
    ON audit_logs (organization_id, api_key_id, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_workspace_newest
    ON audit_logs (organization_id, workspace_id, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_status_newest
    ON audit_logs (organization_id, status_code, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_statusclass_newest
    ON audit_logs (organization_id, status_class, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_method_newest ON audit_logs (organization_id, method, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_authtype_newest
    ON audit_logs (organization_id, auth_type, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_resource_newest ON audit_logs (organization_id, resource, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_requestid_newest
    ON audit_logs (organization_id, request_id, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_credential_newest
    ON audit_logs (organization_id, credential_id, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_ip_newest ON audit_logs (organization_id, ip, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_action_newest ON audit_logs (organization_id, action, {_NEWEST});
CREATE INDEX IF NOT EXISTS org_stored ON audit_logs (organization_id, stored_at, id);
CREATE INDEX IF NOT EXISTS requestid_org ON audit_logs (request_id, organization_id);
CREATE INDEX IF NOT EXISTS org_target_newest
    ON audit_targets (organization_id, target_id, {_NEWEST});
-- the installation-wide purge of earlier versions: retention is per organization now
DROP INDEX IF EXISTS created;
-- the staff lookup's walk of earlier versions (``requestid_org`` serves it now)
DROP INDEX IF EXISTS requestid_newest;
"""
SQL_INDEXES = frozenset(re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", SCHEMA))
# the path search's index: the trigrams of each record's folded path (FTS5, external content:
# the text stays in audit_logs.path_fold, the index holds only the trigrams and their
# positions). Kept in step by triggers, so every writer (insert_one, insert_many, a purge,
# an operator's update, migrate-store) keeps it without a line of its own; a record stored
# in a batch adds its trigrams to the batch's transaction, written at its commit. A row of
# an earlier version is indexed by the backfill (``_index_paths``); until the backfill has
# passed it, its triggers leave it alone (``_PATHS_PENDING``), so no row is indexed twice.
PATHS_BACKFILL = "paths"
_PATHS_PENDING = (
    "EXISTS (SELECT 1 FROM audit_backfills WHERE name = 'paths' "
    "AND {row} > next_rowid AND {row} <= last_rowid)"
)
PATHS_SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS audit_paths USING fts5(path_fold, "
    "content='audit_logs', content_rowid='rowid', columnsize=0, "
    "tokenize='trigram case_sensitive 1')",
    "CREATE TRIGGER IF NOT EXISTS audit_paths_added AFTER INSERT ON audit_logs "
    "WHEN NEW.path_fold IS NOT NULL BEGIN "
    "INSERT INTO audit_paths (rowid, path_fold) VALUES (NEW.rowid, NEW.path_fold); END",
    "CREATE TRIGGER IF NOT EXISTS audit_paths_deleted AFTER DELETE ON audit_logs "  # noqa: S608 # nosec B608
    f"WHEN OLD.path_fold IS NOT NULL AND NOT {_PATHS_PENDING.format(row='OLD.rowid')} BEGIN "
    "INSERT INTO audit_paths (audit_paths, rowid, path_fold) "
    "VALUES ('delete', OLD.rowid, OLD.path_fold); END",
    "CREATE TRIGGER IF NOT EXISTS audit_paths_changed AFTER UPDATE OF path_fold ON audit_logs "
    f"WHEN NOT {_PATHS_PENDING.format(row='OLD.rowid')} BEGIN "
    "INSERT INTO audit_paths (audit_paths, rowid, path_fold) "
    "SELECT 'delete', OLD.rowid, OLD.path_fold WHERE OLD.path_fold IS NOT NULL; "
    "INSERT INTO audit_paths (rowid, path_fold) "
    "SELECT NEW.rowid, NEW.path_fold WHERE NEW.path_fold IS NOT NULL; END",
)
# a search text shorter than a trigram has no trigram to look up: it walks as before
TRIGRAM = 3
TARGET_INDEX = "org_target_newest"  # on audit_targets, the others on audit_logs
PATH_INDEX = "org_path_newest"  # MongoDB's; here the trigram index (``PathSearch``) serves it
TARGET_FIELD = "targets.id"
_EQUALITY_COLUMNS = {
    "accountId": "account_id",
    "workspaceId": "workspace_id",
    "apiKeyId": "api_key_id",
    "method": "method",
    "authType": "auth_type",
    "resource": "resource",
    "requestId": "request_id",
    "credentialId": "credential_id",
    "ip": "ip",
    "action": "action",
    "accountEmail": "account_email",
}
_ID_FIELDS = {"accountId", "workspaceId", "apiKeyId"}
# how many finds took mongomock's road since the process started (tests assert the app's
# own queries never do)
FALLBACKS = [0]
_TEXT_FIELDS = {
    "method",
    "authType",
    "resource",
    "requestId",
    "credentialId",
    "ip",
    "action",
    "accountEmail",
}
# what a column holds, and what a statement's parameters may be
SqlValue = bytes | int | float | str | None
_T = TypeVar("_T")
log = logging.getLogger(__name__)


# Case folding ------------------------------------------------------------------------------

try:  # the regex engine's own lowercase (one character for one, e.g. dotted I to i), and
    # the characters it also treats as equal ignoring case (s and long s)
    from _sre import unicode_tolower as _tolower
    from re._casefix import _EXTRA_CASES
except ImportError:  # pragma: no cover - another Python: plain lowercase

    def _tolower(code: int) -> int:
        lower = chr(code).lower()
        return ord(lower) if len(lower) == 1 else code

    _EXTRA_CASES = {}
_FOLDED: dict[str, str] = {}


def _fold_char(char: str) -> str:
    folded = _FOLDED.get(char)
    if folded is None:
        code = _tolower(ord(char))
        folded = chr(min((code, *_EXTRA_CASES.get(code, ()))))
        _FOLDED[char] = folded
    return folded


def fold(text: str) -> str:
    """One character for each character, equal exactly when a case-insensitive regex (the
    ``i`` option, as mongomock and Python apply it) would call them equal; so a literal
    case-insensitive search is a plain substring search of folded texts."""
    if text.isascii():  # nearly every path: ASCII folds as it lowers (tests/test_journal.py)
        return text.lower()
    return "".join(_fold_char(char) for char in text)


# Encoding ----------------------------------------------------------------------------------


def _key(value: Any) -> bytes:
    """The ``_id`` as a sortable blob: ObjectIds by their bytes, anything else after them."""
    if isinstance(value, ObjectId):
        return b"\x07" + value.binary
    return b"\xff" + bson.encode({"v": value})


def _oid(value: Any) -> bytes | None:
    return value.binary if isinstance(value, ObjectId) else None


def _millis(value: Any) -> int | None:
    return _datetime_to_millis(value) if isinstance(value, datetime) else None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | bson.Int64):
        return None
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _row(document: Mapping[str, Any]) -> tuple[SqlValue, ...]:
    status = _number(document.get("statusCode"))
    path = document.get("path")
    return (
        _key(document["_id"]),
        _oid(document.get("organizationId")),
        _millis(document.get("createdAt")),
        _millis(document.get("storedAt")),
        _oid(document.get("accountId")),
        _oid(document.get("workspaceId")),
        _oid(document.get("apiKeyId")),
        status,
        int(status) // 100 if status is not None and float(status).is_integer() else None,
        _text(document.get("method")),
        _text(document.get("authType")),
        _text(document.get("resource")),
        _folded_path(path),
        *_added(document),
        bson.encode(document),
    )


def _folded_path(path: Any) -> str | None:
    """``path_fold``: the path case-folded, a NUL as \\x01. SQLite's trigram tokenizer stops
    at a NUL (a path may hold one: ``%00``); no search text holds a control character, so
    either one matches nothing a search asks for, and the trigrams after it are indexed."""
    return fold(path).replace("\x00", "\x01") if isinstance(path, str) else None


def _target_ids(document: Mapping[str, Any]) -> list[bytes]:
    """The distinct ObjectIds that ``{"targets.id": <ObjectId>}`` matches in a record, as
    bytes: the ``id`` of each target (an array of them counts each), in order."""
    targets = document.get("targets")
    found: list[bytes] = []
    for target in targets if isinstance(targets, list) else [targets]:
        value = target.get("id") if isinstance(target, Mapping) else None
        for candidate in value if isinstance(value, list) else [value]:
            if isinstance(candidate, ObjectId) and candidate.binary not in found:
                found.append(candidate.binary)
    return found


def _target_rows(
    log_rowid: int, row: Sequence[SqlValue], document: Mapping[str, Any]
) -> list[tuple[SqlValue, ...]]:
    """The ``audit_targets`` rows of a record stored as ``row`` (``_row``'s) at ``log_rowid``."""
    key, organization, created = row[0], row[1], row[2]
    return [(log_rowid, target, organization, created, key) for target in _target_ids(document)]


def _added(document: Mapping[str, Any]) -> tuple[SqlValue, ...]:
    """The values of ``ADDED_COLUMNS``."""
    return tuple(
        _text(document.get(name))
        for name in ("ip", "requestId", "action", "credentialId", "accountEmail")
    )


# the columns in the order _row gives them (the BSON last)
COLUMNS = (
    "id",
    "organization_id",
    "created_at",
    "stored_at",
    "account_id",
    "workspace_id",
    "api_key_id",
    "status_code",
    "status_class",
    "method",
    "auth_type",
    "resource",
    "path_fold",
    *ADDED_COLUMNS,
    "doc",
)
_COLUMN_LIST = ", ".join(COLUMNS)
_PLACEHOLDERS = ", ".join("?" * len(COLUMNS))
# fixed column names and placeholders only
_INSERT = f"INSERT INTO audit_logs ({_COLUMN_LIST}) VALUES ({_PLACEHOLDERS})"  # noqa: S608 # nosec B608
_INSERT_OR_IGNORE = _INSERT.replace("INSERT", "INSERT OR IGNORE", 1)


_INSERT_TARGETS = (
    "INSERT OR IGNORE INTO audit_targets (log_rowid, target_id, organization_id, created_at, id)"
    " VALUES (?, ?, ?, ?, ?)"
)


def _store(
    connection: sqlite3.Connection, document: Mapping[str, Any], *, missing: bool = False
) -> bool:
    """Insert a record and its target rows, within the caller's transaction; ``missing``:
    skip a record whose ``_id`` is stored already (False), else a duplicate raises."""
    row = _row(document)
    cursor = connection.execute(_INSERT_OR_IGNORE if missing else _INSERT, row)
    if missing and cursor.rowcount == 0:
        return False
    targets = _target_rows(cast("int", cursor.lastrowid), row, document)
    if targets:
        connection.executemany(_INSERT_TARGETS, targets)
    return True


_READ = "doc, id, organization_id, created_at, stored_at"  # what _document reads
_SELECT = f"SELECT {_READ} FROM audit_logs"  # noqa: S608 # nosec B608 - fixed names


def _decode(blob: bytes) -> Document:
    return bson.decode(blob, codec_options=CODEC)


def _document(row: Sequence[Any]) -> Document:
    """A row's record; a blob that is no BSON (edited in the file) becomes a stub built
    from the columns and marked ``unreadable``: shown, and reported by verification,
    rather than failing every page that holds it."""
    blob, key, organization, created, stored = row
    try:
        return _decode(blob)
    except Exception:  # noqa: BLE001 - whatever was written there, it is not a record
        stub: Document = {"_id": ObjectId(bytes(key)[1:]) if bytes(key)[:1] == b"\x07" else None}
        stub["organizationId"] = ObjectId(bytes(organization)) if organization else None
        stub["createdAt"] = _from_millis(created)
        stub["storedAt"] = _from_millis(stored)
        stub["unreadable"] = True
        return stub


def _from_millis(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


# The table ---------------------------------------------------------------------------------


class _ThreadConnections(threading.local):
    """A thread's connections, and the process that opened them."""

    pid: int | None
    connections: dict[str, sqlite3.Connection]


class AuditTable:
    """The SQLite file: per process and thread, one connection for reads and one for
    writes (WAL, a busy timeout).

    Two, because a read that streams (an export's cursor) holds a snapshot of the file:
    a write on the same connection while another process has committed since would fail
    at once ("database is locked", SQLITE_BUSY_SNAPSHOT) instead of waiting.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = _ThreadConnections()

    def _open(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        connection.execute("PRAGMA journal_mode=WAL")
        # as the rest of the embedded store: a commit survives a crash of the process;
        # the spool and MongoDB are the answer to a lost disk
        connection.execute("PRAGMA synchronous=NORMAL")
        # each record's commit writes the pages of its dozen index entries to the WAL;
        # checkpointing every ~40 MB instead of 4 MB takes a quarter off an insert
        connection.execute("PRAGMA wal_autocheckpoint=10000")
        connection.executescript(TABLE)
        _migrate(connection)
        _backfill_targets(connection)
        _index_paths(connection)
        connection.executescript(SCHEMA)
        connection.create_function("audit_path", 1, _path_of, deterministic=True)
        return connection

    def _connections(self) -> dict[str, sqlite3.Connection]:
        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            self._local.connections, self._local.pid = {}, pid
        return self._local.connections

    def connection(self) -> sqlite3.Connection:
        """This thread's connection for reads."""
        connections = self._connections()
        if "read" not in connections:
            connections["read"] = self._open()
        return connections["read"]

    def writer(self) -> sqlite3.Connection:
        """This thread's connection for writes."""
        connections = self._connections()
        if "write" not in connections:
            connections["write"] = self._open()
        return connections["write"]

    def close(self) -> None:
        if getattr(self._local, "pid", None) == os.getpid():
            for connection in self._local.connections.values():
                connection.close()
            self._local.pid = None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (no lock upgrade to deadlock on)."""
        connection = self.writer()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring a table of an earlier version up to date: add the missing columns and fill
    them from each row's BSON, in one transaction (so another process waits, then finds
    the work done). Once per file, on the first open after an upgrade."""
    if not _missing_columns(connection):
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        missing = _missing_columns(connection)
        for column in missing:
            # a fixed name of ADDED_COLUMNS, never input
            connection.execute(f"ALTER TABLE audit_logs ADD COLUMN {column} TEXT")
        filled = 0
        rows = connection.execute("SELECT rowid, doc FROM audit_logs").fetchall()
        updates = []
        for rowid, blob in rows:
            try:
                values = _added(_decode(blob))
            except Exception:  # noqa: BLE001, S112 - an unreadable row keeps empty columns
                continue  # (verification reports it as unreadable)
            updates.append((*values, rowid))
        connection.executemany(
            "UPDATE audit_logs SET ip = ?, request_id = ?, action = ?, credential_id = ?, "
            "account_email = ? WHERE rowid = ?",
            updates,
        )
        filled = len(updates)
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    log.warning("Embedded audit store upgraded: added %s, filled %d rows", missing, filled)


BACKFILL_BATCH = 5_000  # rows a transaction of a backfill reads: other writers wait no longer
_TARGETS_BACKFILL = "targets"


def _backfill_targets(connection: sqlite3.Connection) -> None:
    """Give the records of a table of an earlier version their ``audit_targets`` rows.

    The first open after the upgrade notes the range to fill (the rows up to the largest
    rowid then: every record stored later is stored with its target rows) and fills it a
    bounded batch per transaction, noting how far it got in the same transaction: records
    are stored between batches, and a killed process resumes where the last commit left
    off (several processes opening at once share the batches). A new file notes an empty
    range. Rows are re-read from each record's BSON, as ``_migrate`` fills its columns.
    """
    done = "SELECT next_rowid >= last_rowid FROM audit_backfills WHERE name = ?"
    if (connection.execute(done, (_TARGETS_BACKFILL,)).fetchone() or (False,))[0]:
        return
    filled = 0
    while True:
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "INSERT OR IGNORE INTO audit_backfills (name, next_rowid, last_rowid) "
                "VALUES (?, 0, (SELECT coalesce(max(rowid), 0) FROM audit_logs))",
                (_TARGETS_BACKFILL,),
            )
            next_rowid, last_rowid = connection.execute(
                "SELECT next_rowid, last_rowid FROM audit_backfills WHERE name = ?",
                (_TARGETS_BACKFILL,),
            ).fetchone()
            rows = connection.execute(
                "SELECT rowid, id, organization_id, created_at, doc FROM audit_logs "
                "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
                (next_rowid, last_rowid, BACKFILL_BATCH),
            ).fetchall()
            targets: list[tuple[SqlValue, ...]] = []
            for rowid, key, organization, created, blob in rows:
                try:
                    document = _decode(blob)
                except Exception:  # noqa: BLE001, S112 - an unreadable row has no targets
                    continue  # (verification reports it as unreadable)
                targets += _target_rows(rowid, (key, organization, created), document)
            connection.executemany(_INSERT_TARGETS, targets)
            reached = rows[-1][0] if len(rows) == BACKFILL_BATCH else last_rowid
            connection.execute(
                "UPDATE audit_backfills SET next_rowid = ? WHERE name = ?",
                (reached, _TARGETS_BACKFILL),
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        filled += len(rows)
        if reached >= last_rowid:
            break
    if filled:
        log.warning("Embedded audit store upgraded: filled the targets of %d rows", filled)


PATHS_BACKFILL_BATCH = 20_000  # rows a transaction of the path index's backfill reads


def _index_paths(connection: sqlite3.Connection) -> None:
    """Create the path search's trigram index, and fill it for the rows already stored.

    The index, its triggers and the range the backfill owns (the rows up to the largest
    rowid then) are made in one transaction, so each row is indexed exactly once: by the
    triggers if stored later, by the backfill otherwise. The backfill then runs as the
    targets' does: a bounded batch per transaction, its progress noted in the same
    transaction, resumed by whichever process opens the file next.
    """
    made = "SELECT 1 FROM sqlite_master WHERE name = 'audit_paths_changed'"
    if connection.execute(made).fetchone() is None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            if connection.execute(made).fetchone() is None:
                for statement in PATHS_SCHEMA:
                    connection.execute(statement)
                connection.execute(
                    "INSERT OR IGNORE INTO audit_backfills (name, next_rowid, last_rowid) "
                    "VALUES (?, 0, (SELECT coalesce(max(rowid), 0) FROM audit_logs))",
                    (PATHS_BACKFILL,),
                )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    state = "SELECT next_rowid, last_rowid FROM audit_backfills WHERE name = ?"
    next_rowid, last_rowid = connection.execute(state, (PATHS_BACKFILL,)).fetchone()
    filled = 0
    while next_rowid < last_rowid:
        connection.execute("BEGIN IMMEDIATE")
        try:
            next_rowid, last_rowid = connection.execute(state, (PATHS_BACKFILL,)).fetchone()
            (reached,) = connection.execute(
                "SELECT max(rowid) FROM (SELECT rowid FROM audit_logs "
                "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?)",
                (next_rowid, last_rowid, PATHS_BACKFILL_BATCH),
            ).fetchone()
            reached = last_rowid if reached is None else reached
            # a NUL an earlier version kept in a path (see _folded_path), as it is kept now
            stored = connection.execute(
                "SELECT rowid, path_fold FROM audit_logs WHERE rowid > ? AND rowid <= ?",
                (next_rowid, reached),
            ).fetchall()
            connection.executemany(
                "UPDATE audit_logs SET path_fold = ? WHERE rowid = ?",
                [
                    (text.replace("\x00", "\x01"), rowid)
                    for rowid, text in stored
                    if isinstance(text, str) and "\x00" in text
                ],
            )
            filled += connection.execute(
                "INSERT INTO audit_paths (rowid, path_fold) SELECT rowid, path_fold "
                "FROM audit_logs WHERE rowid > ? AND rowid <= ? AND path_fold IS NOT NULL",
                (next_rowid, reached),
            ).rowcount
            connection.execute(
                "UPDATE audit_backfills SET next_rowid = ? WHERE name = ?",
                (reached, PATHS_BACKFILL),
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        next_rowid = reached
    if filled:
        log.warning("Embedded audit store upgraded: indexed the paths of %d rows", filled)


def _path_of(blob: bytes) -> str | None:
    """A record's exact path (not folded), for the anchored form's case-sensitive test."""
    try:
        path = _decode(blob).get("path")
    except Exception:  # noqa: BLE001 - an unreadable record has no path to match
        return None
    return path if isinstance(path, str) else None


def _missing_columns(connection: sqlite3.Connection) -> list[str]:
    present = {row[1] for row in connection.execute("PRAGMA table_info(audit_logs)")}
    return [column for column in ADDED_COLUMNS if column not in present]


def _timed(
    connection: sqlite3.Connection, budget: list[float | None], step: Callable[[], _T]
) -> _T:
    """Run one step of a statement within what is left of its time budget.

    As MongoDB's ``maxTimeMS``, the budget counts the store's work on the query across all
    its batches, not the time the caller spends between them; past it the statement stops
    with ExecutionTimeout (the API's 503 ``query_timeout``).
    """
    if budget[0] is None:
        return step()
    started = time.monotonic()
    deadline = started + budget[0]
    connection.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
    try:
        return step()
    except sqlite3.OperationalError as error:
        if "interrupted" in str(error):
            raise ExecutionTimeout("operation exceeded time limit", 50) from None
        raise
    finally:
        connection.set_progress_handler(None, 0)
        budget[0] -= time.monotonic() - started


# The collection ----------------------------------------------------------------------------


class _Result:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        self.acknowledged = True


class AuditLogCollection:
    """``audit_logs`` on the embedded store, with pymongo's API (the part the app uses)."""

    name = COLLECTION

    def __init__(self, table: AuditTable) -> None:
        self.table = table
        self.full_name = f"embedded.{COLLECTION}"

    def with_options(self, **_options: Any) -> AuditLogCollection:
        return self

    # writing

    def insert_one(self, document: Document, *args: Any, **kwargs: Any) -> _Result:
        document.setdefault("_id", ObjectId())
        try:
            if _target_ids(document):  # the record and its target rows, in one transaction
                with self.table.write() as connection:
                    _store(connection, document)
            else:  # one statement: its own transaction, committed before it returns
                self.table.writer().execute(_INSERT, _row(document))
        except sqlite3.IntegrityError:
            raise DuplicateKeyError(
                f"E11000 duplicate key error collection: {COLLECTION} index: _id_",
                11000,
            ) from None
        return _Result(inserted_id=document["_id"])

    def insert_many(
        self, documents: Iterable[Document], ordered: bool = True, *args: Any, **kwargs: Any
    ) -> _Result:
        documents = list(documents)
        inserted: list[Any] = []
        errors: list[dict[str, Any]] = []
        with self.table.write() as connection:
            for index, document in enumerate(documents):
                document.setdefault("_id", ObjectId())
                try:
                    _store(connection, document)
                    inserted.append(document["_id"])
                except sqlite3.IntegrityError:
                    errors.append({"index": index, "code": 11000, "errmsg": "E11000 duplicate"})
                    if ordered:
                        break
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nInserted": len(inserted)})
        return _Result(inserted_ids=inserted)

    def delete_many(self, filter_: Mapping[str, Any], *args: Any, **kwargs: Any) -> _Result:
        return self._delete(filter_, many=True)

    def delete_one(self, filter_: Mapping[str, Any], *args: Any, **kwargs: Any) -> _Result:
        return self._delete(filter_, many=False)

    def _delete(self, filter_: Mapping[str, Any], *, many: bool) -> _Result:
        ids = [doc["_id"] for doc in self.find(filter_, limit=0 if many else 1)]
        with self.table.write() as connection:
            for record_id in ids:
                connection.execute("DELETE FROM audit_logs WHERE id = ?", (_key(record_id),))
        return _Result(deleted_count=len(ids))

    def update_one(
        self,
        filter_: Mapping[str, Any],
        update: Mapping[str, Any],
        upsert: bool = False,
        *args: Any,
        **kwargs: Any,
    ) -> _Result:
        return self._update(filter_, update, many=False, replace=False)

    def update_many(
        self,
        filter_: Mapping[str, Any],
        update: Mapping[str, Any],
        upsert: bool = False,
        *args: Any,
        **kwargs: Any,
    ) -> _Result:
        return self._update(filter_, update, many=True, replace=False)

    def replace_one(
        self,
        filter_: Mapping[str, Any],
        replacement: Mapping[str, Any],
        upsert: bool = False,
        *args: Any,
        **kwargs: Any,
    ) -> _Result:
        return self._update(filter_, replacement, many=False, replace=True)

    def _update(
        self, filter_: Mapping[str, Any], update: Mapping[str, Any], *, many: bool, replace: bool
    ) -> _Result:
        """Updates are for operators and tests, never the app: mongomock applies them."""
        changed = 0
        for document in list(self.find(filter_, limit=0 if many else 1)):
            scratch: Any = mongomock.MongoClient(tz_aware=True).db.scratch
            scratch.insert_one(document)
            if replace:
                scratch.replace_one({"_id": document["_id"]}, update)
            else:
                scratch.update_one({"_id": document["_id"]}, update)
            after = scratch.find_one({"_id": document["_id"]})
            if after is None:  # the update replaced the _id: refused, as MongoDB refuses it
                raise OperationFailure("the _id of a record cannot change", 66)
            with self.table.write() as connection:  # its target rows go with it (trigger)
                connection.execute("DELETE FROM audit_logs WHERE id = ?", (_key(document["_id"]),))
                _store(connection, after)
            changed += 1
        return _Result(matched_count=changed, modified_count=changed, upserted_id=None)

    # reading

    def find(
        self,
        filter_: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> AuditLogCursor:
        cursor = AuditLogCursor(self, filter_ or {}, projection)
        if kwargs.get("limit"):
            cursor.limit(kwargs["limit"])
        if kwargs.get("sort"):
            cursor.sort(kwargs["sort"])
        return cursor

    def find_one(
        self,
        filter_: Any = None,
        projection: Mapping[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Document | None:
        if filter_ is not None and not isinstance(filter_, dict):
            filter_ = {"_id": filter_}
        for document in self.find(filter_, projection, **kwargs).limit(1):
            return document
        return None

    def count_documents(
        self, filter_: Mapping[str, Any], limit: int | None = None, **kwargs: Any
    ) -> int:
        if not filter_:
            (total,) = cast(
                "tuple[int]",
                self.table.connection().execute("SELECT count(*) FROM audit_logs").fetchone(),
            )
            return min(total, limit) if limit else total
        count = 0
        cursor = self.find(filter_, {"_id": 1})
        if limit:
            cursor.limit(limit)
        for _ in cursor:
            count += 1
        return count

    def estimated_document_count(self, **kwargs: Any) -> int:
        row = self.table.connection().execute("SELECT max(rowid) FROM audit_logs").fetchone()
        return cast("int | None", row[0]) or 0

    def column_mismatches(self, organization_id: ObjectId, limit: int = 100) -> list[str]:
        """Records whose typed columns or target rows disagree with their sealed BSON (they
        were edited: filters would no longer find what the record says, or would find it
        for a target it does not name), or whose BSON cannot be read at all. Verification
        runs this; MongoDB has no such second copy."""
        found: list[str] = []
        connection = self.table.connection()
        rows = connection.execute(
            f"SELECT rowid, {_COLUMN_LIST} FROM audit_logs "  # noqa: S608 # nosec B608 - fixed names
            "WHERE organization_id = ? OR organization_id IS NULL",
            (organization_id.binary,),
        )
        for rowid, *columns in rows:
            try:
                document = _decode(columns[-1])
                expected = _row(document)[:-1]
            except Exception:  # noqa: BLE001 - an unreadable record is what is reported
                found.append(f"unreadable row {bytes(columns[0]).hex()}")
            else:
                belongs = document.get("organizationId") == organization_id
                if (belongs or columns[1] == organization_id.binary) and (
                    tuple(columns[:-1]) != expected
                    or self._targets_of(connection, rowid)
                    != sorted(_target_rows(rowid, expected, document))
                ):
                    found.append(str(document.get("_id")))
            if len(found) >= limit:
                break
        return found

    def bucket_counts(
        self,
        branches: Sequence[tuple[Mapping[str, Any], str]],
        step_ms: int,
        cap: int,
        max_time_ms: int,
    ) -> tuple[list[tuple[int, int | None, int]], int | None] | None:
        """The histogram's counts in SQL: ``(bucket start, status class, records)`` of the
        newest ``cap`` records that match any of the branches (each ``(filter, hint)``,
        newest first on its index, as ``iter_records`` walks them), and the createdAt of
        the next record when there are more (None: whole). None when a branch is no shape
        the SQL plans answer (the caller walks the records then).

        Two statements: where the newest ``cap`` end (positions only, from each branch's
        index or the trigram index's matches), then their counts by bucket and class,
        each record read for its status column, never decoded.
        """
        connection = self.table.connection()
        budget: list[float | None] = [max_time_ms / 1000]
        positions: list[tuple[str, Sequence[SqlValue]]] = []
        statuses: list[tuple[str, Sequence[SqlValue]]] = []
        for filter_, hint in branches:
            for read, walks in ((_POSITION, positions), (_STATUS, statuses)):
                planned = self._walk_of(connection, budget, filter_, hint, read)
                if planned is None:
                    return None
                walks.append(planned)
        # where the newest cap records end: positions only, read from the indexes
        sql, parameters = _newest(positions, cap + 1, read=_POSITION)
        sql = f"SELECT created_at FROM ({sql}) LIMIT 1 OFFSET {int(cap)}"  # noqa: S608 # nosec B608
        more = _timed(connection, budget, lambda: connection.execute(sql, parameters).fetchone())
        # their counts: each record read for its status (the class as counters.status_class
        # gives it for an integer code)
        sql, parameters = _newest(statuses, cap, read=_STATUS)
        family = (
            "CASE WHEN typeof(status_code) = 'integer' "
            "AND status_code BETWEEN 100 AND 599 THEN status_code / 100 END"
        )
        sql = f"SELECT created_at - created_at % ?, {family}, count(*) FROM ({sql}) GROUP BY 1, 2"  # noqa: S608 # nosec B608
        rows = _timed(
            connection, budget, lambda: connection.execute(sql, [step_ms, *parameters]).fetchall()
        )
        return [tuple(row) for row in rows], (more[0] if more else None)

    @staticmethod
    def _walk_of(
        connection: sqlite3.Connection,
        budget: list[float | None],
        filter_: Mapping[str, Any],
        hint: str,
        read: str,
    ) -> tuple[str, Sequence[SqlValue]] | None:
        """A branch's walk newest first: its index, or for a path search whose text matches
        few records, the trigram index's matches (``PathSearch``)."""
        search = plan_search(filter_, NEWEST, hint)
        if search is None:
            return plan_sql(filter_, NEWEST, hint, read=read)
        sql, parameters = search.counted()
        (matches,) = _timed(
            connection, budget, lambda: connection.execute(sql, parameters).fetchone()
        )
        if matches <= PATH_MATCHES_SORTED:
            return search.matched(None, read)
        return search.walk(None, None, read)

    @staticmethod
    def _targets_of(connection: sqlite3.Connection, rowid: int) -> list[tuple[SqlValue, ...]]:
        """The ``audit_targets`` rows stored for the record at ``rowid``, sorted."""
        return sorted(
            connection.execute(
                "SELECT log_rowid, target_id, organization_id, created_at, id "
                "FROM audit_targets WHERE log_rowid = ?",
                (rowid,),
            )
        )

    # indexes: the table's indexes are its schema; these answer as MongoDB would

    def create_index(self, keys: Sequence[tuple[str, Any]], **options: Any) -> str:
        return options.get("name") or "_".join(f"{k}_{v}" for k, v in keys)

    def drop_index(self, name: str) -> None:
        return None

    def index_information(self) -> dict[str, dict[str, Any]]:
        info: dict[str, dict[str, Any]] = {"_id_": {"key": [("_id", 1)]}}
        for keys, options in repository.INDEXES:
            info[options["name"]] = {"key": list(keys)}
        return info

    def list_indexes(self) -> Iterator[dict[str, Any]]:
        return iter(
            [
                {"name": name, "key": dict(spec["key"])}
                for name, spec in self.index_information().items()
            ]
        )


class AuditLogCursor:
    """A lazy find: SQL over an index for the shapes the app sends, mongomock otherwise."""

    def __init__(
        self,
        collection: AuditLogCollection,
        filter_: Mapping[str, Any],
        projection: Mapping[str, Any] | None,
    ) -> None:
        self.collection = collection
        self.filter = filter_
        self.projection = projection
        self._sort: list[tuple[str, int]] = []
        self._limit = 0
        self._skip = 0
        self._hint: str | None = None
        self._max_time_ms: int | None = None
        self._batch = 500

    def sort(
        self, key_or_list: str | Iterable[tuple[str, int]], direction: int | None = None
    ) -> AuditLogCursor:
        if isinstance(key_or_list, str):
            self._sort = [(key_or_list, direction or 1)]
        else:
            self._sort = [(k, v) for k, v in key_or_list]
        return self

    def limit(self, count: int) -> AuditLogCursor:
        self._limit = count
        return self

    def skip(self, count: int) -> AuditLogCursor:
        self._skip = count
        return self

    def hint(self, index: str | Sequence[tuple[str, Any]] | None) -> AuditLogCursor:
        self._hint = index if isinstance(index, str) else None
        return self

    def max_time_ms(self, millis: int) -> AuditLogCursor:
        self._max_time_ms = millis
        return self

    def batch_size(self, size: int) -> AuditLogCursor:
        self._batch = max(size, 1)
        return self

    def close(self) -> None:
        return None

    def __iter__(self) -> Iterator[Document]:
        plan = None if self._skip else plan_sql(self.filter, self._sort, self._hint)
        if plan is None:
            yield from self._fallback()
            return
        budget = [self._max_time_ms / 1000 if self._max_time_ms else None]
        search = plan_search(self.filter, self._sort, self._hint)
        if search is not None:
            for row in self._search(search, budget):
                yield _project(_document(row), self.projection)
            return
        sql, parameters = plan
        for row in self._rows(sql, parameters, self._limit, budget):
            yield _project(_document(row), self.projection)

    def _rows(
        self, sql: str, parameters: Sequence[Any], limit: int, budget: list[float | None]
    ) -> Iterator[Any]:
        """A statement's rows, a batch at a time, within the time budget."""
        if limit:
            sql += f" LIMIT {int(limit)}"
        connection = self.collection.table.connection()
        rows = _timed(connection, budget, lambda: connection.execute(sql, parameters))
        while True:
            batch = _timed(connection, budget, lambda: rows.fetchmany(self._batch))
            if not batch:
                return
            yield from batch

    def _search(self, search: PathSearch, budget: list[float | None]) -> Iterator[Any]:
        """A path search: the bounded walk, then the trigram index or the rest of the walk
        (``PathSearch``); rows in the order asked, at most the limit."""
        connection = self.collection.table.connection()
        wanted = self._limit or None
        sql, parameters = search.walk(None, PATH_WALK_KEYS)
        walked = _timed(connection, budget, lambda: connection.execute(sql, parameters))
        hits: list[int] = []
        read, last = 0, None
        while wanted is None or len(hits) < wanted:  # a common text fills a page early
            keys = _timed(connection, budget, lambda: walked.fetchmany(self._batch))
            if not keys:
                break
            for rowid, created, key, matched in keys:
                read, last = read + 1, (created, key)
                if matched:
                    hits.append(rowid)
                    if wanted is not None and len(hits) == wanted:
                        break
        walked.close()
        for first in range(0, len(hits), 500):  # the matches' records, in the walk's order
            yield from _by_rowid(connection, budget, hits[first : first + 500])
        if read < PATH_WALK_KEYS or last is None or (wanted is not None and len(hits) >= wanted):
            return  # the range ended within the walk, or the page is full
        remaining = 0 if wanted is None else wanted - len(hits)
        after = last
        sql, parameters = search.counted()
        (matches,) = _timed(
            connection, budget, lambda: connection.execute(sql, parameters).fetchone()
        )
        if matches <= PATH_MATCHES_SORTED:
            sql, parameters = search.matched(after)
        else:
            sql, parameters = search.walk(after, None)
        yield from self._rows(sql, parameters, remaining, budget)

    def _fallback(self) -> Iterator[Document]:
        """Any other filter: mongomock's engine over the organization's rows (or all)."""
        FALLBACKS[0] += 1
        organization = self.filter.get("organizationId")
        sql, parameters = _SELECT, tuple[bytes, ...]()
        if isinstance(organization, ObjectId):
            sql, parameters = sql + " WHERE organization_id = ?", (organization.binary,)
        scratch: Any = mongomock.MongoClient(tz_aware=True).db.scratch
        rows = self.collection.table.connection().execute(sql, parameters)
        documents = [_document(row) for row in rows]
        if documents:
            scratch.insert_many(documents)
        cursor = scratch.find(self.filter, self.projection)
        if self._sort:
            cursor = cursor.sort(self._sort)
        if self._skip:
            cursor = cursor.skip(self._skip)
        if self._limit:
            cursor = cursor.limit(self._limit)
        yield from cursor


def _by_rowid(
    connection: sqlite3.Connection, budget: list[float | None], rowids: list[int]
) -> list[Any]:
    """The rows of these rowids (at most 500), in this order."""
    marks = ", ".join("?" * len(rowids))
    sql = f"SELECT rowid, {_READ} FROM audit_logs WHERE rowid IN ({marks})"  # noqa: S608 # nosec B608 - placeholders
    found = {
        row[0]: row[1:]
        for row in _timed(connection, budget, lambda: connection.execute(sql, rowids).fetchall())
    }
    return [found[rowid] for rowid in rowids if rowid in found]  # (a purge may have won)


def _newest(
    walks: Sequence[tuple[str, Sequence[SqlValue]]], limit: int, read: str
) -> tuple[str, list[SqlValue]]:
    """The first ``limit`` rows of these newest-first walks in one order, each record
    once (a record several branches match is one row of UNION)."""
    parameters = [value for _, values in walks for value in values]
    if len(walks) == 1:
        return f"{walks[0][0]} LIMIT {int(limit)}", parameters
    each = " UNION ".join(f"SELECT {read} FROM ({sql} LIMIT {int(limit)})" for sql, _ in walks)  # noqa: S608 # nosec B608
    return f"SELECT {read} FROM ({each}) ORDER BY {_NEWEST} LIMIT {int(limit)}", parameters  # noqa: S608 # nosec B608


def _project(document: Document, projection: Mapping[str, Any] | None) -> Document:
    if not projection:
        return document
    if all(value in (0, False) for value in projection.values()):
        for name in projection:
            document.pop(name, None)
        return document
    kept = {name for name, value in projection.items() if value not in (0, False)}
    return {
        k: v for k, v in document.items() if k in kept or (k == "_id" and projection.get("_id", 1))
    }


# Recognising the query shapes --------------------------------------------------------------

# each sort the app asks for, as the columns (and directions) of the SQL ORDER BY
_ORDERS: dict[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]] = {
    (("createdAt", -1), ("_id", -1)): (("created_at", "DESC"), ("id", "DESC")),
    (("createdAt", 1), ("_id", 1)): (("created_at", "ASC"), ("id", "ASC")),
    (("storedAt", 1), ("_id", 1)): (("stored_at", "ASC"), ("id", "ASC")),
    (("_id", 1),): (("id", "ASC"),),  # a copy of the whole table (migrate-store)
    # the distinct organizations of a request id (``requestid_org``, one seek each)
    (("organizationId", 1),): (("organization_id", "ASC"),),
    (): (),
}
_RANGE_OPERATORS = {"$gte": ">=", "$gt": ">", "$lte": "<=", "$lt": "<"}
# how a clause names a column: bare on audit_logs alone; in a walk of audit_targets, the
# columns it copies are read from it (its index holds them), the others from the record
Columns = Callable[[str], str]
_TARGET_COPIES = frozenset({"organization_id", "created_at", "id"})


def _bare(column: str) -> str:
    return column


def _joined(column: str) -> str:
    return ("t." if column in _TARGET_COPIES else "l.") + column


_READ_JOINED = "l.doc, l.id, l.organization_id, l.created_at, l.stored_at"
_FROM_JOINED = "audit_targets AS t INDEXED BY org_target_newest CROSS JOIN audit_logs AS l"
# what the histogram's counts read of a row, on audit_logs and on a walk of audit_targets:
# its position alone (the index holds it), or its position and status
_POSITION = "created_at, id"
_STATUS = "created_at, id, status_code"
_READS_JOINED = {
    _POSITION: "t.created_at AS created_at, t.id AS id",
    _STATUS: "t.created_at AS created_at, t.id AS id, l.status_code AS status_code",
}


class _NotAShape(Exception):
    """The filter is not one the SQL plans answer: mongomock will."""


def plan_sql(
    filter_: Mapping[str, Any],
    sort: Sequence[tuple[str, int]],
    hint: str | None,
    *,
    read: str = _READ,
) -> tuple[str, tuple[SqlValue, ...]] | None:
    """The SQL for a filter the app sends, walking the index ``hint`` names; else None.
    ``read``: the columns each row gives (``_READ``: what ``_document`` reads)."""
    order = _ORDERS.get(tuple(sort))
    if order is None or not isinstance(filter_, dict):
        return None
    try:
        if hint == TARGET_INDEX:
            return _plan_targets(filter_, order, _READS_JOINED.get(read, _READ_JOINED))
        source, where, parameters = _plan_parts(filter_, hint)
    except _NotAShape:
        return None
    sql = f"SELECT {read} FROM {source}"  # noqa: S608 # nosec B608 - fixed names
    if where:
        sql += " WHERE " + " AND ".join(where)
    return (sql + " " + _order_by(order, _bare)).strip(), tuple(parameters)


def _plan_parts(
    filter_: Mapping[str, Any], hint: str | None
) -> tuple[str, list[str], list[SqlValue]]:
    """The table and the index it is walked by, the WHERE clauses and their parameters."""
    where, parameters, index = _where(filter_, _bare)
    if hint == PATH_INDEX:  # the paths' range on MongoDB: here org_newest and the trigrams
        hint = "org_newest"
    if hint is not None:
        if hint not in SQL_INDEXES:
            raise OperationFailure(f"hint provided does not correspond to an index: {hint}", 2)
        # the index asked for; a class of codes walks its own index in place of the codes'
        index = index if hint == "org_status_newest" and index else hint
    # every part is a fixed string of this module (index names from SCHEMA, columns, "?"
    # placeholders); values only ever travel as parameters
    indexed = f" INDEXED BY {index}" if index and hint else ""
    return "audit_logs" + indexed, where, parameters


# a path search first walks this many keys of its index (newest first from its position),
# testing the path on each key; what it has not found there, it takes from the trigram
# index when the search text's trigrams match at most PATH_MATCHES_SORTED records
PATH_WALK_KEYS = 4_000
PATH_MATCHES_SORTED = 10_000
_TIME_ORDERS = (("created_at", "DESC"), ("id", "DESC")), (("created_at", "ASC"), ("id", "ASC"))


class PathSearch:
    """A branch that searches the path, with a text of at least three characters.

    A walk of the branch's index tests the path on each key and stops after ``limit + 1``
    matches: cheap when matches are many, a read of every key of the range when they are
    few. So the walk is bounded (``PATH_WALK_KEYS``), and past it the trigram index
    answers: the records whose folded path holds every trigram of the text, in the
    order asked (tested again exactly, and sorted: at most ``PATH_MATCHES_SORTED`` of
    them). When the text's trigrams match more records than that, the search text is
    common, and the walk goes on from where it stopped, as before (within the query's
    time budget).
    """

    def __init__(
        self,
        source: str,
        where: list[str],
        parameters: list[SqlValue],
        clauses: list[PathClause],
        order: tuple[tuple[str, str], ...],
    ) -> None:
        self.source, self.where, self.parameters, self.order = source, where, parameters, order
        tests = [_path_condition(clause, _bare) for clause in clauses]
        self.test = " AND ".join(condition for condition, _ in tests)
        self.test_parameters = [value for _, values in tests for value in values]
        self.match = " AND ".join(
            '"' + fold(text).replace('"', '""') + '"' for _, text in clauses if len(text) >= TRIGRAM
        )

    def walk(
        self, after: tuple[int | None, bytes] | None, keys: int | None, read: str = _READ
    ) -> tuple[str, list[SqlValue]]:
        """The index walk from ``after`` (exclusive): every key with whether its path
        matches (``keys``: at most that many), or only the matching records (None)."""
        where, parameters = list(self.where), list(self.parameters)
        if after is not None:
            past, values = _past(self.order, after)
            where.append(past)
            parameters.extend(values)
        if keys is None:
            where.append(self.test)
            parameters.extend(self.test_parameters)
            first = []
        else:
            read, first = f"rowid, created_at, id, coalesce({self.test}, 0)", self.test_parameters
        sql = f"SELECT {read} FROM {self.source}"  # noqa: S608 # nosec B608 - fixed names
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " " + _order_by(self.order, _bare)
        if keys is not None:
            sql += f" LIMIT {int(keys)}"
        return sql, [*first, *parameters]

    def counted(self) -> tuple[str, list[SqlValue]]:
        """How many records the text's trigrams match, up to one more than are sorted."""
        return (
            "SELECT count(*) FROM (SELECT rowid FROM audit_paths WHERE audit_paths MATCH ? "  # noqa: S608 # nosec B608 - a number
            f"LIMIT {PATH_MATCHES_SORTED + 1})",
            [self.match],
        )

    def matched(
        self, after: tuple[int | None, bytes] | None, read: str = _READ
    ) -> tuple[str, list[SqlValue]]:
        """The records the trigram index finds, tested exactly, in order, past ``after``."""
        where = ["audit_logs.rowid = found.hit", *self.where, self.test]
        parameters: list[SqlValue] = [self.match, *self.parameters, *self.test_parameters]
        if after is not None:
            past, values = _past(self.order, after)
            where.append(past)
            parameters.extend(values)
        # CROSS JOIN: the trigram matches drive, each record found by its rowid
        sql = (
            f"SELECT {read} FROM (SELECT rowid AS hit FROM audit_paths "  # noqa: S608 # nosec B608
            "WHERE audit_paths MATCH ?) AS found CROSS JOIN audit_logs "
            f"WHERE {' AND '.join(where)} {_order_by(self.order, _bare)}"
        )
        return sql, parameters


def plan_search(
    filter_: Mapping[str, Any], sort: Sequence[tuple[str, int]], hint: str | None
) -> PathSearch | None:
    """The path search of a filter the app sends, if it has one the trigrams can serve."""
    order = _ORDERS.get(tuple(sort))
    clauses_in = filter_.get("$and") if isinstance(filter_, dict) else None
    if order not in _TIME_ORDERS or hint == TARGET_INDEX or not isinstance(clauses_in, list):
        return None
    clauses: list[PathClause] = []
    others = []
    try:
        for clause in clauses_in:
            if isinstance(clause, dict) and list(clause) == ["path"]:
                clauses.append(_path_clause(clause["path"]))
            else:
                others.append(clause)
        if not any(len(text) >= TRIGRAM for _, text in clauses):
            return None
        if any("\x00" in text for _, text in clauses):  # ends an FTS5 query (the API
            return None  # refuses control characters in search text: never sent)
        rest = {name: value for name, value in filter_.items() if name != "$and"}
        if others:
            rest["$and"] = others
        source, where, parameters = _plan_parts(rest, hint)
    except _NotAShape:
        return None
    return PathSearch(source, where, parameters, clauses, order)


def _past(
    order: Sequence[tuple[str, str]], after: tuple[int | None, bytes]
) -> tuple[str, list[SqlValue]]:
    """Rows strictly past a position ``(created_at, id)`` in this order (SQLite sorts
    NULL first: a record whose createdAt is no date)."""
    created, key = after
    newest_first = order[0][1] == "DESC"
    if created is None:
        if newest_first:
            return "(created_at IS NULL AND id < ?)", [key]
        return "(created_at IS NOT NULL OR id > ?)", [key]
    if newest_first:
        return (
            "(created_at < ? OR created_at IS NULL OR (created_at = ? AND id < ?))",
            [created, created, key],
        )
    return "(created_at > ? OR (created_at = ? AND id > ?))", [created, created, key]


def _order_by(order: Sequence[tuple[str, str]], columns: Columns) -> str:
    if not order:
        return ""
    return "ORDER BY " + ", ".join(f"{columns(name)} {way}" for name, way in order)


def _plan_targets(
    filter_: Mapping[str, Any], order: Sequence[tuple[str, str]], read: str
) -> tuple[str, tuple[SqlValue, ...]]:
    """A branch led by ``targets.id``: a walk of ``org_target_newest`` (the target's rows
    of the organization, newest first), each joined to its record by rowid, where the
    branch's other filters are tested; so the sort and the LIMIT are the index's."""
    target = filter_.get(TARGET_FIELD)
    if not isinstance(target, ObjectId):
        raise _NotAShape(TARGET_FIELD)
    rest = {name: value for name, value in filter_.items() if name != TARGET_FIELD}
    where, parameters, _ = _where(rest, _joined)
    where = ["t.target_id = ?", "l.rowid = t.log_rowid", *where]
    parameters = [target.binary, *parameters]
    organization = filter_.get("organizationId")
    if isinstance(organization, ObjectId):  # the record's own column too: a target row
        where.append("l.organization_id = ?")  # edited to another organization's record
        parameters.append(organization.binary)  # cannot show it here
    sql = (
        f"SELECT {read} FROM {_FROM_JOINED} WHERE {' AND '.join(where)} {_order_by(order, _joined)}"  # noqa: S608 # nosec B608 - fixed names
    )
    return sql.strip(), tuple(parameters)


def _where(
    filter_: Mapping[str, Any], columns: Columns
) -> tuple[list[str], list[SqlValue], str | None]:
    where: list[str] = []
    parameters: list[SqlValue] = []
    index: str | None = None
    for name, value in filter_.items():
        if name == "organizationId" and isinstance(value, dict):  # past an organization
            _require(list(value) == ["$gt"] and isinstance(value["$gt"], ObjectId))
            where.append(f"{columns('organization_id')} > ?")  # (NULL is never greater)
            parameters.append(value["$gt"].binary)
        elif name == "organizationId":
            _require(isinstance(value, ObjectId))
            where.append(f"{columns('organization_id')} = ?")
            parameters.append(value.binary)
        elif name == "_id" and isinstance(value, dict):  # a batch by id (migrate-store)
            _require(list(value) == ["$in"] and isinstance(value["$in"], list))
            keys = value["$in"]
            _require(0 < len(keys) <= 1000 and all(isinstance(k, ObjectId) for k in keys))
            where.append(f"{columns('id')} IN (" + ", ".join("?" * len(keys)) + ")")
            parameters.extend(_key(key) for key in keys)
        elif name == "_id":
            _require(isinstance(value, ObjectId))
            where.append(f"{columns('id')} = ?")
            parameters.append(_key(value))
        elif name in _EQUALITY_COLUMNS:
            kind_ok = isinstance(value, ObjectId) if name in _ID_FIELDS else isinstance(value, str)
            _require(kind_ok)
            where.append(f"{columns(_EQUALITY_COLUMNS[name])} = ?")
            parameters.append(value.binary if isinstance(value, ObjectId) else value)
        elif name == TARGET_FIELD:  # a target the walk of another index tests on its way
            _require(columns is _bare)
            _target_probe(value, where, parameters, columns)
        elif name == "statusCode":
            index = _status(value, where, parameters, columns) or index
        elif name in ("createdAt", "storedAt"):
            _range(name, value, where, parameters, columns)
        elif name == "$and":
            _require(isinstance(value, list))
            for clause in value:
                _and_clause(clause, where, parameters, columns)
        else:
            raise _NotAShape(name)
    return where, parameters, index


def _require(condition: bool) -> None:
    if not condition:
        raise _NotAShape


def _status(
    value: Any, where: list[str], parameters: list[SqlValue], columns: Columns
) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        where.append(f"{columns('status_code')} = ?")
        parameters.append(value)
        return None
    _require(isinstance(value, dict) and list(value) == ["$in"])
    codes = value["$in"]
    _require(
        isinstance(codes, list)
        and len(codes) == 100
        and all(isinstance(c, int) and not isinstance(c, bool) for c in codes)
        and codes[0] % 100 == 0
        and codes == list(range(codes[0], codes[0] + 100))
    )
    where.append(f"{columns('status_class')} = ?")  # exactly the integral codes of one class
    parameters.append(codes[0] // 100)
    return "org_statusclass_newest"


def _range(
    name: str, value: Any, where: list[str], parameters: list[SqlValue], columns: Columns
) -> None:
    column = columns("created_at" if name == "createdAt" else "stored_at")
    _require(isinstance(value, dict) and bool(value))
    if list(value) == ["$not"]:
        _require(value["$not"] == {"$type": "date"} and name == "storedAt")
        where.append(f"{column} IS NULL")
        return
    for operator, bound in value.items():
        _require(operator in _RANGE_OPERATORS and isinstance(bound, datetime))
        where.append(f"{column} {_RANGE_OPERATORS[operator]} ?")
        parameters.append(_datetime_to_millis(bound))


def _target_probe(
    value: Any, where: list[str], parameters: list[SqlValue], columns: Columns
) -> None:
    """Whether the record names this target: a primary-key probe of ``audit_targets``
    (also a second target tested on a walk of the first: ``target:<a>`` and a pasted id)."""
    _require(isinstance(value, ObjectId))
    where.append(_PROBE_BARE if columns is _bare else _PROBE_JOINED)
    parameters.append(value.binary)


_PROBE = "EXISTS (SELECT 1 FROM audit_targets AS probe WHERE probe.log_rowid = {} AND "
_PROBE_BARE = _PROBE.format("audit_logs.rowid") + "probe.target_id = ?)"
_PROBE_JOINED = _PROBE.format("l.rowid") + "probe.target_id = ?)"


def _and_clause(
    clause: Any, where: list[str], parameters: list[SqlValue], columns: Columns
) -> None:
    _require(isinstance(clause, dict) and len(clause) == 1)
    [(name, value)] = clause.items()
    if _excluding(name, value, where, parameters, columns):
        return
    if name == TARGET_FIELD:
        _target_probe(value, where, parameters, columns)
        return
    if name == "path":
        condition, values = _path_condition(_path_clause(value), columns)
        where.append(condition)
        parameters.extend(values)
        return
    _require(name == "$or" and isinstance(value, list) and len(value) == 2)
    first, second = value
    _require(list(first) in (["createdAt"], ["storedAt"]) and list(second) == ["_id"])
    [time_field] = list(first)
    column = columns("created_at" if time_field == "createdAt" else "stored_at")
    [(operator, at)] = first[time_field].items()
    [(id_operator, record_id)] = second["_id"].items()
    _require(
        operator == id_operator
        and operator in ("$lt", "$gt")
        and isinstance(at, datetime)
        and isinstance(record_id, ObjectId)
    )
    # with the time bounded at `at` on the same side, (time, _id) past the position
    sign = _RANGE_OPERATORS[operator]
    where.append(f"({column} {sign} ? OR {columns('id')} {sign} ?)")
    parameters.extend([_datetime_to_millis(at), _key(record_id)])


def _excluding(
    name: str, value: Any, where: list[str], parameters: list[SqlValue], columns: Columns
) -> bool:
    """An exclusion (``query.exclusions``, the hiding of a viewer's reads), tested on each
    record the walk reaches, true as MongoDB's ``$ne`` / ``$nin`` / ``$nor`` are for a
    record without the field (its column NULL); False when the clause is none."""
    operator = next(iter(value)) if isinstance(value, dict) and len(value) == 1 else None
    if name in _EQUALITY_COLUMNS and operator in ("$ne", "$nin"):
        values = [value["$ne"]] if operator == "$ne" else value["$nin"]
        _require(isinstance(values, list) and 0 < len(values) <= 200)
        kind = ObjectId if name in _ID_FIELDS else str
        _require(all(isinstance(one, kind) for one in values))
        column = columns(_EQUALITY_COLUMNS[name])
        marks = ", ".join("?" * len(values))
        where.append(f"({column} IS NULL OR {column} NOT IN ({marks}))")
        parameters.extend(one.binary if isinstance(one, ObjectId) else one for one in values)
        return True
    if name == "statusCode" and operator in ("$ne", "$nin"):
        # the complement of what ``_status`` walks: a code, or the integral codes of a class
        test: list[str] = []
        _status(value["$ne"] if operator == "$ne" else {"$in": value["$nin"]}, test, [], columns)
        column = "status_code" if operator == "$ne" else "status_class"
        where.append(f"{columns(column)} IS NOT ?")
        parameters.append(value["$ne"] if operator == "$ne" else value["$nin"][0] // 100)
        return True
    if name == TARGET_FIELD and operator == "$nin":
        targets = value["$nin"]
        _require(isinstance(targets, list) and 0 < len(targets) <= 200)
        _require(all(isinstance(one, ObjectId) for one in targets))
        marks = ", ".join("?" * len(targets))
        owner = "audit_logs.rowid" if columns is _bare else "l.rowid"
        where.append(
            "NOT EXISTS (SELECT 1 FROM audit_targets AS probe "  # noqa: S608 # nosec B608
            f"WHERE probe.log_rowid = {owner} AND probe.target_id IN ({marks}))"
        )
        parameters.extend(one.binary for one in targets)
        return True
    if name != "$nor":
        return False
    _require(isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict))
    [left_out] = value
    if list(left_out) == ["path"]:  # -path:
        condition, values = _path_condition(_path_clause(left_out["path"]), columns)
        where.append(f"NOT coalesce({condition}, 0)")
        parameters.extend(values)
        return True
    # a viewer's own page views of the log: {accountId: <id>, authType, action: {$in: [...]}},
    # and the session's credentialId when given (query.hidden_views)
    credential = left_out.get("credentialId")
    keys = ["accountId", "action", "authType"] + (["credentialId"] if credential else [])
    _require(sorted(left_out) == keys)
    _require(credential is None or isinstance(credential, str))
    account, auth, actions = left_out["accountId"], left_out["authType"], left_out["action"]
    _require(isinstance(account, ObjectId) and isinstance(auth, str))
    _require(isinstance(actions, dict) and list(actions) == ["$in"])
    names = actions["$in"]
    _require(isinstance(names, list) and 0 < len(names) <= 20)
    _require(all(isinstance(name, str) for name in names))
    marks = ", ".join("?" * len(names))
    same_session = f" AND {columns('credential_id')} = ?" if credential else ""
    where.append(
        f"NOT coalesce({columns('account_id')} = ? AND {columns('auth_type')} = ? "
        f"AND {columns('action')} IN ({marks}){same_session}, 0)"
    )
    parameters.extend([account.binary, auth, *names, *([credential] if credential else [])])
    return True


PathClause = tuple[bool, str]  # (anchored, text): a part anywhere, or the path's start


def _path_clause(value: Any) -> PathClause:
    """A path search the app sends: a literal case-insensitive regex (a part anywhere in
    the path), or an anchored literal case-sensitive one (``path:/...``, the start)."""
    if isinstance(value, dict) and list(value) == ["$regex"] and isinstance(value["$regex"], str):
        pattern = value["$regex"]
        _require(pattern.startswith("^"))
        text = re.sub(r"\\(.)", r"\1", pattern[1:], flags=re.DOTALL)
        _require(re.escape(text) == pattern[1:])
        return True, text
    return False, _literal(value)


def _path_condition(clause: PathClause, columns: Columns) -> tuple[str, list[SqlValue]]:
    """The SQL test of a path clause: on the folded path (in ``org_newest``'s keys), and for
    the anchored form also on the exact path, read from the record only when the folded
    start matches."""
    anchored, text = clause
    column = columns("path_fold")
    if not anchored:
        return f"instr({column}, ?) > 0", [fold(text)]
    return (  # CASE, not AND: SQLite evaluates both sides of an AND that is a value
        f"(CASE WHEN substr({column}, 1, ?) = ? "
        f"THEN substr(audit_path({columns('doc')}), 1, ?) = ? ELSE 0 END)",
        [len(text), fold(text), len(text), text],
    )


def _literal(value: Any) -> str:
    """The text of a literal case-insensitive regex as ``literal_regex`` builds it."""
    _require(isinstance(value, dict) and value.get("$options") == "i" and len(value) == 2)
    pattern = value.get("$regex")
    _require(isinstance(pattern, str))
    text = re.sub(r"\\(.)", r"\1", pattern, flags=re.DOTALL)
    _require(re.escape(text) == pattern)
    return text


class EmbeddedDatabase:
    """litemongo's database, with ``audit_logs`` answered by the SQLite table.

    litemongo ships no types: its database, and what it answers, are ``Any`` here.
    """

    def __init__(self, database: Any, table: AuditTable) -> None:
        self._database = database
        self._audit = AuditLogCollection(table)

    def __getitem__(self, name: str) -> Any:
        return self._audit if name == COLLECTION else self._database[name]

    def __getattr__(self, name: str) -> Any:
        if name == COLLECTION:
            return self._audit
        return getattr(self._database, name)

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self[name]

    def list_collection_names(self, *args: Any, **kwargs: Any) -> list[str]:
        names = self._database.list_collection_names(*args, **kwargs)
        return sorted({*names, COLLECTION})


def move_legacy_records(database: Any, table: AuditTable) -> int:
    """Move records an earlier version kept in litemongo's ``audit_logs`` into the table.

    Runs once per store (the legacy collection is dropped after the copy; an interrupted
    move resumes, duplicates skipped), under the caller's cross-process lock.
    """
    if COLLECTION not in database.list_collection_names():
        return 0
    legacy = database[COLLECTION]
    moved = 0
    batch: list[Document] = []
    for document in legacy.find({}):
        batch.append(document)
        if len(batch) == 1000:
            moved += _insert_missing(table, batch)
            batch = []
    moved += _insert_missing(table, batch)
    legacy.drop()
    return moved


def _insert_missing(table: AuditTable, documents: Iterable[Mapping[str, Any]]) -> int:
    with table.write() as connection:
        return sum(_store(connection, document, missing=True) for document in documents)
