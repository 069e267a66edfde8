"""Sealing and verifying from the app: settings, the background task, the cached state."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from flask import current_app
from pymongo.errors import DuplicateKeyError

from ...config import ConfigError
from ...db import TenantCollection, get_audit_db, get_db, stores
from ...ids import iso, utcnow
from ..actions import declare
from .anchor import Anchor
from .canonical import canonical_bytes
from .digests import DIGESTS, SealPolicy, Signer, VerifyReport, seal_all, verify_organization
from .merkle import CHECKPOINT_ACTION, Notary, latest_checkpoint
from .timestamps import Authority, authority_from_settings
from .timestamps import describe as describe_timestamp

log = logging.getLogger(__name__)
declare(CHECKPOINT_ACTION)

RECENT_WINDOWS = 24


def signer(app=None) -> Signer:
    return Signer((app or current_app).config["AUDIT_SIGNING_KEY"])


def anchor(app=None) -> Anchor:
    return Anchor((app or current_app).config["AUDIT_ANCHOR_DIR"])


def notary(app=None) -> Notary:
    """The checkpoints' Ed25519 signer (its key, like the digests', outside the database);
    made once per settings, not on every page that shows the public key."""
    config = (app or current_app).config
    return _notary(
        config["AUDIT_LOG_ORIGIN"], config["AUDIT_SIGNING_KEY"], config["AUDIT_CHECKPOINT_KEY"]
    )


@functools.lru_cache(maxsize=8)
def _notary(origin: str, signing_key: str, note_key: str | None) -> Notary:
    return Notary.from_settings(origin, signing_key, note_key)


def policy(app=None) -> SealPolicy:
    """The installation's sealing policy, from its settings."""
    config = (app or current_app).config
    return SealPolicy(
        signer=signer(app),
        interval=timedelta(minutes=config["AUDIT_SEAL_INTERVAL"]),
        delay=timedelta(seconds=config["AUDIT_SEAL_DELAY"]),
        anchor=anchor(app),
        notary=notary(app),
        timestamps=timestamp_authority(app),
    )


def timestamp_authority(app=None) -> Authority | None:
    """The RFC 3161 authority that stamps each checkpoint (``AUDIT_TSA_URL``), or None."""
    config = (app or current_app).config
    return _authority(config.get("AUDIT_TSA_URL"), config.get("AUDIT_TSA_CA_FILE"))


@functools.lru_cache(maxsize=8)
def _authority(url: str | None, ca_file: str | None) -> Authority | None:
    try:
        return authority_from_settings(url, ca_file)
    except ValueError as error:
        raise ConfigError(str(error)) from None


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
        return seal_all(
            get_db(),
            get_audit_db(),
            now,
            sealing,
            only=only,
            until=until,
            on_checkpoint=record_checkpoint,
        )


def record_checkpoint(organization_id, checkpoint: dict) -> None:
    """Write a new checkpoint into the organization's own log, so its audit streams deliver
    it and a SIEM keeps a copy outside this installation. Not for a tree that grew by such
    records alone: an idle organization gets no record per seal."""
    if not checkpoint.get("newRecords"):
        return
    # never into a window already sealed (a seal run with a clock ahead, as tests do):
    # the record would read as one inserted after sealing
    digests = TenantCollection(get_audit_db()[DIGESTS], ObjectId(organization_id))
    last = digests.find_one({}, {"windowEnd": 1}, sort=[("sequence", -1)])
    if last is not None and _aware(last["windowEnd"]) > datetime.now(UTC):
        return
    from ..capture.hooks import record_system_event

    record_system_event(
        organization_id,
        action=CHECKPOINT_ACTION,
        path="seal",
        details={
            "checkpoint": checkpoint["checkpoint"],
            "treeSize": checkpoint["treeSize"],
            "rootHash": checkpoint["rootHash"],
        },
    )


def verify(organization_id, *, start=None, end=None, last=None) -> VerifyReport:
    return verify_organization(
        get_audit_db(), organization_id, utcnow(), policy(), start=start, end=end, last=last
    )


STATES = "audit_integrity"
LEASES = "audit_leases"

