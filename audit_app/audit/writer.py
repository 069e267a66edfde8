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
"""

from __future__ import annotations

import logging
import threading
import time

import pymongo
from pymongo.errors import DuplicateKeyError

from ..ids import utcnow
from .anchor import Anchor
from .counters import HourlyTally
from .repository import confirm_stored, insert_record
from .spool import ReplayResult, Spool, dumps

log = logging.getLogger("audit_app.audit")

STORE_RETRY_SECONDS = 5.0


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
    ):
        self.store = store
        self.spool = spool
        # the replay ledger's home (None: no record is confirmed as replayed, so a long
        # wait in the spool reads as a time no request explains)
        self.anchor = anchor
        self.timeout = timeout_ms / 1000
        self.write_concern = write_concern
        self._skip_store_until = 0.0
        self._replay_lock = threading.Lock()
        self.tally = HourlyTally()  # the activity chart's counts, added to the store in batches
        self.last_spool_error: str | None = None
        self.stats = {"stored": 0, "spooled": 0, "unspooled": 0}

    # Writing ----------------------------------------------------------------------

    def write(self, record: dict) -> str:
        """Persist one record; return where it went: stored, spooled or logged."""
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
