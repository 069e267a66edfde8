"""Every index of the app: declared beside its data, built here, and checked at start.

On MongoDB indexes are built by ``flask --app wsgi ensure-indexes``, a deploy step (docker
compose runs it as a one-shot service before the app): a build over a large collection
takes longer than a gunicorn worker may spend booting. The app only checks, at start and
from ``/readyz``, that every index it relies on exists with the declared key and options;
the unique ones are what keep a digest chain from forking, and every query names its
index in a ``hint``. On the embedded store and mongomock the app builds them at start,
where that is cheap.

A conflict (an index of the same name with another key or other options) is reported,
never swallowed: ``ensure-indexes`` lists it and fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from flask import Flask
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from .api_keys.repository import API_KEYS
from .api_keys.repository import INDEXES as API_KEY_INDEXES
from .audit.integrity import digests as integrity
from .audit.integrity import merkle
from .audit.integrity.retention import legacy_from_ttl
from .audit.store import counters
from .audit.store import repository as audit_repository
from .auth.sessions import INDEXES as SESSION_INDEXES
from .background import EXTENSION_KEY as BACKGROUND_KEY
from .db import Document, IndexSpec, Store, stores
from .organizations.repository import INDEXES as ORGANIZATION_INDEXES
from .organizations.repository import (
    INVITATIONS,
    MEMBERS,
    ROLES,
    fill_membership_emails,
    grant_added_permissions,
)
from .pagination import Listing
from .sorted_store import SortedIndex
from .staff.repository import INDEXES as STAFF_INDEXES
from .staff.repository import LISTINGS as STAFF_LISTINGS
from .streams.repository import INDEXES as STREAM_INDEXES
from .streams.repository import STREAMS
from .workspaces.repository import INDEXES as WORKSPACE_INDEXES
from .workspaces.repository import PATHWAYS, WORKSPACES

log = logging.getLogger(__name__)

PLATFORM_INDEXES: dict[str, list[IndexSpec]] = {
    **ORGANIZATION_INDEXES,
    **WORKSPACE_INDEXES,
    **API_KEY_INDEXES,
    **SESSION_INDEXES,
    **STREAM_INDEXES,
    **STAFF_INDEXES,
}
# every paged list of the API; on the embedded store each one's index is a sorted table
LISTINGS: tuple[Listing, ...] = (
    WORKSPACES,
    PATHWAYS,
    MEMBERS,
    INVITATIONS,
    ROLES,
    API_KEYS,
    STREAMS,
    *STAFF_LISTINGS,
)
AUDIT_INDEXES: dict[str, list[IndexSpec]] = {
    audit_repository.COLLECTION: audit_repository.INDEXES,
    integrity.DIGESTS: integrity.INDEXES,
    integrity.CHUNKS: integrity.CHUNK_INDEXES,
    counters.COUNTERS: counters.INDEXES,
    merkle.CHECKPOINTS: merkle.CHECKPOINT_INDEXES,
    merkle.TREES: merkle.TREE_INDEXES,
}
# server error codes for "an index of that name or key exists with other options"
_CONFLICT_CODES = {85, 86}  # IndexOptionsConflict, IndexKeySpecsConflict
_CHECKED_OPTIONS = ("unique", "sparse", "partialFilterExpression")
EXTENSION_KEY = "audit_app.index_check"
RECHECK_MISSING_SECONDS = 5.0  # how long /readyz keeps a "missing" answer


@dataclass
class IndexReport:
    """What ``ensure_indexes`` built and what it could not."""

    created: dict[str, list[str]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)


def sorted_indexes() -> dict[str, list[SortedIndex]]:
    """The indexes of the lists, by collection, as the embedded store keeps them."""
    found: dict[str, list[SortedIndex]] = {}
    for listing in LISTINGS:
        [keys] = [
            keys
            for keys, options in PLATFORM_INDEXES[listing.collection]
            if options["name"] == listing.index
        ]
        found.setdefault(listing.collection, []).append(
            SortedIndex(listing.index, tuple((name, int(way)) for name, way in keys))
        )
    return found


def ensure_indexes(
    main_db: Database[Document],
    audit_db: Database[Document],
    before_dropping_ttl: Callable[[int | None], None] | None = None,
) -> IndexReport:
    """Create every index (idempotent); conflicts are collected, the rest still built. Also
    give permissions added since organizations were made to their built-in roles, once, and
    drop the TTL indexes of earlier versions (retention is a purge per organization now),
    after ``before_dropping_ttl`` (its ``expireAfterSeconds``) has anchored what they removed."""
    report = IndexReport()
    grant_added_permissions(main_db)
    fill_membership_emails(main_db)
    for db, declared in ((main_db, PLATFORM_INDEXES), (audit_db, AUDIT_INDEXES)):
        for collection, specs in declared.items():
            names = report.created.setdefault(collection, [])
            for keys, options in specs:
                try:
                    names.append(db[collection].create_index(keys, **options))
                except OperationFailure as error:
                    if error.code not in _CONFLICT_CODES:
                        raise
                    message = (error.details or {}).get("errmsg") or str(error)
                    report.conflicts.append(f"{collection}.{options['name']}: {message}")
    audit_repository.drop_ttl(audit_db, before_dropping_ttl)
    integrity.drop_chunk_ttl(audit_db)
    counters.mark_start(main_db)
    return report


def missing_indexes(main_db: Database[Document], audit_db: Database[Document]) -> list[str]:
    """Each declared index that is absent, or present with another key or options."""
    problems: list[str] = []
    for db, declared in ((main_db, PLATFORM_INDEXES), (audit_db, AUDIT_INDEXES)):
        for collection, specs in declared.items():
            present = {index["name"]: index for index in db[collection].list_indexes()}
            for keys, options in specs:
                name = options["name"]
                index = present.get(name)
                if index is None:
                    problems.append(f"{collection}.{name} is missing")
                elif list(index["key"].items()) != [(k, v) for k, v in keys] or any(
                    index.get(option) != options.get(option)
                    for option in _CHECKED_OPTIONS
                    if option in options or option in index
                ):
                    problems.append(f"{collection}.{name} differs from its declaration")
    return problems


INDEX_CHECK_SECONDS = 3600  # how often each server process logs missing indexes again


def ensure_indexes_on_start(app: Flask) -> None:
    """The embedded store and mongomock build their indexes; MongoDB's are only checked."""
    main, audit = stores(app)["main"], stores(app)["audit"]
    if main.kind == "mongodb" or audit.kind == "mongodb":
        # checked when a server's background tasks start (and by /readyz), not when a
        # command of the CLI builds the app: a command against a MongoDB that is down says
        # so in its own error, with no line about indexes before it
        runner = app.extensions.get(BACKGROUND_KEY)
        if runner is not None:
            runner.add("indexes", INDEX_CHECK_SECONDS, lambda: check_indexes(app, max_age=60))
        return
    try:
        ensure_indexes(main.db, audit.db, legacy_from_ttl(app))
    except Exception as error:  # noqa: BLE001 - store unusable at start: serve, spool audits
        app.logger.error(
            "Could not ensure indexes at start (%s); run 'flask ensure-indexes' "
            "once the store is reachable",
            error,
        )