# How much each verification proves: a weaker one never replaces what a stronger one found.
STRENGTH = {"error": 0, "recent": 1, "full": 2}
MAX_WINDOWS, MAX_PROBLEMS, MAX_WINDOW_PROBLEMS = 50, 50, 101
STATE_EDITED = {"type": "stateEdited", "message": "The stored verification was edited."}
# read-time problems an acknowledgement cannot cover: a verification ends them
NOT_ACKNOWLEDGEABLE = frozenset({"stale", "stateMissing"})


class NothingToAcknowledge(Exception):
    """The integrity state shows no failure an operator could acknowledge."""


@dataclass
class _Run:
    """What one verification found, as the stored state keeps it."""

    scope: str  # full, recent, or error (a verification that could not run)
    started_at: datetime | None
    problems: list[dict]  # of the chain as a whole
    windows: list[dict]  # the failed windows
    checked_windows: int = 0
    verified_up_to: str | None = None
    unsealed_records: int = 0

    @property
    def empty(self) -> bool:
        return not self.checked_windows and not self.problems


def store_state(organization_id, report: VerifyReport, scope: str, app=None) -> dict:
    """Keep the result of a verification, signed, for the pages and the API to read.

    A failure stays until a full verification that began after it was last found passes,
    or an operator acknowledges it (``acknowledge``): a check of the newest windows (scope
    ``recent``) adds what it finds and never removes anything. See ``_combine``.
    """
    run = _Run(
        scope,
        report.started_at,
        [dict(p) for p in report.chain_problems],
        [w.as_dict() for w in report.windows if w.status == "failed"],
        len(report.windows),
        iso(report.verified_up_to),
        report.unsealed_records,
    )
    return _update_state(organization_id, run, app)


def store_error(organization_id, error: Exception, attempted: str, app=None) -> dict:
    """A verification of scope ``attempted`` could not run: a failure that a later one of
    the same strength or stronger ends (and that never ends a failure found before)."""
    problem = {
        "type": "verifyError",
        "message": f"Verification could not run: {error}",
        "scope": attempted,
    }
    return _update_state(organization_id, _Run("error", None, [problem], []), app)


def acknowledge(organization_id, reason: str, by: str, app=None) -> tuple[dict, int]:
    """An operator acknowledges the failures the state shows now, with a reason: anchored
    (outside the database) first, then the stored state reads ``acknowledged`` as long as
    every problem found is one acknowledged. Returns the state and how many were covered."""
    app = _app(app)
    shown = integrity_state(organization_id)
    keys = sorted(
        key
        for key, problem in _keyed(shown)
        if not problem.get("acknowledged") and problem.get("type") not in NOT_ACKNOWLEDGEABLE
    )
    if shown.get("state") != "failed" or not keys:
        raise NothingToAcknowledge(
            "Nothing to acknowledge: the integrity state is "
            f"{shown.get('state')!r}"
            + (
                " and only a verification ends what it shows (run flask verify)."
                if shown.get("state") == "failed"
                else "."
            )
        )
    entry = {"at": iso(utcnow()), "by": by, "reason": reason, "problems": keys}
    anchor(app).anchor_acknowledgement(organization_id, entry)  # OSError: nothing changed
    return _update_state(organization_id, None, app), len(keys)


def _app(app):
    return app or current_app._get_current_object()


def _update_state(organization_id, run: _Run | None, app=None) -> dict:
    """Read the stored state, combine, and write it back only if nobody wrote in between.

    On MongoDB the write is conditional on the revision read (a concurrent writer's
    update makes ours match nothing, and we combine again with what it wrote); on
    mongomock and the embedded store, whose conditional updates match and write in two
    steps, the section also holds ``Store.exclusive``.

    The anchor never says "failed" while the database legitimately does not: the end of a
    failure is anchored before the database holds it, a failure once the database holds it
    (whoever rolls the database back after that is seen; a crash in between leaves the
    failure to be anchored by the next write). So a stored state that is not failed while
    the anchor says failed was put there by someone else, never by a concurrent writer.
    """
    app = _app(app)
    states = get_audit_db(app)[STATES]
    anchored = anchor(app)
    sign = signer(app)
    with stores(app)["audit"].exclusive(f"integrity-{organization_id}"):
        for _attempt in range(50):
            stored = states.find_one({"_id": organization_id})
            failure = _anchored_failure(anchored, organization_id)
            acks = _acknowledgements(anchored, organization_id)
            document = _combine(organization_id, stored, sign, run, failure, acks, utcnow())
            revision = stored.get("revision") if stored else None
            valid = isinstance(revision, int) and not isinstance(revision, bool)
            document["revision"] = (revision if valid and revision is not None else 0) + 1
            document["signature"] = sign.sign(_state_hash(document))
            failed = document["state"] == "failed"
            if not failed and failure is not None:
                by = "acknowledgement" if run is None else f"{run.scope} verification"
                _anchor(anchored.anchor_cleared, organization_id, by)
                failure = None
            if not _write_if_unchanged(states, organization_id, stored, document):
                continue
            if failed and failure is None:
                since = _parse_iso(document.get("failingSince"))
                _anchor(anchored.anchor_failure, organization_id, since)
            return document
    raise RuntimeError(f"The integrity state of {organization_id} kept changing; not stored.")


