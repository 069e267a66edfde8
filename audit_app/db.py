"""The database handles: one store per URI, shared by every request of the app.

Three kinds of store sit behind the same pymongo API:

- ``mongodb://`` / ``mongodb+srv://``: a real MongoDB through pymongo. One ``MongoClient``
  per process, created lazily with ``connect=False`` so gunicorn can fork safely.
- ``mongomock://``: mongomock in memory, for tests. Tests may also inject a client.
- unset: the embedded store, litemongo (SQLite files under ``instance/store``) with
  mongomock's query engine. It persists across restarts and is shared by every process
  that opens the same folder (gunicorn workers, the CLI). Its SQLite connections may only
  be used by the thread that opened them, so it keeps one client per process and thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

import mongomock
import pymongo
from bson import ObjectId
from flask import Flask, current_app
from pymongo.collection import Collection
from pymongo.cursor import Cursor
from pymongo.database import Database
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

if TYPE_CHECKING:
    from .audit.store.embedded import EmbeddedDatabase

log = logging.getLogger(__name__)

DEFAULT_DB_NAME = "audit_app"
# a BSON document as pymongo reads and writes it: a record, a filter, an update
Document = dict[str, Any]
# an index as declared beside its data: its keys and create_index's options (its name ...)
IndexSpec = tuple[list[tuple[str, Any]], dict[str, Any]]
EXTENSION_KEY = "audit_app.stores"


class Store:
    """A database reachable through one URI, with the client created when first needed."""

    def __init__(
        self,
        uri: str | None,
        *,
        db_name: str | None,
        embedded_dir: str,
        client: Any = None,
        write_timeout_ms: int = 2000,
    ) -> None:
        self.uri = uri
        self.embedded_dir = embedded_dir
        self.write_timeout_ms = write_timeout_ms
        self._injected = client
        self._lock = threading.Lock()
        self._shared: Any = None
        self._shared_pid: int | None = None
        self._local = threading.local()
        self._audit_table: Any = None
        if client is not None:
            self.kind = "injected"
        elif uri is None:
            self.kind = "embedded"
        elif uri.startswith(("mongodb://", "mongodb+srv://")):
            self.kind = "mongodb"
        elif uri.startswith("mongomock://"):
            self.kind = "mongomock"
        else:
            raise ValueError(
                "MONGO_URI must start with mongodb://, mongodb+srv:// or mongomock://, "
                "or be unset for the embedded store"
            )
        path_name = urlparse(uri).path.lstrip("/") if uri else ""
        self.db_name = db_name or path_name or DEFAULT_DB_NAME

    def describe(self) -> str:
        """Say which store this is, for the start-up log line; credentials left out."""
        if self.kind == "embedded":
            return f"embedded store at {self.embedded_dir} (database {self.db_name})"
        if self.kind == "mongodb":
            return f"MongoDB at {self.hosts()} (database {self.db_name})"
        return f"{self.kind} store (database {self.db_name})"

    def hosts(self) -> str:
        """``scheme://host:port[,host:port...]`` of a MongoDB URI: never its user or password
        (MongoDB's default port said when the URI leaves it out)."""
        parsed = urlparse(self.uri or "")
        netloc = parsed.netloc.rpartition("@")[2] or "?"
        if parsed.scheme == "mongodb":
            netloc = ",".join(
                host if ":" in host.rsplit("]", 1)[-1] else f"{host}:27017"
                for host in netloc.split(",")
            )
        return f"{parsed.scheme}://{netloc}"

    def identity(self) -> str:
        """A short, stable name of what this store is (never its credentials): the journal
        of one store is kept apart from another's, whatever directory they are given."""
        if self.kind == "embedded":
            where = os.path.realpath(self.embedded_dir)
        elif self.kind == "mongodb":
            where = self.hosts()
        else:
            where = f"{self.kind}:{id(self._injected) if self._injected is not None else self.uri}"
        digest = hashlib.sha256(f"{where}|{self.db_name}".encode()).hexdigest()[:16]
        return f"{self.kind}-{digest}"

    @property
    def client(self) -> Any:
        """Return this process's (and for the embedded store, this thread's) client."""
        if self._injected is not None:
            return self._injected
        if self.kind == "embedded":
            return self._embedded_client()
        pid = os.getpid()
        if self._shared is None or self._shared_pid != pid:
            with self._lock:
                if self._shared is None or self._shared_pid != pid:
                    self._shared = self._new_client()
                    self._shared_pid = pid
        return self._shared

    def _new_client(self) -> Any:
        if self.kind == "mongomock":
            return mongomock.MongoClient(tz_aware=True)
        return pymongo.MongoClient(
            self.uri,
            connect=False,
            tz_aware=True,
            appname="organization-audit-log",
            serverSelectionTimeoutMS=max(self.write_timeout_ms, 1000),
        )

    def _embedded_client(self) -> Any:
        # the embedded engine (litemongo, with the lists' sorted indexes): not loaded by a
        # MongoDB deployment; here, since the declarations build on this module
        from . import sorted_store
        from .indexes import sorted_indexes

        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            self._local.client = sorted_store.connect(self.embedded_dir, sorted_indexes())
            self._local.pid = pid
        return self._local.client

    @property
    def db(self) -> Database[Document]:
        """The store's database. Only MongoDB's is a pymongo ``Database``: mongomock's and
        the embedded store's offer the part of its API the app uses, and go by its type."""
        if self.kind == "embedded":
            return cast("Database[Document]", self._embedded_database())
        return cast("Database[Document]", self.client[self.db_name])

    def _embedded_database(self) -> EmbeddedDatabase:
        from .audit.store.embedded import AuditTable, EmbeddedDatabase, move_legacy_records

        if self._audit_table is None:
            with self._lock:
                if self._audit_table is None:
                    path = os.path.join(self.embedded_dir, f"{self.db_name}.audit_logs.sqlite3")
                    table = AuditTable(path)
                    with self.exclusive("legacy-audit-records"):
                        moved = move_legacy_records(self.client[self.db_name], table)
                    if moved:
                        log.info("Moved %d audit records into %s", moved, path)
                    self._audit_table = table
        from . import sorted_store
        from .indexes import sorted_indexes

        platform = sorted_store.SortedDatabase(self.client[self.db_name], sorted_indexes())
        return EmbeddedDatabase(platform, self._audit_table)

    def ping(self) -> None:
        """Raise if the store cannot be reached."""
        self.client.admin.command("ping")

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Run a read-check-write as one step on stores whose updates are not atomic.

        On MongoDB a conditional update of one document is atomic, and callers rely on it,
        so nothing is held. mongomock and the embedded store (mongomock's engine on SQLite)
        match and write in two steps: there, the section holds a lock per name, across the
        threads of the process and, for the embedded store, across every process that opens
        the same folder (an ``flock`` on a file beside the store).
        """
        if self.kind == "mongodb":
            yield
            return
        with _THREAD_LOCKS_GUARD:
            lock = _THREAD_LOCKS.setdefault((self.embedded_dir, self.kind, name), threading.Lock())
        with lock:
            if self.kind != "embedded":
                yield
                return
            directory = os.path.join(self.embedded_dir, "locks")
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, "".join(c if c.isalnum() else "_" for c in name))
            with open(path + ".lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the clients this process opened (used by short-lived CLI tasks and tests)."""
        if self._shared is not None and self._shared_pid == os.getpid():
            self._shared.close()
            self._shared = None
        if getattr(self._local, "pid", None) == os.getpid():
            self._local.client.close()
            self._local.pid = None
        if self._audit_table is not None:
            self._audit_table.close()


_THREAD_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def exclusive(name: str, app: Flask | None = None) -> AbstractContextManager[None]:
    """``Store.exclusive`` on the platform store: see there."""
    return stores(app)["main"].exclusive(name)


def init_stores(app: Flask) -> None:
    """Create the main and audit stores for the app; the audit one may be the same."""
    cfg = app.config
    main = Store(
        cfg["MONGO_URI"],
        db_name=cfg.get("MONGO_DB_NAME"),
        embedded_dir=cfg["EMBEDDED_STORE_DIR"],
        client=cfg.get("MONGO_CLIENT"),
        write_timeout_ms=cfg["AUDIT_WRITE_TIMEOUT_MS"],
    )
    audit_uri = cfg.get("AUDIT_MONGO_URI")
    audit_client = cfg.get("AUDIT_MONGO_CLIENT")
    if audit_client is None and (audit_uri is None or audit_uri == cfg["MONGO_URI"]):
        audit = main
    else:
        audit = Store(
            audit_uri,
            db_name=cfg.get("MONGO_DB_NAME"),
            embedded_dir=cfg["EMBEDDED_STORE_DIR"],
            client=audit_client,
            write_timeout_ms=cfg["AUDIT_WRITE_TIMEOUT_MS"],
        )
    app.extensions[EXTENSION_KEY] = {"main": main, "audit": audit}
    app.logger.info("Store: %s", main.describe())
    if audit is not main:
        app.logger.info("Audit store: %s", audit.describe())


def stores(app: Flask | None = None) -> dict[str, Store]:
    return cast("dict[str, Store]", (app or current_app).extensions[EXTENSION_KEY])


def get_db(app: Flask | None = None) -> Database[Document]:
    """Return the platform database (organizations, accounts, workspaces, ...)."""
    return stores(app)["main"].db


def get_audit_db(app: Flask | None = None) -> Database[Document]:
    """Return the database that holds ``audit_logs`` (``AUDIT_MONGO_URI``)."""
    return stores(app)["audit"].db


class TenantCollection:
    """A collection seen through one organization.

    Every read, update and delete carries ``organizationId``; every insert is stamped with
    it. Repositories build one from the organization of the authenticated principal, so no
    caller can forget the tenant filter or pass another organization's id through it.
    """

    def __init__(self, collection: Collection[Document], organization_id: ObjectId) -> None:
        if not isinstance(organization_id, ObjectId):
            raise TypeError("organization_id must be an ObjectId")
        self.collection = collection
        self.organization_id = organization_id

    def _scope(self, filter_: Mapping[str, Any] | None) -> Document:
        scoped = dict(filter_ or {})
        scoped["organizationId"] = self.organization_id
        return scoped

    def find_one(
        self, filter_: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> Document | None:
        return self.collection.find_one(self._scope(filter_), *args, **kwargs)

    def find(
        self, filter_: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> Cursor[Document]:
        return self.collection.find(self._scope(filter_), *args, **kwargs)

    def count_documents(self, filter_: Mapping[str, Any] | None = None, **kwargs: Any) -> int:
        return self.collection.count_documents(self._scope(filter_), **kwargs)

    def insert_one(self, document: Document) -> InsertOneResult:
        document["organizationId"] = self.organization_id
        return self.collection.insert_one(document)

    def update_one(
        self, filter_: Mapping[str, Any], update: Mapping[str, Any], **kwargs: Any
    ) -> UpdateResult:
        return self.collection.update_one(self._scope(filter_), update, **kwargs)

    def update_many(
        self, filter_: Mapping[str, Any], update: Mapping[str, Any], **kwargs: Any
    ) -> UpdateResult:
        return self.collection.update_many(self._scope(filter_), update, **kwargs)

    def find_one_and_update(
        self, filter_: Mapping[str, Any], update: Mapping[str, Any], **kwargs: Any
    ) -> Document | None:
        return self.collection.find_one_and_update(self._scope(filter_), update, **kwargs)

    def find_one_and_delete(self, filter_: Mapping[str, Any], **kwargs: Any) -> Document | None:
        return self.collection.find_one_and_delete(self._scope(filter_), **kwargs)

    def delete_one(self, filter_: Mapping[str, Any]) -> DeleteResult:
        return self.collection.delete_one(self._scope(filter_))

    def delete_many(self, filter_: Mapping[str, Any]) -> DeleteResult:
        return self.collection.delete_many(self._scope(filter_))
