"""Delivering streams: at least once, in stored order, nothing skipped (docs/streams.md).

Each stream has a cursor over its organization's records in the order they were stored
(``storedAt``, ``_id``: the order sealing uses, so a record replayed late from the spool
comes after the cursor, not behind it). A deliverer holds the stream's lease (one per
stream across processes and hosts), reads the next batch of records stored at least
``AUDIT_STREAM_SETTLE_SECONDS`` ago (so a write still in flight in another process lands
before the cursor passes its time), keeps those the stream's filters match, sends them in
deliveries of at most ``AUDIT_STREAM_MAX_BATCH_BYTES``, and moves the cursor past each
delivery only once the destination acknowledged it. A failed send leaves the cursor where
it was and retries later, with exponential backoff and jitter; the retried delivery may
reach the destination twice, which every event's record id lets it de-duplicate. No record
blocks a stream: one too large for any delivery goes cut down and marked, and a delivery
the destination refuses as too large (413) is halved until it passes. Memory is one batch
(``AUDIT_STREAM_BATCH`` records) and one delivery's bytes.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from bson import ObjectId
from flask import Flask, current_app
from mongomock.filtering import filter_applies
from werkzeug.datastructures import MultiDict

from ..audit.service import build_query
from ..audit.store.query import FilterSchema, parse_query
from ..audit.store.repository import stored_after
from ..db import Document, get_audit_db, get_db
from ..errors import ApiError
from ..ids import utcnow
from . import destinations, formats, service
from . import repository as streams
from .secrets import SecretUnreadable, open_destination, unseal

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


@dataclass(frozen=True)
class Piece:
    """One record as the destination gets it: its bytes on the wire. ``stage`` 0 is the
    whole record, 1 and 2 ever smaller ``formats.shrunk`` forms of a record that fit no
    delivery whole; ``original`` is the size of its whole form."""

    record: Document
    data: bytes
    stage: int = 0
    original: int = 0


Acknowledged = Callable[[list[Piece]], bool]


def send(
    stream: Document,
    records: list[Document],
    acknowledged: Acknowledged | None = None,
    deadline: float | None = None,
) -> bool:
    """Render the records in the stream's format and send them, in deliveries of at most
    ``AUDIT_STREAM_MAX_BATCH_BYTES``; after each delivery the destination acknowledged,
    call ``acknowledged`` with its pieces (False from it, or ``deadline`` passed, stops
    here: returns False). ``DeliveryFailed`` if the destination did not acknowledge a
    delivery, whatever went wrong (a refused address, an unreadable secret, a malformed
    answer): a stream fails visibly, it never stalls.

    One record never blocks a stream: a record larger than a delivery goes ``shrunk`` (and
    says so), and a delivery answered 413 is halved until it passes, a single record
    shrunk further."""
    try:
        return _send(stream, records, acknowledged, deadline)
    except destinations.DeliveryFailed:
        raise
    except destinations.AddressRefused as error:
        raise destinations.DeliveryFailed(str(error), code=error.code) from None
    except Exception as error:
        log.exception("Stream %s: sending failed", stream.get("_id"))
        raise destinations.DeliveryFailed(f"Sending failed: {type(error).__name__}.") from None


def _send(
    stream: Document,
    records: list[Document],
    acknowledged: Acknowledged | None,
    deadline: float | None,
) -> bool:
    try:
        secret = unseal(stream.get("secret")) or ""
        destination = open_destination(stream["destination"])
    except SecretUnreadable as error:
        raise destinations.DeliveryFailed(str(error)) from None
    limit = int(current_app.config["AUDIT_STREAM_MAX_BATCH_BYTES"])
    chunks = _packed((_fitted(stream, _piece(stream, r), limit) for r in records), limit)
    again: deque[list[Piece]] = deque()  # what a 413 split, before the rest
    progressed = False
    while (chunk := again.popleft() if again else next(chunks, None)) is not None:
        if progressed and deadline is not None and time.monotonic() > deadline:
            return False  # the rest next time, from the cursor
        try:
            _transmit(destination, secret, b"".join(piece.data for piece in chunk))
        except destinations.DeliveryFailed as error:
            if error.status != 413:
                raise
            if len(chunk) > 1:  # too large for the destination: halve it, in order
                half = len(chunk) // 2
                again.extendleft([chunk[half:], chunk[:half]])
                continue
            smaller = _smaller(stream, chunk[0])
            if smaller is None:
                raise
            again.appendleft([smaller])
            continue
        if acknowledged is not None and not acknowledged(chunk):
            return False
        progressed = True
    return True


def _piece(stream: Document, record: Document, stage: int = 0, original: int = 0) -> Piece:
    fmt = stream["format"]
    if stage:
        event = formats.render(fmt, formats.shrunk(record, stage), truncated_from=original)
    else:
        event = formats.render(fmt, record)
    kind = stream["destination"]["type"]
    if kind == "webhook":
        data = destinations.webhook_event(event)
    elif kind == "splunk":
        data = destinations.splunk_event(event, record["createdAt"].timestamp())
    else:
        data = destinations.syslog_frame(
            event,
            action=str(record.get("action") or "-"),
            failed=int(record.get("statusCode") or 0) >= 400,
            at=record["createdAt"],
        )
    return Piece(record, data, stage, original or len(data))


def _smaller(stream: Document, piece: Piece) -> Piece | None:
    """The next smaller form of a piece, or None after the smallest."""
    if piece.stage >= 2:
        return None
    return _piece(stream, piece.record, piece.stage + 1, piece.original)


def _fitted(stream: Document, piece: Piece, limit: int) -> Piece:
    """The piece in its largest form within ``limit`` bytes (the smallest form goes even if
    larger: a stream is never blocked by one record)."""
    while len(piece.data) > limit and (smaller := _smaller(stream, piece)) is not None:
        piece = smaller
    return piece


def _packed(pieces: Iterator[Piece], limit: int) -> Iterator[list[Piece]]:
    """Consecutive pieces in deliveries of at most ``limit`` bytes, rendered as needed."""
    chunk: list[Piece] = []
    size = 0
    for piece in pieces:
        if chunk and size + len(piece.data) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(piece)
        size += len(piece.data)
    if chunk:
        yield chunk


def _transmit(destination: Mapping[str, Any], secret: str, body: bytes) -> None:
    kind = destination["type"]
    if kind == "webhook":
        destinations.send_webhook(destination, secret, body)
    elif kind == "splunk":
        destinations.send_splunk(destination, secret, body)
    else:
        destinations.send_syslog(destination, body)


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
        sent: list[Piece] = []  # acknowledged so far, in order
        acknowledged = partial(_acknowledged, stream, holder, sent)
        try:
            complete = not matching or send(stream, matching, acknowledged, budget)
        except destinations.DeliveryFailed as error:
            waiting = matching[len(sent)]
            _failed(
                stream,
                holder,
                str(error),
                len(matching) - len(sent),
                pending=waiting["storedAt"],
                detail=error.detail,
                code=error.code,
            )
            return
        if not complete:
            return  # the lease went to another deliverer, or the time is up: the cursor holds
        last = batch[-1]
        position = (last["storedAt"], last["_id"])
        full = len(batch) == config["AUDIT_STREAM_BATCH"]
        update: dict[str, Any] = {
            **_past(last),
            "health.pendingSince": last["storedAt"] if full else None,
            "nextAttemptAt": utcnow(),
        }
        if not _progress(stream, holder, update, {}):
            return  # the lease went to another deliverer: it carries on from the cursor
        if not full:
            return


def _past(last: Document) -> dict[str, Any]:
    """The cursor moved past a record, and the health of a stream that is delivering."""
    return {
        "cursor": {"storedAt": last["storedAt"], "id": last["_id"]},
        "health.attempts": 0,
        "health.lastError": None,
        "health.lastErrorCode": None,
        "health.lastErrorDetail": None,
        "health.failingSince": None,
    }


def _acknowledged(stream: Document, holder: str, sent: list[Piece], chunk: list[Piece]) -> bool:
    """Move the cursor past a delivery the destination acknowledged (``sent`` keeps what
    was, in order); False if the lease went to another deliverer."""
    sent.extend(chunk)
    last = chunk[-1].record
    now = utcnow()
    update: dict[str, Any] = {**_past(last), "health.lastDeliveredAt": now}
    shrunk = [piece for piece in chunk if piece.stage]
    if shrunk:
        update["health.lastTruncatedId"] = str(shrunk[-1].record["_id"])
        update["health.lastTruncatedAt"] = now
    counts = {"health.delivered": len(chunk), "health.truncated": len(shrunk)}
    return _progress(stream, holder, update, counts)


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
    code: str = "failed",
) -> None:
    health = stream.get("health") or {}
    attempts = int(health.get("attempts") or 0) + 1
    now = utcnow()
    update = {
        "health.attempts": attempts,
        "health.lastError": message[:300],
        "health.lastErrorCode": code,
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