def _write_if_unchanged(states, organization_id, stored: dict | None, document: dict) -> bool:
    if stored is None:
        try:
            states.insert_one(document)
        except DuplicateKeyError:
            return False
        return True
    unchanged = {
        "_id": organization_id,
        "revision": stored.get("revision"),
        "signature": stored.get("signature"),
    }
    return states.replace_one(unchanged, document).matched_count == 1


def _anchor(write, organization_id, value) -> None:
    try:
        write(organization_id, value)
    except OSError as error:  # the database still holds the state; the reader says so
        log.error("Could not anchor the integrity state of %s: %s", organization_id, error)


def _anchored_failure(anchored: Anchor, organization_id) -> datetime | None:
    try:
        return anchored.failure(organization_id)
    except OSError as error:
        log.error("Could not read the anchored integrity state of %s: %s", organization_id, error)
        return None


def _acknowledgements(anchored: Anchor, organization_id) -> list[dict]:
    try:
        return anchored.acknowledgements(organization_id)
    except OSError as error:
        log.error("Could not read the acknowledgements of %s: %s", organization_id, error)
        return []


def _combine(
    organization_id,
    stored: dict | None,
    sign: Signer,
    run: _Run | None,
    failure: datetime | None,
    acknowledgements: list[dict],
    now: datetime,
) -> dict:
    """The state after ``run`` (None: an acknowledgement), from the state stored before.

    - A full verification replaces the stored problems, unless a failure was found after
      it began (it read the log before that failure was there, or was made).
    - Anything else adds what it finds to what is stored: a check of the newest windows
      cannot tell that an older window is fine. Only the error of a verification that
      could not run is ended by a later one at least as strong.
    - A stored state that is not validly signed, or that no longer shows the failure
      anchored outside the database (rolled back, removed), is itself a failure.
    - A problem an operator acknowledged does not fail the state: it reads
      ``acknowledged`` while every problem found has been acknowledged.
    """
    trusted = stored if stored is not None and _signed(sign, stored) else None
    bound = _latest(_parse_iso((trusted or {}).get("lastFailureAt")), failure)
    replace = (
        run is not None
        and run.scope == "full"
        and (bound is None or (run.started_at is not None and bound <= _aware(run.started_at)))
    )
    chain: list[dict] = []
    windows: dict[int, dict] = {}
    if trusted is not None and not replace:
        chain = [dict(p) for p in trusted.get("problems") or [] if isinstance(p, dict)]
        for window in trusted.get("failedWindows") or []:
            if isinstance(window, dict) and isinstance(window.get("sequence"), int):
                problems = [dict(p) for p in window.get("problems") or [] if isinstance(p, dict)]
                windows[window["sequence"]] = {**window, "problems": problems}
    if not replace:
        if stored is not None and trusted is None:
            _put(chain, dict(STATE_EDITED))
        if failure is not None and not _shows_failure(trusted):
            _put(chain, _erased(failure))
    if run is not None:
        if run.scope != "error":  # errors of checks no stronger than this one are over
            chain = [p for p in chain if not _superseded(p, run.scope)]
        # the newest messages of each type this run found (there may be several a type)
        found = {problem.get("type") for problem in run.problems}
        chain = [p for p in chain if p.get("type") not in found]
        chain += [dict(problem) for problem in run.problems]
        for window in run.windows:
            kept = windows.setdefault(window["sequence"], {**window, "problems": []})
            kept.update({k: v for k, v in window.items() if k != "problems"})
            seen = {_problem_key(p, kept["sequence"]) for p in kept["problems"]}
            for problem in window["problems"]:
                if _problem_key(problem, kept["sequence"]) not in seen:
                    kept["problems"].append(dict(problem))
    failed_windows = [windows[sequence] for sequence in sorted(windows)][:MAX_WINDOWS]
    for window in failed_windows:
        window["problems"] = window["problems"][:MAX_WINDOW_PROBLEMS]
    chain = chain[:MAX_PROBLEMS]

    acknowledged = {
        key for entry in acknowledgements for key in entry["problems"] if isinstance(key, str)
    }
    covering: list[dict] = []
    everything = list(_keyed({"problems": chain, "failedWindows": failed_windows}))
    for key, problem in everything:
        problem.pop("acknowledged", None)
        if key in acknowledged:
            problem["acknowledged"] = True
    for entry in acknowledgements:
        if any(
            problem.get("acknowledged") and key in entry["problems"] for key, problem in everything
        ):
            covering.append(
                {
                    "at": str(entry.get("at")),
                    "by": str(entry.get("by")),
                    "reason": str(entry.get("reason")),
                    "problems": len(entry["problems"]),
                }
            )
    unacknowledged = [p for _, p in everything if not p.get("acknowledged")]
    if unacknowledged:
        state = "failed"
    elif everything:
        state = "acknowledged"
    elif run is not None and run.empty:
        state = "unsealed"
    else:
        state = "verified"

    previous = trusted or {}
    was_failing = previous.get("state") == "failed" and _parse_iso(previous.get("failingSince"))
    found_now = run is not None and any(
        key not in acknowledged
        for key, _ in _keyed({"problems": run.problems, "failedWindows": run.windows})
    )
    if run is None:
        scope, checked_at = previous.get("scope"), previous.get("checkedAt") or iso(now)
        checked, verified_up_to = previous.get("checkedWindows", 0), previous.get("verifiedUpTo")
        unsealed = previous.get("unsealedRecords", 0)
    else:
        scope, checked_at = run.scope, iso(now)
        checked, verified_up_to, unsealed = (
            run.checked_windows,
            run.verified_up_to,
            run.unsealed_records,
        )
        if state == "failed" and not replace and trusted is not None:
            verified_up_to = _earliest(previous.get("verifiedUpTo"), verified_up_to)
    return {
        "_id": organization_id,
        "organizationId": organization_id,
        "state": state,
        "scope": scope,
        "verifiedUpTo": verified_up_to,
        "checkedWindows": checked,
        "problems": chain,
        "failedWindows": failed_windows,
        "unsealedRecords": unsealed,
        "checkedAt": checked_at,
        # since when it has failed (anchored); when a verification last found a failure;
        # when every window was last verified
        "failingSince": (previous["failingSince"] if was_failing else iso(now))
        if state == "failed"
        else None,
        "lastFailureAt": iso(now)
        if found_now
        else (previous.get("lastFailureAt") if not replace else None),
        "lastFullAt": iso(now)
        if run is not None and run.scope == "full"
        else previous.get("lastFullAt"),
        "acknowledgements": covering[-10:],
    }


