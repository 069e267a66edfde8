"""Delivering streams: at least once, in stored order, nothing skipped (docs/streams.md).

Each stream has a cursor over its organization's records in the order they were stored
(``storedAt``, ``_id``: the order sealing uses, so a record replayed late from the spool
comes after the cursor, not behind it). A deliverer holds the stream's lease (one per
stream across processes and hosts), reads the next batch of records stored at least
``AUDIT_STREAM_SETTLE_SECONDS`` ago (so a write still in flight in another process lands
before the cursor passes its time), keeps those the stream's filters match, sends them,
and moves the cursor past the batch only once the destination acknowledged it. A failed
send leaves the cursor where it was and retries later, with exponential backoff and
jitter; the retried batch may reach the destination twice, which every event's record id
lets it de-duplicate. Memory is one batch (``AUDIT_STREAM_BATCH`` records).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from flask import Flask
from mongomock.filtering import filter_applies
from werkzeug.datastructures import MultiDict

from ..audit.query import FilterSchema, parse_query
from ..audit.repository import stored_after
from ..audit.service import build_query
from ..db import Document, get_audit_db, get_db
from ..errors import ApiError
from ..ids import utcnow
from . import destinations, formats, service
from . import repository as streams
from .secrets import SecretUnreadable, unseal

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
TICK_BUDGET_SECONDS = 20.0  # one stream's share of a tick, then the next stream's turn
BACKOFF_FIRST = 5.0
BACKOFF_MAX = 600.0
_EPOCH_ID = ObjectId("000000000000000000000000")


def backoff(attempts: int) -> float:
    """Seconds until the next try after ``attempts`` failures in a row: doubling from 5 s
    up to 10 minutes, with full jitter over its upper half (no thundering herd)."""
    ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 - jitter, not a secret


def matcher(
    organization_id: ObjectId, filters: dict[str, str]
) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate for the stream's filters, with the log's own query semantics."""
    if not filters:
        return lambda record: True
    query = build_query(organization_id, parse_query(MultiDict(filters), FilterSchema()))
    branches = query.branches()
    return lambda record: any(filter_applies(branch, record) for branch in branches)


def send(stream: Document, records: list[Document]) -> None:
    """Render the records in the stream's format and send them; ``DeliveryFailed`` if the
    destination did not acknowledge every one, whatever went wrong (a refused address, an
    unreadable secret, a malformed answer): a stream fails visibly, it never stalls."""
    try:
        _send(stream, records)
    except destinations.DeliveryFailed:
        raise
    except destinations.AddressRefused as error:
        raise destinations.DeliveryFailed(str(error)) from None
    except Exception as error:
        log.exception("Stream %s: sending failed", stream.get("_id"))
        raise destinations.DeliveryFailed(f"Sending failed: {type(error).__name__}.") from None


def _send(stream: Document, records: list[Document]) -> None:
    destination, fmt = stream["destination"], stream["format"]
    events = [formats.render(fmt, record) for record in records]
    try:
        secret = unseal(stream.get("secret"))
    except SecretUnreadable as error:
        raise destinations.DeliveryFailed(str(error)) from None
    kind = destination["type"]
    if kind == "webhook":
        destinations.send_webhook(destination, secret or "", events)
    elif kind == "splunk":
        times = [r["createdAt"].timestamp() for r in records]
        destinations.send_splunk(destination, secret or "", events, times)
    else:
        frames = [
            destinations.syslog_frame(
                event,
                action=str(r.get("action") or "-"),
                failed=int(r.get("statusCode") or 0) >= 400,
                at=r["createdAt"],
            )
            for event, r in zip(events, records, strict=True)
        ]
        destinations.send_syslog(destination, frames)


