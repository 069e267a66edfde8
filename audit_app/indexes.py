"""Every index of the app, declared beside its data and created here in one go."""

from __future__ import annotations

from .api_keys.repository import INDEXES as API_KEY_INDEXES
from .audit.integrity import ensure_digest_indexes
from .audit.repository import ensure_audit_indexes
from .auth.sessions import INDEXES as SESSION_INDEXES
from .db import Store, stores
from .organizations.repository import INDEXES as ORGANIZATION_INDEXES
from .workspaces.repository import INDEXES as WORKSPACE_INDEXES

PLATFORM_INDEXES = {
    **ORGANIZATION_INDEXES,
    **WORKSPACE_INDEXES,
    **API_KEY_INDEXES,
    **SESSION_INDEXES,
}


def ensure_indexes(
    main_db, audit_db, retention_days: int, *, native_ttl: bool = True
) -> dict[str, list[str]]:
    """Create all indexes (idempotent) and return their names by collection."""
    created: dict[str, list[str]] = {}
    for collection, specs in PLATFORM_INDEXES.items():
        created[collection] = [
            main_db[collection].create_index(keys, **options) for keys, options in specs
        ]
    created["audit_logs"] = ensure_audit_indexes(audit_db, retention_days, native_ttl=native_ttl)
    created["audit_digests"] = ensure_digest_indexes(
        audit_db, retention_days, native_ttl=native_ttl
    )
    return created


def ensure_indexes_on_start(app) -> None:
    """Create the indexes at start with short-lived clients, so no client outlives a fork."""
    main, audit = stores(app)["main"], stores(app)["audit"]
    try:
        if main.kind in ("injected", "mongomock"):
            ensure_indexes(
                main.db, audit.db, app.config["AUDIT_RETENTION_DAYS"], native_ttl=audit.native_ttl
            )
            return
        temporary = [_twin(main)]
        temporary.append(temporary[0] if audit is main else _twin(audit))
        try:
            ensure_indexes(
                temporary[0].db,
                temporary[1].db,
                app.config["AUDIT_RETENTION_DAYS"],
                native_ttl=audit.native_ttl,
            )
        finally:
            for store in set(temporary):
                store.close()
    except Exception as error:  # noqa: BLE001 - store down at start: serve, spool audits
        app.logger.error(
            "Could not ensure indexes at start (%s); run 'flask ensure-indexes' "
            "once the store is reachable",
            error,
        )


def _twin(store: Store) -> Store:
    return Store(
        store.uri,
        db_name=store.db_name,
        embedded_dir=store.embedded_dir,
        write_timeout_ms=store.write_timeout_ms,
    )