def _signed(sign: Signer, stored: dict) -> bool:
    return sign.valid(_state_hash(stored), stored.get("signature"))


def _superseded(problem: dict, scope: str) -> bool:
    """An error of a verification that could not run, ended by one of ``scope``."""
    if problem.get("type") != "verifyError":
        return False
    attempted = problem.get("scope")
    return STRENGTH[scope] >= STRENGTH.get(attempted if isinstance(attempted, str) else "", 2)


def _put(chain: list[dict], problem: dict) -> None:
    """A problem of the chain, replacing the one of its type (the newest message)."""
    for index, existing in enumerate(chain):
        if existing.get("type") == problem.get("type"):
            chain[index] = problem
            return
    chain.append(problem)


def _erased(failure: datetime) -> dict:
    return {
        "type": "failureErased",
        "message": f"A verification found a failure on {iso(failure)} (anchored outside the "
        "database), and the stored state no longer shows it: it was rolled back, edited or "
        "removed in the database.",
    }


def _shows_failure(state: dict | None) -> bool:
    """Whether a stored state shows a failure, as it must while one is anchored (any
    failure will do: an older one put back still reads as failed, and concurrent writers
    each find one at their own moment)."""
    return state is not None and state.get("state") == "failed"


def _problem_key(problem: dict, sequence: int | None = None) -> str:
    """What an acknowledgement names: a window's problem by its record (or message), a
    problem of the chain by its message."""
    kind = problem.get("type")
    if sequence is None:
        return f"chain:{kind}:{problem.get('message')}"
    return f"window:{sequence}:{kind}:{problem.get('recordId') or problem.get('message')}"


