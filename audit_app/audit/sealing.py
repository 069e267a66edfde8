"""Sealing and verifying from the app: settings, the background task, the cached state."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from flask import current_app
from pymongo.errors import DuplicateKeyError

from ..db import get_audit_db, get_db, stores
from ..ids import iso, utcnow
from .anchor import Anchor
from .canonical import canonical_bytes
from .integrity import (
    DIGESTS,
    SealPolicy,
    Signer,
    VerifyReport,
    seal_all,
    verify_organization,
)

log = logging.getLogger(__name__)

RECENT_WINDOWS = 24


def signer(app=None) -> Signer:
    return Signer((app or current_app).config["AUDIT_SIGNING_KEY"])


def anchor(app=None) -> Anchor:
    return Anchor((app or current_app).config["AUDIT_ANCHOR_DIR"])


def policy(app=None) -> SealPolicy:
    """The installation's sealing policy, from its settings."""
    config = (app or current_app).config
    return SealPolicy(
        signer=signer(app),
        interval=timedelta(minutes=config["AUDIT_SEAL_INTERVAL"]),
        delay=timedelta(seconds=config["AUDIT_SEAL_DELAY"]),
        anchor=anchor(app),
    )


UP_TO_NOW_MARGIN = timedelta(seconds=5)


def seal_now(app, only=None, up_to_now: bool = False) -> dict:
    """Seal every closed window (of one organization, or all).

    ``up_to_now`` also seals the open window up to a few seconds ago (``flask seal --now``),
    for a walkthrough or before a hand-over; a record still in flight could then miss it.
    """
    with app.app_context():
        now = utcnow()
        sealing = policy(app)
        if up_to_now:
            sealing = replace(sealing, delay=min(sealing.delay, UP_TO_NOW_MARGIN))
        until = now - sealing.delay if up_to_now else None
        return seal_all(get_db(), get_audit_db(), now, sealing, only=only, until=until)


def verify(organization_id, *, start=None, end=None, last=None) -> VerifyReport:
    return verify_organization(
        get_audit_db(), organization_id, utcnow(), policy(), start=start, end=end, last=last
    )


STATES = "audit_integrity"
LEASES = "audit_leases"


def store_state(organization_id, report: VerifyReport, scope: str, app=None) -> dict:
    """Keep the result of a verification, signed, for the pages and the API to read."""
    if not report.windows and not report.chain_problems:
        state = "unsealed"
    else:
        state = "failed" if not report.ok else "verified"
    failed = [w.as_dict() for w in report.windows if w.status == "failed"]
    document = {
        "_id": organization_id,
        "organizationId": organization_id,
        "state": state,
        "scope": scope,
        "verifiedUpTo": report.as_dict()["verifiedUpTo"],
        "checkedWindows": len(report.windows),
        "problems": report.chain_problems[:50],
        "failedWindows": failed[:50],
        "unsealedRecords": report.unsealed_records,
        "checkedAt": iso(utcnow()),
    }
    document["signature"] = signer(app).sign(_state_hash(document))
    get_audit_db(app)[STATES].replace_one({"_id": organization_id}, document, upsert=True)
    return document


def _state_hash(document: dict) -> str:
    payload = {k: v for k, v in document.items() if k != "signature"}
    return hashlib.sha256(canonical_bytes(payload)).hexdigest()


def integrity_state(organization_id) -> dict:
    """The state shown to viewAuditLog holders: the stored result of the last verification.

    No request re-hashes records: the background task (and ``flask seal`` / ``verify``)
    verifies and stores; this reads one document and checks its signature.
    """
    db = get_audit_db()
    stored = db[STATES].find_one({"_id": organization_id})
    if stored is None:
        if db[DIGESTS].find_one({"organizationId": organization_id}, {"_id": 1}) is None:
            return {
                "state": "unsealed",
                "verifiedUpTo": None,
                "checkedWindows": 0,
                "problems": [],
                "failedWindows": [],
            }
        return _unverified("stateMissing", "The stored verification is missing (deleted?).")
    if not signer().valid(_state_hash(stored), stored.get("signature")):
        return {
            "state": "failed",
            "verifiedUpTo": None,
            "checkedWindows": 0,
            "problems": [{"type": "stateEdited", "message": "The stored verification was edited."}],
            "failedWindows": [],
        }
    state = {k: v for k, v in stored.items() if k not in ("_id", "organizationId", "signature")}
    checked = _parse_iso(stored.get("checkedAt"))
    if state["state"] == "verified" and (checked is None or checked + _freshness() < utcnow()):
        # an old signed result put back (or sealing stopped): not a proof of anything now
        return _unverified("stale", f"The last verification is from {stored.get('checkedAt')}.")
    return state


