"""``/healthz`` (the process answers) and ``/readyz`` (its stores and spool are usable)."""

from flask import Blueprint, current_app, jsonify

from .audit.capture.hooks import WRITER_KEY
from .background import EXTENSION_KEY as BACKGROUND_KEY
from .db import stores
from .indexes import check_indexes

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready when the platform store answers and audit records have somewhere durable to go."""
    checks, problems = {}, []
    for name, store in stores().items():
        try:
            store.ping()
            checks[f"{name}Store"] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure to reach it means not ready
            checks[f"{name}Store"] = "unreachable"
            problems.append(f"{name} store unreachable: {type(error).__name__}")
    writer = current_app.extensions.get(WRITER_KEY)
    if writer is not None:
        spool_ok = writer.spool.writable() and writer.last_spool_error is None
        checks["auditSpool"] = "ok" if spool_ok else "unwritable"
        checks["auditSpoolPendingBytes"] = writer.spool.pending_bytes()
        if not spool_ok:
            problems.append(f"audit spool {writer.spool.directory} cannot be written")
        if checks["auditStore"] != "ok" and not spool_ok:
            problems.append("audit records cannot be persisted")
        checks["auditWriteMode"] = writer.mode
        if writer.journal is not None:  # where requests hand their records off
            checks["auditJournal"] = "ok" if writer.last_journal_error is None else "unwritable"
            checks["auditJournalPendingBytes"] = writer.journal.pending_bytes()
    runner = current_app.extensions.get(BACKGROUND_KEY)
    if runner is not None and runner.tasks:
        # unauthenticated: each task's error by its kind only (the message, which may name
        # hosts or paths, is in the log)
        checks["background"] = {
            name: {**task, "lastError": (task["lastError"] or "").split(":")[0] or None}
            for name, task in runner.status().items()
        }
    if "auditStore" not in checks:
        checks["auditStore"] = checks.get("mainStore")
    if any(store.kind == "mongodb" for store in stores().values()) and not problems:
        missing = check_indexes(current_app._get_current_object(), max_age=60)
        checks["indexes"] = "unknown" if missing is None else (missing or "ok")
        if missing:
            problems.append(
                "indexes missing or different (run 'flask --app wsgi ensure-indexes'): "
                + "; ".join(missing)
            )
    blocking = [p for p in problems if not p.startswith("audit store")]
    if blocking:
        return jsonify(status="unavailable", reason="; ".join(problems), checks=checks), 503
    return jsonify(status="ready", checks=checks, warnings=problems)