def _keyed(state: dict):
    for problem in state.get("problems") or []:
        yield _problem_key(problem), problem
    for window in state.get("failedWindows") or []:
        for problem in window.get("problems") or []:
            yield _problem_key(problem, window.get("sequence")), problem


def _latest(*moments: datetime | None) -> datetime | None:
    known = [_aware(m) for m in moments if m is not None]
    return max(known) if known else None


def _earliest(one: str | None, other: str | None) -> str | None:
    """The earlier of two 'verified up to' (none verified is the earliest)."""
    first, second = _parse_iso(one), _parse_iso(other)
    if first is None or second is None:
        return None
    return one if first <= second else other


def _state_hash(document: dict) -> str:
    payload = {k: v for k, v in document.items() if k != "signature"}
    return hashlib.sha256(canonical_bytes(payload)).hexdigest()


def integrity_state(organization_id) -> dict:
    """The state shown to viewAuditLog holders (``_verified_state``), with the verifiable
    log's latest signed checkpoint: how many records an outsider can check, and by which key.
    """
    state = _verified_state(organization_id)
    state["verifiableLog"] = _verifiable_log(organization_id)
    return state


def _verifiable_log(organization_id) -> dict:
    latest = latest_checkpoint(get_audit_db(), organization_id)
    return {
        "treeSize": int(latest["treeSize"]) if latest else 0,
        "rootHash": latest["rootHash"] if latest else None,
        "checkpointAt": iso(latest["createdAt"]) if latest else None,
        "publicKey": str(notary().verifier_key),
        "timestamp": describe_timestamp(latest.get("timestamp")) if latest else None,
    }


def _verified_state(organization_id) -> dict:
    """The stored result of the verifications.

    No request re-hashes records: the background task (and ``flask seal`` / ``verify``)
    verifies and stores; this reads one document, checks its signature, and checks it
    still shows the failure anchored outside the database, if one is.
    """
    db = get_audit_db()
    stored = db[STATES].find_one({"_id": organization_id})
    failure = _anchored_failure(anchor(), organization_id)
    if stored is None:
        if failure is not None:
            return _failed_with(_erased(failure))
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
        state = _failed_with(dict(STATE_EDITED))
        if failure is not None:
            state["problems"].append(_erased(failure))
        return state
    hidden = ("_id", "organizationId", "signature", "revision")
    state = {k: v for k, v in stored.items() if k not in hidden}
    if failure is not None and not _shows_failure(stored):
        return {**state, "state": "failed", "problems": [_erased(failure), *state["problems"]]}
    checked = _parse_iso(stored.get("checkedAt"))
    fresh = checked is not None and checked + _freshness() >= utcnow()
    if state["state"] in ("verified", "acknowledged") and not fresh:
        # an old signed result put back (or sealing stopped): not a proof of anything now
        return _unverified("stale", f"The last verification is from {stored.get('checkedAt')}.")
    return state


def _unverified(kind: str, message: str) -> dict:
    return _failed_with({"type": kind, "message": message})


def _failed_with(problem: dict) -> dict:
    return {
        "state": "failed",
        "verifiedUpTo": None,
        "checkedWindows": 0,
        "problems": [problem],
        "failedWindows": [],
    }


def _freshness() -> timedelta:
    """How old a stored 'verified' may be: sealing (hence verifying) runs every window."""
    config = current_app.config
    interval = timedelta(minutes=config["AUDIT_SEAL_INTERVAL"])
    return 2 * (interval + timedelta(seconds=config["AUDIT_SEAL_DELAY"])) + interval / 4


def _parse_iso(text) -> datetime | None:
    if isinstance(text, datetime):
        return _aware(text)
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _aware(moment)


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


class SealerBusy(Exception):
    """Another process held the sealer's lease for longer than a command waits."""