def check_indexes(app: Flask, *, max_age: float = 0.0) -> list[str] | None:
    """The declared indexes missing on MongoDB (``[]`` when all are there), or ``None``
    when the store could not be asked. The answer is kept ``max_age`` seconds (a missing
    index is asked about again sooner, so ``/readyz`` turns ready soon after the deploy
    step ran)."""
    kept = cast("tuple[float, list[str] | None] | None", app.extensions.get(EXTENSION_KEY))
    now = time.monotonic()
    if kept is not None:
        checked_at, known = kept
        fresh_for = max_age if known == [] else min(max_age, RECHECK_MISSING_SECONDS)
        if now - checked_at < fresh_for:
            return known
    main, audit = stores(app)["main"], stores(app)["audit"]
    temporary = [_twin(main)]  # short-lived clients: none outlives a gunicorn fork
    temporary.append(temporary[0] if audit is main else _twin(audit))
    try:
        problems: list[str] | None = missing_indexes(temporary[0].db, temporary[1].db)
    except PyMongoError as error:
        app.logger.error("Could not check the indexes (%s)", error)
        problems = None
    finally:
        for store in set(temporary) - {main, audit}:
            store.close()
    if problems:
        app.logger.error(
            "Indexes missing or different: %s. Run 'flask --app wsgi ensure-indexes' "
            "(a deploy step) before serving.",
            "; ".join(problems),
        )
    app.extensions[EXTENSION_KEY] = (now, problems)
    return problems


def _twin(store: Store) -> Store:
    if store.kind != "mongodb":
        return store
    return Store(
        store.uri,
        db_name=store.db_name,
        embedded_dir=store.embedded_dir,
        write_timeout_ms=store.write_timeout_ms,
    )