def _unverified(kind: str, message: str) -> dict:
    return {
        "state": "failed",
        "verifiedUpTo": None,
        "checkedWindows": 0,
        "problems": [{"type": kind, "message": message}],
        "failedWindows": [],
    }


def _freshness() -> timedelta:
    """How old a stored 'verified' may be: sealing (hence verifying) runs every window."""
    config = current_app.config
    interval = timedelta(minutes=config["AUDIT_SEAL_INTERVAL"])
    return 2 * (interval + timedelta(seconds=config["AUDIT_SEAL_DELAY"])) + interval / 4


def _parse_iso(text):
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def acquire_lease(name: str, holder: str, seconds: float, app=None) -> bool:
    """Hold a named lease for a while, across processes and hosts; False if another holds it."""
    leases = get_audit_db(app)[LEASES]
    now = utcnow()
    lease = {"holder": holder, "expiresAt": now + timedelta(seconds=seconds)}
    with stores(app)["audit"].exclusive(f"lease-{name}"):
        try:
            leases.insert_one({"_id": name, **lease})
            return True
        except DuplicateKeyError:
            taken = leases.find_one_and_update(
                {"_id": name, "$or": [{"expiresAt": {"$lte": now}}, {"holder": holder}]},
                {"$set": lease},
            )
            return taken is not None


def release_lease(name: str, holder: str, app=None) -> None:
    get_audit_db(app)[LEASES].delete_one({"_id": name, "holder": holder})


def seal_and_verify(app, holder: str) -> dict | None:
    """One sealer at a time: seal what has closed, verify the newest windows of the
    organizations that got digests, and now and then every window of every organization."""
    config = app.config
    interval = max(60.0, config["AUDIT_SEAL_INTERVAL"] * 60 / 4)
    with app.app_context():
        if not acquire_lease("sealer", holder, interval * 2, app):
            return None
        try:
            written = seal_now(app)
            full_due = _full_pass_due(app)
            for key, count in written.items():
                organization_id = ObjectId(key)
                try:
                    if full_due:
                        store_state(organization_id, verify(organization_id), "full", app)
                    elif (
                        count
                        or get_audit_db(app)[STATES].find_one({"_id": organization_id}) is None
                    ):
                        report = verify(organization_id, last=RECENT_WINDOWS)
                        store_state(organization_id, report, "recent", app)
                except Exception as error:
                    log.exception("Verifying organization %s failed", key)
                    failed = VerifyReport()
                    failed.fail("verifyError", f"Verification could not run: {error}")
                    store_state(organization_id, failed, "error", app)
            if full_due:
                get_audit_db(app)[LEASES].replace_one(
                    {"_id": "full-verification"},
                    {"_id": "full-verification", "at": utcnow()},
                    upsert=True,
                )
            return written
        finally:
            release_lease("sealer", holder, app)


def _full_pass_due(app) -> bool:
    last = get_audit_db(app)[LEASES].find_one({"_id": "full-verification"})
    every = timedelta(seconds=app.config["AUDIT_VERIFY_INTERVAL"])
    return last is None or _aware(last["at"]) + every <= utcnow()


def _aware(moment):
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def background_sealer(app):
    """A task for each process's background thread: seal and verify under one lease."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def task():
        seal_and_verify(app, holder)

    interval = max(60.0, app.config["AUDIT_SEAL_INTERVAL"] * 60 / 4)
    return interval, task