COMMAND_WAIT_SECONDS = 30.0
COMMAND_LEASE_SECONDS = 120  # renewed every third of it: a crashed command blocks 2 min


@contextlib.contextmanager
def sealing_alone(app=None, wait: float | None = None) -> Iterator[None]:
    """The sealer's lease for a command (``flask seal``, ``flask verify``): it never seals
    or verifies while the background task (or another command) is sealing. Verified
    half-way through another's seal, an organization's windows read as ones that should
    have been sealed and are not, and that false failure became its stored state. Waits
    up to ``COMMAND_WAIT_SECONDS`` for the lease, then raises SealerBusy."""
    holder = f"command-{uuid.uuid4().hex}"
    deadline = time.monotonic() + (COMMAND_WAIT_SECONDS if wait is None else wait)
    while not acquire_lease("sealer", holder, COMMAND_LEASE_SECONDS, app):
        if time.monotonic() >= deadline:
            raise SealerBusy(
                "Another process is sealing right now (the background task, or another "
                "command); try again later."
            )
        time.sleep(0.2)
    try:
        with _renewed("sealer", holder, COMMAND_LEASE_SECONDS, _app(app)):
            yield
    finally:
        release_lease("sealer", holder, app)


@contextlib.contextmanager
def _renewed(name: str, holder: str, seconds: float, app) -> Iterator[None]:
    """A lease held is renewed every third of its length while the block runs: a seal longer
    than the lease (a backlog, a slow timestamp authority) must not let another sealer in
    half-way, and a process that died holds it ``seconds`` at most."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(seconds / 3):
            try:
                with app.app_context():
                    if not acquire_lease(name, holder, seconds, app):
                        log.warning("The %s lease was lost to another process", name)
            except Exception:
                log.exception("Renewing the %s lease failed", name)

    renewer = threading.Thread(target=renew, name=f"{name}-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()


def seal_and_verify(app, holder: str) -> dict | None:
    """One sealer at a time: seal what has closed, verify the newest windows of the
    organizations that got digests, and now and then every window of every organization."""
    seconds = background_lease_seconds(app.config)
    with app.app_context():
        if not acquire_lease("sealer", holder, seconds, app):
            return None
        try:
            with _renewed("sealer", holder, seconds, app):
                return _seal_and_verify(app)
        finally:
            release_lease("sealer", holder, app)


def background_lease_seconds(config) -> float:
    """The background sealer's lease: twice its pass's interval (renewed while it runs)."""
    return 2 * max(60.0, config["AUDIT_SEAL_INTERVAL"] * 60 / 4)


def _seal_and_verify(app) -> dict:
    written = seal_now(app)
    full_due = _full_pass_due(app)
    for key, count in written.items():
        organization_id = ObjectId(key)
        try:
            if full_due:
                store_state(organization_id, verify(organization_id), "full", app)
            elif count or get_audit_db(app)[STATES].find_one({"_id": organization_id}) is None:
                report = verify(organization_id, last=RECENT_WINDOWS)
                store_state(organization_id, report, "recent", app)
        except Exception as error:
            log.exception("Verifying organization %s failed", key)
            store_error(organization_id, error, "full" if full_due else "recent", app)
    if full_due:
        get_audit_db(app)[LEASES].replace_one(
            {"_id": "full-verification"},
            {"_id": "full-verification", "at": utcnow()},
            upsert=True,
        )
    return written


def _full_pass_due(app) -> bool:
    """Whether every window is due to be verified. The mark is in the database: one set
    ahead (someone who can write it, keeping full passes from running so that only the
    newest windows are checked) makes the pass due, as a missing or odd one does."""
    last = get_audit_db(app)[LEASES].find_one({"_id": "full-verification"})
    at = last.get("at") if last else None
    if not isinstance(at, datetime):
        return True
    every = timedelta(seconds=app.config["AUDIT_VERIFY_INTERVAL"])
    now = utcnow()
    return _aware(at) > now + FUTURE_MARGIN or _aware(at) + every <= now


FUTURE_MARGIN = timedelta(minutes=5)


def _aware(moment):
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def background_sealer(app):
    """A task for each process's background thread: seal and verify under one lease."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def task():
        seal_and_verify(app, holder)

    interval = max(60.0, app.config["AUDIT_SEAL_INTERVAL"] * 60 / 4)
    return interval, task
