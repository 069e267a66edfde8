"""The write path: every record lands in the audit store, or durably in the spool.

Policy (also in docs/audit-schema.md and the README):

- The record is written before the response is sent, with a bounded time
  (``AUDIT_WRITE_TIMEOUT_MS``, pymongo's client-side timeout on a real server).
- If the store fails or is too slow, the record goes to the spool (fsync'd) and the store
  is skipped for ``STORE_RETRY_SECONDS``, so an outage does not slow every request down.
- Each process's background runner (``background.py``) replays the spool as soon as it
  starts and every ``AUDIT_REPLAY_INTERVAL`` seconds; ``flask replay-spool`` does the same
  by hand.
- Before a spooled record is inserted, its id and times go to the anchor's replay ledger
  (``Anchor.anchor_replayed``, outside the database): only a record found there may say it
  waited in the spool (``spooledAt``) to explain a late ``storedAt``. If the ledger cannot
  be written, the record stays in the spool and the replay pauses, as when the store fails.
- If the spool cannot be written either, the record is written to the error log as one
  ``AUDIT_RECORD_UNSPOOLED`` line of Extended JSON (recoverable from the logs), and
  ``/readyz`` answers 503 so the load balancer moves traffic away. The response itself is
  never turned into an error by the audit path.

The journal write mode (``AUDIT_WRITE_MODE=journal``, the embedded store's default) takes
the store off the request's path: the record is appended to the local journal
(``journal.py``, one ``write``, no ``fsync``) and a folder stores the journal's records in
batches (``fold``), each batch one ``insert_many`` (on the embedded store one
transaction), at most ``AUDIT_FOLD_INTERVAL_MS`` later. ``storedAt`` is then the fold's
time. A batch the store refuses goes to the spool, and from there as above; a record that
waited in the journal longer than ``JOURNAL_LATE`` (its process was killed and nothing
folded for a while) goes through the spool too, so that the replay ledger confirms its
wait. If the journal cannot be written, the record is written as in the sync mode.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pymongo
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from ...ids import utcnow
from ..integrity.anchor import Anchor
from ..store.counters import HourlyTally
from ..store.repository import COLLECTION, confirm_stored, insert_record, insert_records
from .journal import Entry, FoldResult, Journal
from .spool import ReplayResult, Spool, dumps

log = logging.getLogger("audit_app.audit")

STORE_RETRY_SECONDS = 5.0
# a record handed off to the journal longer ago than this is stored through the spool, so
# that the replay ledger confirms its wait (verification names a record stored more than
# integrity.STORE_LAG after it was received, unless the ledger explains it)
JOURNAL_LATE = timedelta(seconds=60)
# the background fold leaves the work to an idle process (another gunicorn worker) while
# this one serves requests, at most this many intervals in a row
FOLD_DEFERRALS = 4


def write_mode(configured: str | None, store_kind: str) -> str:
    """``AUDIT_WRITE_MODE``, or the store's default: the journal on the embedded store
    (its volume is the store's, so a record in the journal is as safe as one committed),
    sync elsewhere (on MongoDB the record is on a majority before the response, which a
    local file on a volume that may not be durable is not)."""
    mode = (configured or "").strip().lower() or ("journal" if store_kind == "embedded" else "sync")
    if mode not in ("sync", "journal"):
        raise ValueError(f"AUDIT_WRITE_MODE must be sync or journal, got {configured!r}")
    return mode


class NotYetDurable(Exception):
    """A spooled record is in the store, but not yet on a majority: keep its spool entry."""

    def __init__(self, record_id):
        super().__init__(f"record {record_id} is stored but not yet majority-committed")


class AuditWriter:
    def __init__(
        self,
        store,
        spool: Spool,
        *,
        timeout_ms: int,
        write_concern=None,
        anchor: Anchor | None = None,
        journal: Journal | None = None,
    ):
        self.store = store
        self.spool = spool
        # the journal write mode: records handed off there, folded in batches (None: sync)
        self.journal = journal
        self._fold_skip_until = 0.0
        self._in_flight = 0  # this process's requests being served (the fold's idleness)
        self._in_flight_lock = threading.Lock()
        self._deferred = 0
        # the replay ledger's home (None: no record is confirmed as replayed, so a long
        # wait in the spool reads as a time no request explains)
        self.anchor = anchor
        self.timeout = timeout_ms / 1000
        self.write_concern = write_concern
        self._skip_store_until = 0.0
        self._replay_lock = threading.Lock()
        self.tally = HourlyTally()  # the activity chart's counts, added to the store in batches
        self.last_spool_error: str | None = None
        self.stats = {"stored": 0, "spooled": 0, "unspooled": 0, "journaled": 0, "folded": 0}
        self.last_journal_error: str | None = None

    # Writing ----------------------------------------------------------------------

    def close(self) -> None:
        """Let go of what the writer holds open (the journal's file)."""
        if self.journal is not None:
            self.journal.close()

    @property
    def mode(self) -> str:
        return "sync" if self.journal is None else "journal"

    def write(self, record: dict, *, sync: bool = False) -> str:
        """Persist one record; return where it went: journaled, stored, spooled or logged.

        ``sync``: into the store now, whatever the mode (an operator's command, whose
        process ends when it has answered)."""
        if self.journal is not None and not sync:
            try:
                self.journal.append(record)
                self.stats["journaled"] += 1
                self.last_journal_error = None
                return "journaled"
            except OSError as error:  # the journal's disk: the store itself, as in sync mode
                self.last_journal_error = f"{type(error).__name__}: {error}"
                log.warning("Audit journal not writable (%s); storing directly", error)
        if time.monotonic() >= self._skip_store_until:
            record["storedAt"] = utcnow()  # the sealing window this record belongs to
            try:
                with pymongo.timeout(self.timeout):
                    insert_record(self.store.db, record, self.write_concern)
                self.stats["stored"] += 1
                self.tally.add(record)
                return "stored"
            except DuplicateKeyError:
                return "stored"
            except Exception as error:  # noqa: BLE001 - any store failure: spool, never raise
                self._skip_store_until = time.monotonic() + STORE_RETRY_SECONDS
                log.warning(
                    "Audit store write failed (%s: %s); spooling records",
                    type(error).__name__,
                    error,
                )
        try:
            self.spool.append(record)
            self.last_spool_error = None
            self.stats["spooled"] += 1
            return "spooled"
        except OSError as error:
            self.last_spool_error = f"{type(error).__name__}: {error}"
            self.stats["unspooled"] += 1
            log.critical(
                "AUDIT_RECORD_UNSPOOLED requestId=%s %s", record.get("requestId"), dumps(record)
            )
            return "logged"

    # Folding the journal ------------------------------------------------------------

    def request_started(self) -> None:
        with self._in_flight_lock:
            self._in_flight += 1

    def request_ended(self) -> None:
        with self._in_flight_lock:
            self._in_flight = max(0, self._in_flight - 1)

    def fold_in_background(self) -> FoldResult:
        """The background lane's fold: while this process serves requests, leave the work
        to an idle one (the records wait at most ``FOLD_DEFERRALS`` + 1 intervals), so a
        busy worker's requests do not share its CPU and its GIL with the fold."""
        if self._in_flight > 0 and self._deferred < FOLD_DEFERRALS:
            self._deferred += 1
            return FoldResult()
        self._deferred = 0
        return self.fold()

    def fold(self, *, wait: bool = False, reader: bool = False) -> FoldResult:
        """Store what waits in the journal (the background lane ``journal``; ``wait``: wait
        for a fold in progress elsewhere; ``reader``: for a read of the log, which also
        stores what another process's fold sent to the spool)."""
        if self.journal is None or (not wait and time.monotonic() < self._fold_skip_until):
            return FoldResult()

        def then(result: FoldResult) -> None:
            # under the fold lock, so that a reader waiting for this fold finds them stored:
            # what this fold sent through the spool (records that waited long: the ledger
            # confirms their wait), and for a reader, what another process's fold spooled
            storable = time.monotonic() >= self._skip_store_until
            if (result.spooled or reader) and storable and self.spool.pending_files():
                self.replay()

        return self.journal.fold(self._fold_batch, wait=wait or reader, then=then)

    def _fold_batch(self, entries: list[Entry]) -> tuple[int, int, int]:
        now = utcnow()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as stored
        fresh, late = [], []
        for entry in entries:
            record = entry.record
            if now - entry.handed_off > JOURNAL_LATE:
                record.setdefault("spooledAt", entry.handed_off)
                late.append(record)
            else:
                record["storedAt"] = now  # the sealing window still open
                fresh.append(record)
        # (no request waits on a fold: the store is tried even while this process skips it
        # for its own requests' sake; a batch it refuses goes to the spool below)
        stored = duplicates = 0
        if fresh:
            try:
                stored, duplicates = self._insert_fresh(fresh)
            except Exception as error:  # noqa: BLE001 - any store failure: to the spool
                self._skip_store_until = time.monotonic() + STORE_RETRY_SECONDS
                log.warning(
                    "Audit store refused a batch of the journal (%s: %s); spooling it",
                    type(error).__name__,
                    error,
                )
                for record in fresh:
                    record.pop("storedAt", None)
                late += fresh
        if late:
            try:
                self.spool.append_many(late)  # OSError: the journal file is kept
            except OSError as error:
                self.last_spool_error = f"{type(error).__name__}: {error}"
                self._fold_skip_until = time.monotonic() + STORE_RETRY_SECONDS
                raise
            self.stats["spooled"] += len(late)
        self.stats["folded"] += stored
        return stored, duplicates, len(late)

    def _insert_fresh(self, records: list[dict]) -> tuple[int, int]:
        # as a request's own insert is bounded: stored well within the streams' settle time
        # after the storedAt it was given (a stream reads up to AUDIT_STREAM_SETTLE_SECONDS
        # ago, so a batch committed later than that could be passed over)
        with pymongo.timeout(self.timeout):
            already = insert_records(self.store.db, records, self.write_concern)
            if already and isinstance(self.store.db[COLLECTION], Collection):
                # MongoDB: a copy exists, but one a failover may still roll back unless a
                # majority holds it; then the journal file stays for the next fold
                for index in already:
                    if not confirm_stored(self.store.db, records[index]):
                        raise NotYetDurable(records[index]["_id"])
        for index, record in enumerate(records):
            if index not in already:
                self.tally.add(record)
        return len(records) - len(already), len(already)

    # Replaying --------------------------------------------------------------------

    def replay(self) -> ReplayResult:
        """Move spooled records into the store; idempotent."""
        with self._replay_lock:

            def insert(record):
                # a late record falls in a window still open; to the millisecond, as
                # stored, so that the ledger's entry matches the record read back
                now = utcnow()
                record["storedAt"] = now.replace(microsecond=now.microsecond // 1000 * 1000)
                if self.anchor is not None and "spooledAt" in record:
                    self.anchor.anchor_replayed(record)  # OSError: kept in the spool
                with pymongo.timeout(max(self.timeout, 10)):
                    try:
                        insert_record(self.store.db, record, self.write_concern)
                        self.tally.add(record)
                    except DuplicateKeyError:
                        # stored before; the entry goes only once a majority holds it
                        if not confirm_stored(self.store.db, record):
                            raise NotYetDurable(record["_id"]) from None
                        # by a write whose answer came too late, so never counted (or by a
                        # replay that crashed before dropping the entry: counted twice)
                        self.tally.add(record)
                        raise

            result = self.spool.replay(insert)
        if result.stored or result.duplicates:
            log.info("Replayed spooled audit records: %s", result.as_dict())
        if (result.stored or result.duplicates) and not result.errors:
            # the store took records again: stop skipping it. An empty replay proves
            # nothing (the start-up replay racing a failing request must not undo its skip)
            self._skip_store_until = 0.0
        return result

    def flush_counts(self) -> None:
        """Add the tally of this process to the store's counts (background task, exit)."""
        self.tally.flush(self.store.db)

    def replay_if_pending(self) -> None:
        if self.spool.pending_files():
            self.replay()
