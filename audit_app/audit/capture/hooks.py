"""The request hooks that record every API request and every state-changing web action.

``start_request`` runs first for every request (request id, start time); ``record_response``
runs on every response, including error pages and unhandled exceptions, builds the record
and hands it to the writer. Neither may ever break the response it observes: a failure to
build a record is logged and a minimal record is written instead.
"""

from __future__ import annotations

import logging
import time

from bson import ObjectId
from flask import Flask, current_app, g, request

from ...background import EXTENSION_KEY as BACKGROUND_KEY
from ...ids import utcnow
from ..actions import ACTION, declare
from .context import backdated, begin
from .journal import FoldResult
from .record import build_record, operator_record, request_id_from, summary_fields

log = logging.getLogger("audit_app.audit")

WRITER_KEY = "audit_app.audit_writer"
_UNRECORDED_ENDPOINTS = {"static", "health.healthz", "health.readyz"}
_STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
(EXPORT_ENDED,) = declare("auditLog.exportEnded")  # an export's second record: how it ended


def store_journaled(app: Flask | None = None) -> FoldResult | None:
    """Store what waits in the journal now (the journal write mode), waiting for a fold in
    progress elsewhere: before a read of the log that must see every request answered
    before it. None when there is no journal."""
    writer = (app or current_app).extensions.get(WRITER_KEY)
    if writer is None or writer.journal is None:
        return None
    return writer.fold(wait=True, reader=True)


def audited(view):
    """Mark a web view whose every request (GET included) belongs in the audit log."""
    view.audited = True
    return view


def audit_action(name: str, *, failed: str | None = None):
    """Declare what a view does, as its records' ``action`` (``<resource>.<verb>``).

    ``failed`` names what a 4xx or 5xx answer means instead (``session.loginFailed``). A
    service may name it more precisely for one request (``note_action``).
    """
    if not ACTION.match(name) or (failed is not None and not ACTION.match(failed)):
        raise ValueError(f"an action is <resource>.<verb> in camelCase, not {name!r}")

    def declare(view):
        view.audit_action = name
        view.audit_action_failed = failed
        return view

    return declare


def should_record() -> bool:
    if request.endpoint in _UNRECORDED_ENDPOINTS:
        return False
    if request.path.startswith("/api/"):
        return True
    if request.path.startswith("/static/"):
        return False
    if request.method in _STATE_CHANGING:
        return True
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return bool(getattr(view, "audited", False))


def start_request() -> None:
    # g may outlive a request when an app context was already pushed (CLI, tests): reset all
    begin()
    g.request_id = request_id_from(request)
    g.audit_started_at = backdated() or utcnow()
    g.audit_clock = time.perf_counter()
    g.audit_record_id = ObjectId()
    runner = current_app.extensions.get(BACKGROUND_KEY)
    if runner is not None:
        runner.ensure_started()  # the first request after a fork starts the process's own
    writer = current_app.extensions.get(WRITER_KEY)
    if writer is not None and "audit_serving" not in g:
        writer.request_started()  # (the background fold prefers an idle process)
        g.audit_serving = writer


def end_request(_error: BaseException | None = None) -> None:
    """Teardown of every request ``start_request`` saw, however it ended."""
    writer = g.pop("audit_serving", None)
    if writer is not None:
        writer.request_ended()


def record_response(response):
    response.headers["X-Request-Id"] = g.get("request_id") or request_id_from(request)
    writer = current_app.extensions.get(WRITER_KEY)
    if writer is None or "audit_started_at" not in g or not should_record():
        return response
    duration_ms = (time.perf_counter() - g.audit_clock) * 1000
    try:
        record = build_record(response, duration_ms)
    except Exception:  # a bug in building the details must never lose the record
        log.exception("Could not build the audit record details; storing a minimal one")
        record = _minimal_record(response, duration_ms)
    writer.write(record)
    return response


def _minimal_record(response, duration_ms: float) -> dict:
    return {**summary_fields(response, duration_ms), "request": {"detailsError": True}}


def record_system_event(organization_id, *, action: str, path: str, details: dict):
    """Write a record of something the server did on its own (the sealer publishing a
    checkpoint), as an operator's command is written (``authType: "cli"``)."""
    writer = current_app.extensions.get(WRITER_KEY)
    if writer is None:
        return None
    record = operator_record(organization_id, path, {}, action=action, details=details)
    record.update(userAgent="audit-log server", path=path, route=path)
    writer.write(record, sync=True)
    return record["_id"]


def record_operator_command(
    organization_id,
    command: str,
    options: dict,
    *,
    action: str,
    outcome: str = "success",
    **details,
):
    """Write the record of an operator's command in the organization's log (the CLI);
    ``outcome``: ``failure`` when the command did not do what it was asked.

    Returns the record's id (None when auditing is off).
    """
    writer = current_app.extensions.get(WRITER_KEY)
    if writer is None:
        return None
    record = operator_record(
        organization_id, command, options, action=action, details=details or None
    )
    record["outcome"] = outcome
    # into the store before the command goes on: its process may end as soon as it answers,
    # and the command's own next step (a verification, an export) reads the log
    writer.write(record, sync=True)
    return record["_id"]


class _Answered:
    status_code = 200


def record_export_outcome(fmt: str):
    """A callback for ``export.tallied``: record how this request's export ended."""
    started = time.perf_counter()

    def on_end(rows: int, outcome: str) -> None:
        writer = current_app.extensions.get(WRITER_KEY)
        if writer is None or "audit_started_at" not in g:
            return
        try:
            record = summary_fields(_Answered(), (time.perf_counter() - started) * 1000)
            record["_id"] = ObjectId()
            record["action"] = EXPORT_ENDED
            record["request"] = {
                "query": {},
                "params": {},
                "headers": {},
                "bodyType": "empty",
                "body": None,
                "export": {"format": fmt, "rowsWritten": rows, "outcome": outcome},
            }
            # an export cut short (the client went away, the time budget ran out) did not
            # do what was asked, whatever the 200 its start answered
            record["outcome"] = "success" if outcome == "completed" else "failure"
        except Exception:  # the stream is over: never raise into the server
            log.exception("Could not build the export outcome record")
            return
        writer.write(record)

    return on_end
