"""Sealing and verifying from the app: settings, the background task, the cached state."""

from __future__ import annotations

import time
from datetime import timedelta

from flask import current_app

from ..db import get_audit_db, get_db
from ..ids import utcnow
from .anchor import Anchor
from .integrity import Signer, VerifyReport, seal_all, verify_organization

STATE_TTL_SECONDS = 60
RECENT_WINDOWS = 24


def signer(app=None) -> Signer:
    return Signer((app or current_app).config["AUDIT_SIGNING_KEY"])


def anchor(app=None) -> Anchor:
    return Anchor((app or current_app).config["AUDIT_ANCHOR_DIR"])


UP_TO_NOW_MARGIN = timedelta(seconds=5)


def seal_now(app, only=None, up_to_now: bool = False) -> dict:
    """Seal every closed window (of one organization, or all).

    ``up_to_now`` also seals the open window up to a few seconds ago (``flask seal --now``),
    for a walkthrough or before a hand-over; a record still in flight could then miss it.
    """
    with app.app_context():
        config = app.config
        now = utcnow()
        delay = timedelta(seconds=config["AUDIT_SEAL_DELAY"])
        if up_to_now:
            delay = min(delay, UP_TO_NOW_MARGIN)
        return seal_all(
            get_db(),
            get_audit_db(),
            now,
            timedelta(minutes=config["AUDIT_SEAL_INTERVAL"]),
            delay,
            signer(app),
            only=only,
            until=now - delay if up_to_now else None,
            anchor=anchor(app),
        )


def verify(organization_id, *, start=None, end=None, last=None) -> VerifyReport:
    config = current_app.config
    return verify_organization(
        get_audit_db(),
        organization_id,
        signer(),
        utcnow(),
        config["AUDIT_RETENTION_DAYS"],
        start=start,
        end=end,
        last=last,
        anchor=anchor(),
        seal_interval=timedelta(minutes=config["AUDIT_SEAL_INTERVAL"]),
        seal_delay=timedelta(seconds=config["AUDIT_SEAL_DELAY"]),
    )


def integrity_state(organization_id) -> dict:
    """The state shown to viewAuditLog holders: the last windows verified, cached a minute."""
    cache = current_app.extensions.setdefault("audit_app.integrity_state", {})
    cached = cache.get(organization_id)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    report = verify(organization_id, last=RECENT_WINDOWS)
    if not report.windows:
        state = {"state": "unsealed", "verifiedUpTo": None, "checkedWindows": 0, "problems": []}
    else:
        failed = [w.as_dict() for w in report.windows if w.status == "failed"]
        state = {
            "state": "failed" if failed else "verified",
            "verifiedUpTo": report.as_dict()["verifiedUpTo"],
            "checkedWindows": len(report.windows),
            "problems": failed,
            "unsealedRecords": report.unsealed_records,
        }
    cache[organization_id] = (time.monotonic() + STATE_TTL_SECONDS, state)
    return state


def background_sealer(app):
    """A task for each process's background thread: seal what has closed, at most every minute."""

    def task():
        seal_now(app)

    interval = max(60.0, app.config["AUDIT_SEAL_INTERVAL"] * 60 / 4)
    return interval, task
