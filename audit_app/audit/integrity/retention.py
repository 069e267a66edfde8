"""Each organization's retention and legal hold: the rules, the purge, and what verify excuses.

- ``auditRetentionDays`` is the organization's own, within the installation's bounds
  (``AUDIT_RETENTION_MIN_DAYS`` to ``AUDIT_RETENTION_MAX_DAYS``; ``AUDIT_RETENTION_DAYS``
  until it sets one). ``auditLegalHold`` suspends every deletion of its records.
- A native TTL index cannot honour a hold, so records go by a purge per organization: a
  background task under a lease, in batches that walk ``org_stored`` (records stored before
  the cut-off, oldest first, ``limit``) and delete exactly those ids. The same on MongoDB
  and on the embedded store.
- Retention never reads as tampering, and tampering never reads as retention. Before a
  record is deleted, the purge anchors its bound (``Anchor.anchor_purge``, outside the
  database); ``verify`` excuses a sealed record's absence only below an anchored bound.
  Settings are anchored too, and a purge keeps whatever the stricter of the database's and
  the anchor's settings keeps. Someone who can write to the database alone can lower
  neither, nor lift a hold: they can only make the log keep more.
- Settings changes and purge batches of one organization take one lock (a file beside the
  anchor), so once a hold is answered, no batch deletes anything.
- Shortening the retention waits: the shorter one is *pending* (``auditRetentionPending``,
  ``{days, effectiveAt}``) for ``AUDIT_RETENTION_GRACE_DAYS`` (7), during which the purge
  keeps the longer one and the change can be cancelled (set the retention back). The
  pending change is anchored with the settings, so the database alone cannot bring its
  moment forward. Lengthening applies at once. Only an Owner lifts a hold
  (``organizations.service``).
"""

from __future__ import annotations

import fcntl
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from flask import Flask, current_app
from pymongo import ASCENDING

from ...config import ConfigError
from ...db import get_audit_db, get_db
from ...errors import ApiError, bad_request
from ...ids import floor_to, iso, readable, utcnow
from ..actions import declare
from ..capture.hooks import record_operator_command
from ..store.counters import forget_before
from ..store.repository import delete_records, stored_before
from .anchor import Anchor
from .digests import purge_window_chunks

log = logging.getLogger(__name__)
(PURGE,) = declare("auditLog.purge")

DAYS = "auditRetentionDays"
HOLD = "auditLegalHold"
PENDING = "auditRetentionPending"
DAY = timedelta(days=1)
BATCH = 1000
MAX_BATCHES_PER_ORGANIZATION = 50  # a tick deletes at most 50,000 of one organization's
READ_TIMEOUT_MS = 30_000
LEASE = "retention-purge"
LEASE_SECONDS = 600.0


@dataclass(frozen=True)
class Pending:
    """A shorter retention asked for, and when its grace ends."""

    days: int
    effective_at: datetime

    def as_field(self) -> dict[str, Any]:
        return {"days": self.days, "effectiveAt": self.effective_at}


@dataclass(frozen=True)
class Retention:
    days: int
    hold: bool
    pending: Pending | None = None

    def at(self, now: datetime) -> Retention:
        """These settings as they stand at ``now``: a pending change whose grace has ended
        is the retention."""
        if self.pending is not None and now >= self.pending.effective_at:
            return Retention(self.pending.days, self.hold)
        return self

    @property
    def final_days(self) -> int:
        """The retention once any pending change has applied."""
        return self.pending.days if self.pending is not None else self.days

    def as_fields(self) -> dict[str, Any]:
        pending = self.pending.as_field() if self.pending is not None else None
        return {DAYS: self.days, HOLD: self.hold, PENDING: pending}


def grace(app: Flask | None = None) -> timedelta:
    return timedelta(days=(app or current_app).config["AUDIT_RETENTION_GRACE_DAYS"])


def bounds(app: Flask | None = None) -> tuple[int, int]:
    config = (app or current_app).config
    return config["AUDIT_RETENTION_MIN_DAYS"], config["AUDIT_RETENTION_MAX_DAYS"]