def deliver_stream(app: Flask, stream: Document, holder: str) -> None:
    """Deliver one stream's pending records for up to ``TICK_BUDGET_SECONDS``."""
    config = app.config
    budget = time.monotonic() + TICK_BUDGET_SECONDS
    organization_id = stream["organizationId"]
    try:
        wanted = matcher(organization_id, stream.get("filters") or {})
    except ApiError as error:  # filters saved by an earlier version that no longer parse
        _failed(stream, holder, f"The stream's filters are not valid: {error.message}", 0)
        return
    cursor = stream.get("cursor") or {"storedAt": stream["start"], "id": None}
    position = (cursor["storedAt"], cursor["id"])
    while time.monotonic() < budget:
        reason = service.pause_reason(stream)  # before each batch: who answers for it may
        if reason is not None:  # have lost the membership, a permission, or their key
            _paused(stream, holder, reason)
            return
        until = utcnow() - timedelta(seconds=config["AUDIT_STREAM_SETTLE_SECONDS"])
        batch = stored_after(
            get_audit_db(app),
            organization_id,
            position,
            until,
            config["AUDIT_STREAM_BATCH"],
            config["AUDIT_QUERY_TIMEOUT_MS"],
        )
        if not batch:
            _progress(stream, holder, {"health.pendingSince": None}, {})
            return
        matching = [record for record in batch if wanted(record)]
        try:
            if matching:
                send(stream, matching)
        except destinations.DeliveryFailed as error:
            _failed(
                stream,
                holder,
                str(error),
                len(matching),
                pending=batch[0]["storedAt"],
                detail=error.detail,
            )
            return
        last = batch[-1]
        position = (last["storedAt"], last["_id"])
        full = len(batch) == config["AUDIT_STREAM_BATCH"]
        update: dict[str, Any] = {
            "cursor": {"storedAt": last["storedAt"], "id": last["_id"]},
            "health.attempts": 0,
            "health.lastError": None,
            "health.lastErrorDetail": None,
            "health.failingSince": None,
            "health.pendingSince": last["storedAt"] if full else None,
            "nextAttemptAt": utcnow(),
        }
        if matching:
            update["health.lastDeliveredAt"] = utcnow()
        if not _progress(stream, holder, update, {"health.delivered": len(matching)}):
            return  # the lease went to another deliverer: it carries on from the cursor
        if not full:
            return


def _progress(
    stream: Document, holder: str, update: dict[str, Any], counts: dict[str, int]
) -> bool:
    return streams.record_progress(get_db(), stream, holder, update, counts)


def _paused(stream: Document, holder: str, reason: str) -> None:
    """Pause the stream, saying why, unless someone changed it meanwhile (a resume made
    after our check stands)."""
    log.warning("Stream %s: paused: %s", stream["_id"], reason)
    streams.record_progress(
        get_db(),
        stream,
        holder,
        {"state": "paused", "pausedReason": reason, "pausedAt": utcnow()},
        expect={"updatedAt": stream.get("updatedAt")},
    )


def _failed(
    stream: Document,
    holder: str,
    message: str,
    events: int,
    pending: datetime | None = None,
    detail: str | None = None,
) -> None:
    health = stream.get("health") or {}
    attempts = int(health.get("attempts") or 0) + 1
    now = utcnow()
    update = {
        "health.attempts": attempts,
        "health.lastError": message[:300],
        "health.lastErrorDetail": detail[:300] if detail else None,
        "health.lastErrorAt": now,
        "health.failingSince": health.get("failingSince") or now,
        "nextAttemptAt": now + timedelta(seconds=backoff(attempts)),
    }
    if pending is not None:
        update["health.pendingSince"] = pending
    log.warning("Stream %s: delivery failed (attempt %d): %s", stream["_id"], attempts, message)
    _progress(stream, holder, update, {"health.failed": events})


def deliver_due(app: Flask, holder: str) -> int:
    """One tick of this process's deliverer: every due stream it can lease. Returns how
    many streams it worked on."""
    worked = 0
    with app.app_context():
        for stream in streams.due_streams(get_db(), utcnow()):
            if not streams.take_lease(get_db(), stream, holder, LEASE_SECONDS):
                continue  # another process delivers this one
            fresh = streams.find_stream(get_db(), stream["organizationId"], stream["_id"])
            if fresh is None or fresh.get("state") != "active":
                continue
            try:
                deliver_stream(app, fresh, holder)
            except Exception as error:  # a store error or a bug: visible, and backed off
                log.exception("Stream %s: delivery stopped", stream["_id"])
                _failed(fresh, holder, f"Delivery stopped: {type(error).__name__}.", 0)
            worked += 1
    return worked


def background_deliverer(app: Flask) -> tuple[float, Any]:
    """The task for each process's stream lane: deliver whatever streams are due."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def task() -> None:
        deliver_due(app, holder)

    return float(app.config["AUDIT_STREAM_INTERVAL"]), task