def check_bounds(config: Mapping[str, Any]) -> None:
    """Refuse to start with bounds that do not hold the installation's default, or with a
    grace that is not a whole number of days from 0 to the longest retention."""
    low, high, default = (
        config["AUDIT_RETENTION_MIN_DAYS"],
        config["AUDIT_RETENTION_MAX_DAYS"],
        config["AUDIT_RETENTION_DAYS"],
    )
    if not 1 <= low <= default <= high:
        raise ConfigError(
            "Audit retention needs 1 <= AUDIT_RETENTION_MIN_DAYS <= AUDIT_RETENTION_DAYS <= "
            f"AUDIT_RETENTION_MAX_DAYS; got {low}, {default} and {high}."
        )
    days = config.get("AUDIT_RETENTION_GRACE_DAYS", 7)
    if not (isinstance(days, int) and not isinstance(days, bool) and 0 <= days <= high):
        raise ConfigError(
            "AUDIT_RETENTION_GRACE_DAYS must be a whole number of days from 0 to "
            f"AUDIT_RETENTION_MAX_DAYS ({high}), got {days!r}"
        )


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SANE_DAYS = 100 * 366  # a value past this in the database is an edit: the default stands


def legacy_from_ttl(app: Flask) -> Callable[[int | None], None]:
    """For ``ensure-indexes`` (the deploy step; at start on the embedded store): before the
    TTL index of an earlier version is dropped, anchor what it removed, by its own
    ``expireAfterSeconds``; without one (a new installation), that nothing was. Once per
    installation: the bound never moves. If the anchor cannot be written, the index stays."""

    def anchor(seconds: int | None) -> None:
        before = EPOCH if seconds is None else utcnow() - timedelta(seconds=seconds)
        _anchor(app).anchor_legacy(before)

    return anchor


def _days(value: Any) -> int | None:
    sane = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= SANE_DAYS
    return value if sane else None


def _pending(value: Any) -> Pending | None:
    """A pending change as stored (a date) or anchored (ISO 8601); anything else is none:
    the longer retention stays."""
    if not isinstance(value, Mapping):
        return None
    days, moment = _days(value.get("days")), value.get("effectiveAt")
    if isinstance(moment, str):
        moment = _moment(moment)
    if days is None or not isinstance(moment, datetime):
        return None
    return Pending(days, _aware(moment).replace(microsecond=moment.microsecond // 1000 * 1000))


def stored(organization: Mapping[str, Any], default_days: int) -> Retention:
    """The settings the database holds (the installation's default until one is set)."""
    days = _days(organization.get(DAYS)) or default_days
    return Retention(days, organization.get(HOLD) is True, _pending(organization.get(PENDING)))


def anchored_settings(anchor: Anchor, organization_id: ObjectId) -> Retention | None:
    """The latest settings in the anchor (``<organization>.retention-settings.ndjson``), with
    their pending change; None until any is anchored. OSError if unreadable."""
    latest = None
    for entry in anchor.settings_entries(organization_id):
        days, hold = _days(entry.get("retentionDays")), entry.get("legalHold")
        if days is not None and isinstance(hold, bool):
            latest = Retention(days, hold, _pending(entry.get("pending")))
    return latest


def stricter(one: Retention, other: Retention, now: datetime) -> Retention:
    """What keeps more of both, at ``now`` and after: the longer retention, the hold if
    either holds, and a pending change only as far as both shorten (the later moment)."""
    one, other = one.at(now), other.at(now)
    days = max(one.days, other.days)
    final = max(one.final_days, other.final_days)
    pending = None
    if final < days:
        moments = [p.effective_at for p in (one.pending, other.pending) if p is not None]
        pending = Pending(final, max(moments))
    return Retention(days, one.hold or other.hold, pending)


def enforced(
    organization: Mapping[str, Any],
    anchored: Retention | None,
    default_days: int,
    now: datetime,
) -> Retention:
    """The stricter of the database's and the anchor's settings at ``now``. Until the
    anchor holds settings, the installation's default stands in for them: the database
    alone never shortens a retention, nor brings a pending shortening forward."""
    return stricter(
        stored(organization, default_days), anchored or Retention(default_days, False), now
    )


_UNREADABLE = Retention(0, True)


def _read_anchor(app: Flask, organization: Mapping[str, Any]) -> Retention | None:
    """The anchored settings; ``_UNREADABLE`` when the anchor cannot be read."""
    try:
        return anchored_settings(_anchor(app), organization["_id"])
    except OSError as error:
        log.error("The audit retention anchor of %s is unreadable: %s", organization["_id"], error)
        return _UNREADABLE


def settings_of(organization: Mapping[str, Any], app: Flask | None = None) -> Retention:
    """What is enforced for an organization now (what its settings page and API show). With
    the anchor unreadable, the database's (the purge then deletes nothing: it needs both)."""
    app = app or current_app
    default_days = app.config["AUDIT_RETENTION_DAYS"]
    anchored = _read_anchor(app, organization)
    if anchored is _UNREADABLE:
        return stored(organization, default_days).at(utcnow())
    return enforced(organization, anchored, default_days, utcnow())


def describe(settings: Retention) -> str:
    """Settings in words: ``400 days, 30 days from 2026-12-09 10:00 UTC, legal hold``."""
    text = f"{settings.days} days"
    if settings.pending is not None:
        text += f", {settings.pending.days} days from {readable(settings.pending.effective_at)}"
    return text + (", legal hold" if settings.hold else "")


def disagreement(organization: Mapping[str, Any], app: Flask | None = None) -> str | None:
    """Why the database's settings differ from the anchored ones (edited in the database)."""
    app = app or current_app
    default_days = app.config["AUDIT_RETENTION_DAYS"]
    anchored = _read_anchor(app, organization)
    if anchored is _UNREADABLE:
        return None
    anchored = anchored or Retention(default_days, False)
    in_db = stored(organization, default_days)
    if in_db == anchored:
        return None
    return (
        f"The database says {describe(in_db)}; the anchor says {describe(anchored)}. "
        "The stricter is enforced."
    )


def checked_change(
    changes: Mapping[str, Any], current: Retention, now: datetime | None = None
) -> Retention:
    """The settings asked for, within bounds (400 naming the field); a field not sent keeps
    its current value, unchecked (a hold is never refused for a retention set earlier).

    A longer retention (or the current one: that cancels a pending change) applies at
    once; a shorter one is pending until the grace has passed. Asking again for the same
    pending retention leaves its moment; another shorter one starts the grace again."""
    days = changes.get(DAYS, current.days)
    low, high = bounds()
    if DAYS in changes and (
        not isinstance(days, int) or isinstance(days, bool) or not low <= days <= high
    ):
        raise bad_request(
            f"The audit retention is a whole number of days from {low} to {high}.", DAYS
        )
    hold = changes.get(HOLD, current.hold)
    if not isinstance(hold, bool):
        raise bad_request("The legal hold is true or false.", HOLD)
    waiting = grace()
    if DAYS not in changes:
        return Retention(current.days, hold, current.pending)
    if days >= current.days or not waiting:
        return Retention(days, hold)
    if current.pending is not None and current.pending.days == days:
        return Retention(current.days, hold, current.pending)
    return Retention(current.days, hold, Pending(days, (now or utcnow()) + waiting))


@contextmanager
def locked(organization_id: ObjectId, app: Flask | None = None) -> Iterator[Anchor]:
    """One organization's settings changes and purge batches, one at a time (across the
    processes and hosts that share the anchor's folder)."""
    anchor = _anchor(app or current_app)
    try:
        anchor.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = anchor.directory / f"{ObjectId(organization_id)}.retention.lock"
        handle = open(path, "a")  # noqa: SIM115 - closed by the with below; open may fail
    except OSError as error:
        raise _unwritable(organization_id, error) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield anchor
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _unwritable(organization_id: ObjectId, error: OSError) -> ApiError:
    log.error("The audit retention anchor of %s is not writable: %s", organization_id, error)
    return ApiError(
        503,
        "unavailable",
        "The audit retention could not be saved (its anchor is not writable); nothing "
        "changed. Try again, or ask the operator to check AUDIT_ANCHOR_DIR.",
        DAYS,
    )


def anchor_settings(anchor: Anchor, organization_id: ObjectId, settings: Retention) -> None:
    """Anchor new settings, with their pending change, before the database holds them; a
    503 if the anchor is not writable (then nothing changed)."""
    pending = settings.pending
    shown = (
        None
        if pending is None
        else {"days": pending.days, "effectiveAt": iso(pending.effective_at)}
    )
    try:
        anchor.anchor_settings(organization_id, settings.days, settings.hold, shown)
    except OSError as error:
        raise _unwritable(organization_id, error) from None


# The purge --------------------------------------------------------------------------------


@dataclass
class Purged:
    organization_id: ObjectId
    deleted: int = 0
    held: bool = False
    cutoff: datetime | None = None
    more: bool = False  # the tick's budget ran out: the next one continues
    error: str | None = None  # stopped by a failure (what was deleted before it: deleted)

    def as_dict(self) -> dict[str, Any]:
        return {
            "organizationId": str(self.organization_id),
            "deleted": self.deleted,
            "legalHold": self.held,
            "cutoff": self.cutoff,
            "more": self.more,
            "error": self.error,
        }


def purge_organization(app: Flask, organization_id: ObjectId, now: datetime) -> Purged:
    """Delete the organization's records past its retention, unless it is on hold. A
    failure part-way is kept in ``error``, with what was deleted before it."""
    result = Purged(organization_id)
    try:
        _purge_batches(app, organization_id, now, result)
    except Exception as error:
        log.exception("Purging the audit log of %s failed", organization_id)
        result.error = f"{type(error).__name__}: {error}"
    return result


def _purge_batches(app: Flask, organization_id: ObjectId, now: datetime, result: Purged) -> None:
    default_days = app.config["AUDIT_RETENTION_DAYS"]
    main, audit = get_db(app), get_audit_db(app)
    for _ in range(MAX_BATCHES_PER_ORGANIZATION):
        # each batch under the lock a settings change takes, the settings read again: once a
        # hold has answered, nothing more of the organization is deleted
        with locked(organization_id, app) as anchor:
            organization = main.organizations.find_one({"_id": organization_id})
            if organization is None:
                return
            anchored = anchor.retention(organization_id)
            settings = enforced(
                organization, anchored_settings(anchor, organization_id), default_days, now
            )
            if settings.hold:
                result.held = True
                return
            cutoff = floor_to(now, DAY) - timedelta(days=settings.days)
            result.cutoff = cutoff
            batch = stored_before(audit, organization_id, cutoff, BATCH, READ_TIMEOUT_MS)
            if batch:
                # how far this batch goes, anchored before it deletes: verify excuses no
                # record past it (a hold, a failure, the tick's end may stop the purge here)
                last_id, last_stored = batch[-1]
                reached = (_aware(last_stored), str(last_id))
                if anchored.progress is None or reached > anchored.progress:
                    anchor.anchor_progress(organization_id, *reached)
                ids = [record_id for record_id, _ in batch]
                result.deleted += delete_records(audit, organization_id, ids)
            if len(batch) < BATCH:
                # every record stored before the cut-off is gone: so can their windows'
                # chunks and their days' counts be
                if anchored.purged_before is None or anchored.purged_before < cutoff:
                    anchor.anchor_purge(organization_id, cutoff)
                purge_window_chunks(audit, organization_id, cutoff)
                forget_before(audit, organization_id, cutoff)
                return
    result.more = True


def purge_all(
    app: Flask, now: datetime | None = None, *, only: ObjectId | None = None, by: str
) -> list[Purged] | None:
    """One pass over every organization (or one), under a lease so that one process purges
    at a time; None when another holds it. Each deletion is recorded in the organization's
    log (``auditLog.purge``; ``by``: ``command`` or ``background task``), a partial one too."""
    from .sealing import acquire_lease, release_lease

    holder = uuid.uuid4().hex
    if not acquire_lease(LEASE, holder, LEASE_SECONDS, app):
        return None
    try:
        now = now or utcnow()  # another moment: what a purge then would do (tests)
        results = []
        query = {"_id": only} if only is not None else {}
        organizations = get_db(app).organizations.find(query, {"_id": 1}).sort("_id", ASCENDING)
        for organization in organizations:
            purged = purge_organization(app, organization["_id"], now)
            if purged.deleted:
                log.info(
                    "Removed %d audit record(s) of %s stored before %s",
                    purged.deleted,
                    purged.organization_id,
                    purged.cutoff,
                )
                record_operator_command(
                    purged.organization_id,
                    "purge",
                    {"by": by},
                    action=PURGE,
                    deleted=purged.deleted,
                    storedBefore=purged.cutoff,
                    **({"error": purged.error} if purged.error else {}),
                )
            results.append(purged)
        return results
    finally:
        release_lease(LEASE, holder, app)


def background_purger(app: Flask) -> tuple[float, Callable[[], None]]:
    """A task for each process's background thread; the lease keeps it to one at a time."""

    def task() -> None:
        with app.app_context():
            purge_all(app, by="background task")

    return float(app.config["AUDIT_PURGE_INTERVAL"]), task


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _anchor(app: Flask) -> Anchor:
    return Anchor(app.config["AUDIT_ANCHOR_DIR"])
