"""The anchor: each organization's chain head, kept outside the database.

Someone with write access to MongoDB could delete the newest digests (or all of them) and
re-seal forged records under a fresh chain; the database alone cannot tell. So every seal
also appends the new digest's sequence and hash to an append-only file per organization,
under ``AUDIT_ANCHOR_DIR`` (by default ``instance/audit-anchor``; in production a path on
write-once or append-only storage that every app host shares). ``verify`` checks the
digests in the database against it, and sealing refuses to continue a chain that no longer
reaches the anchored head.

One line a digest, JSON: ``{"sequence", "digestHash", "windowEnd", "sealedAt"}``. An
append takes an exclusive ``flock`` and is ``fsync``'d; a torn last line (a crash) is
ignored when reading.

Retention is anchored beside the chain: each change of an organization's retention
settings in ``<organization>.retention-settings.ndjson``, and the purge's progress in
``<organization>.retention.ndjson`` (how far each batch goes, written *before* it
deletes; the cut-off once every record before it is gone), and once per installation
what the TTL index of an earlier version removed (``retention-legacy.json``). Only
deletions at or below anchored points read as retention in ``verify``; and a purge keeps
whatever the stricter of the database's and the anchor's settings keeps, so someone who
can write to the database alone can neither shorten the retention nor lift a legal hold.

The integrity state is anchored too: when a verification first finds a failure, and when
a full verification that passes (or an operator's acknowledgement) ends it, a line goes to
``<organization>.integrity.ndjson``; each acknowledgement, with its reason and the problems
it covers, to ``<organization>.integrity-acks.ndjson``. A stored state rolled back in the
database then still reads as failed. ``<organization>.backdated.json``, written once when
the demo is seeded, says up to when that organization's records may be dated back.

The replay ledger says which records waited in the spool: before a replayed record is
inserted, the writer appends ``{"id", "createdAt", "spooledAt", "storedAt"}`` (the times in
milliseconds since the epoch) to ``<organization>.replayed/<YYYYMMDDTHHMM>.ndjson``, the
file of the minute of its ``storedAt`` (every process appends there, under ``flock``, as to
the spool). A record's claim to have waited in the spool (``spooledAt``) excuses the time
between its request and its storing only if the ledger holds it (``integrity.time_suspicion``);
sealing and ``verify`` read only the files of the minutes their records were stored in.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bson import ObjectId

from ...ids import iso, utcnow


@dataclass(frozen=True)
class AnchoredRetention:
    """What the anchor says of an organization's retention (None: nothing anchored yet)."""

    settings: tuple[int, bool] | None = None  # (retentionDays, legalHold), the latest
    purged_before: datetime | None = None  # every record stored before it is gone
    progress: tuple[datetime, str] | None = None  # (storedAt, id) a batch deleted up to


class Anchor:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, organization_id: ObjectId) -> Path:
        return self.directory / f"{ObjectId(organization_id)}.ndjson"

    def append(self, organization_id: ObjectId, digest: dict) -> None:
        """Anchor a digest just stored; raise OSError if the anchor cannot be written."""
        entry = {
            "sequence": digest["sequence"],
            "digestHash": digest["digestHash"],
            "windowEnd": iso(digest["windowEnd"]),
            "sealedAt": iso(utcnow()),
        }
        self._append(self.path(organization_id), entry)

    def _append(self, path: Path, entry: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = json.dumps(entry, sort_keys=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = (line + "\n").encode("ascii")
            while data:
                written = os.write(fd, data)
                data = data[written:]
            os.fsync(fd)
        finally:
            os.close(fd)

    # The verifiable log's checkpoints (merkle.py) ---------------------------------------

    def checkpoints_path(self, organization_id: ObjectId) -> Path:
        return self.directory / f"{ObjectId(organization_id)}.checkpoints.ndjson"

    def append_checkpoint(
        self,
        organization_id: ObjectId,
        size: int,
        root_hash: str,
        note: str,
        timestamp: dict | None = None,
    ) -> None:
        """A checkpoint, with its RFC 3161 timestamp if it has one (timestamps.py)."""
        entry: dict = {"treeSize": size, "rootHash": root_hash, "checkpoint": note}
        if timestamp:
            entry["timestamp"] = timestamp
        entry["anchoredAt"] = iso(utcnow())
        self._append(self.checkpoints_path(organization_id), entry)  # JSON escapes the em dash

    def checkpoints(self, organization_id: ObjectId, last: int | None = None) -> list[dict]:
        """The anchored checkpoints, oldest first (a line torn by a crash is skipped); the
        ``last`` N only, read from the file's end: a seal and a verification read what they
        check, not a file that grows by a checkpoint (and its timestamp) every seal."""
        path = self.checkpoints_path(organization_id)
        tail = None if last is None else max(1, last) * CHECKPOINT_LINE_GUESS
        while True:
            found = [
                entry
                for entry in _entries(path, tail)
                if _is_int(entry.get("treeSize")) and isinstance(entry.get("checkpoint"), str)
            ]
            if last is None:
                return found
            try:
                whole = tail is not None and tail >= path.stat().st_size
            except FileNotFoundError:
                return []
            if len(found) >= last or whole:
                return found[-last:]
            tail = (tail or CHECKPOINT_LINE_GUESS) * 4

    # Retention ------------------------------------------------------------------------

    def retention_path(self, organization_id: ObjectId) -> Path:
        """The purge's progress: append-only, each line past the one before."""
        return self.directory / f"{ObjectId(organization_id)}.retention.ndjson"

    def settings_path(self, organization_id: ObjectId) -> Path:
        return self.directory / f"{ObjectId(organization_id)}.retention-settings.ndjson"

    def anchor_settings(
        self,
        organization_id: ObjectId,
        retention_days: int,
        hold: bool,
        pending: dict | None = None,
    ) -> None:
        """Anchor a change of the retention settings (with a shortening still in its grace,
        ``{days, effectiveAt}``); OSError if it cannot be written."""
        entry: dict = {
            "kind": "settings",
            "retentionDays": retention_days,
            "legalHold": hold,
            "at": iso(utcnow()),
        }
        if pending is not None:
            entry["pending"] = pending
        self._append(self.settings_path(organization_id), entry)

    def settings_entries(self, organization_id: ObjectId) -> list[dict]:
        """Every anchored settings line, oldest first (a torn line skipped)."""
        return _entries(self.settings_path(organization_id))

    def anchor_progress(self, organization_id: ObjectId, stored_at: datetime, last_id) -> None:
        """Anchor how far a purge batch goes, before it deletes: every record up to this
        (storedAt, _id), in that order, may be gone."""
        entry = {"kind": "progress", "storedAt": iso(stored_at), "id": str(last_id)}
        self._append(self.retention_path(organization_id), {**entry, "at": iso(utcnow())})

    def anchor_purge(self, organization_id: ObjectId, purged_before: datetime) -> None:
        """Anchor that every record stored before ``purged_before`` is gone (a purge that
        reached its cut-off), before the chunks of those windows are deleted."""
        entry = {"kind": "purge", "purgedBefore": iso(purged_before), "at": iso(utcnow())}
        self._append(self.retention_path(organization_id), entry)

    def retention(self, organization_id: ObjectId) -> AnchoredRetention:
        """The latest anchored settings, and the furthest the purge has anchored."""
        settings: tuple[int, bool] | None = None
        for entry in _entries(self.settings_path(organization_id)):
            days, hold = entry.get("retentionDays"), entry.get("legalHold")
            if isinstance(days, int) and not isinstance(days, bool) and isinstance(hold, bool):
                settings = (days, hold)
        purged_before: datetime | None = None
        progress: tuple[datetime, str] | None = None
        # only the tail: each line is past the one before, and a busy purge writes many
        for entry in _entries(self.retention_path(organization_id), tail=TAIL_BYTES):
            if entry.get("kind") == "purge":
                bound = _moment(entry.get("purgedBefore"))
                if bound is not None and (purged_before is None or bound > purged_before):
                    purged_before = bound
            elif entry.get("kind") == "progress":
                at, last = _moment(entry.get("storedAt")), entry.get("id")
                if at is None or not isinstance(last, str) or not ObjectId.is_valid(last):
                    continue
                if progress is None or (at, last) > progress:
                    progress = (at, last)
        return AnchoredRetention(settings, purged_before, progress)

    def legacy_path(self) -> Path:
        return self.directory / "retention-legacy.json"

    def anchor_legacy(self, before: datetime) -> None:
        """Once per installation, at its first start with per-organization retention: what
        the TTL index of an earlier version may have removed (records received before
        ``before``). Never rewritten, so it never moves with the clock."""
        self._write_once(self.legacy_path(), {"receivedBefore": iso(before)})

    def _write_once(self, path: Path, entry: dict) -> None:
        """Write a file that is never rewritten: a second call leaves the first one's."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        try:
            os.write(fd, json.dumps(entry).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def legacy_bound(self) -> datetime | None:
        try:
            entry = json.loads(self.legacy_path().read_text("ascii"))
            return datetime.fromisoformat(entry["receivedBefore"].replace("Z", "+00:00"))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # unreadable: nothing is excused by it

    # The integrity state -------------------------------------------------------------

    def integrity_path(self, organization_id: ObjectId) -> Path:
        return self.directory / f"{ObjectId(organization_id)}.integrity.ndjson"

    def acks_path(self, organization_id: ObjectId) -> Path:
        return self.directory / f"{ObjectId(organization_id)}.integrity-acks.ndjson"

    def anchor_failure(self, organization_id: ObjectId, since: datetime) -> None:
        """A verification found a failure (first stored at ``since``): the stored state
        must show a failure from then on until ``anchor_cleared``. OSError if unwritable."""
        entry = {"kind": "failed", "since": iso(since), "at": iso(utcnow())}
        self._append(self.integrity_path(organization_id), entry)

    def anchor_cleared(self, organization_id: ObjectId, by: str) -> None:
        """The failure ended: a full verification passed, or an operator acknowledged it."""
        entry = {"kind": "cleared", "by": by, "at": iso(utcnow())}
        self._append(self.integrity_path(organization_id), entry)

    def failure(self, organization_id: ObjectId) -> datetime | None:
        """The ``since`` of the anchored failure not yet cleared, or None."""
        found: datetime | None = None
        for entry in _entries(self.integrity_path(organization_id), tail=TAIL_BYTES):
            if entry.get("kind") == "failed":
                found = _moment(entry.get("since")) or found
            elif entry.get("kind") == "cleared":
                found = None
        return found

    def anchor_acknowledgement(self, organization_id: ObjectId, entry: dict) -> None:
        """An operator's acknowledgement: who, when, why, which problems (their keys)."""
        self._append(self.acks_path(organization_id), {"kind": "acknowledged", **entry})

    def acknowledgements(self, organization_id: ObjectId) -> list[dict]:
        """Every acknowledgement, oldest first (a line torn by a crash is skipped)."""
        return [
            entry
            for entry in _entries(self.acks_path(organization_id))
            if entry.get("kind") == "acknowledged" and isinstance(entry.get("problems"), list)
        ]

    def backdated_path(self, organization_id: ObjectId) -> Path:
        return self.directory / f"{ObjectId(organization_id)}.backdated.json"

    def anchor_backdated(self, organization_id: ObjectId, until: datetime) -> None:
        """Once, for the demo: the records stored up to ``until`` were dated back on
        purpose. Never rewritten, so nothing stored later is ever excused."""
        self._write_once(self.backdated_path(organization_id), {"storedUntil": iso(until)})

    def backdated_until(self, organization_id: ObjectId) -> datetime | None:
        try:
            entry = json.loads(self.backdated_path(organization_id).read_text("ascii"))
        except (OSError, ValueError):
            return None  # none (or unreadable: nothing is excused by it)
        return _moment(entry.get("storedUntil")) if isinstance(entry, dict) else None

    # The replay ledger -----------------------------------------------------------------

    def replayed_path(self, organization_id: ObjectId, stored_at: datetime) -> Path:
        """The ledger file of the minute ``stored_at`` falls in."""
        minute = _aware(stored_at).strftime("%Y%m%dT%H%M")
        return self.directory / f"{ObjectId(organization_id)}.replayed" / f"{minute}.ndjson"

    def anchor_replayed(self, record: dict) -> None:
        """Before a replayed record is inserted: it waited in the spool from ``spooledAt``
        and is stored at ``storedAt`` (both set). Nothing for a record of no organization
        (no chain covers it). OSError if the ledger cannot be written."""
        organization_id = record.get("organizationId")
        times = (record.get(name) for name in ("createdAt", "spooledAt", "storedAt"))
        if not isinstance(organization_id, ObjectId) or not all(
            isinstance(moment, datetime) for moment in times
        ):
            return  # no chain covers it, or its times prove nothing: checked as they are
        path = self.replayed_path(organization_id, record["storedAt"])
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._append(path, replayed_entry(record))

    def replayed(self, organization_id: ObjectId, stored_at: datetime) -> frozenset[tuple]:
        """The (id, createdAt, spooledAt, storedAt) the ledger holds for records stored in
        the minute of ``stored_at`` (a line torn by a crash is skipped)."""
        found = set()
        for entry in _entries(self.replayed_path(organization_id, stored_at)):
            key = tuple(entry.get(name) for name in ("id", "createdAt", "spooledAt", "storedAt"))
            if isinstance(key[0], str) and all(_is_int(value) for value in key[1:]):
                found.add(key)
        return frozenset(found)

    def entries(self, organization_id: ObjectId) -> dict[int, str]:
        """The anchored digests of an organization: {sequence: digest hash}."""
        try:
            text = self.path(organization_id).read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return {}
        anchored: dict[int, str] = {}
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                anchored[int(entry["sequence"])] = str(entry["digestHash"])
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash
        return anchored

    def head(self, organization_id: ObjectId) -> tuple[int, str] | None:
        anchored = self.entries(organization_id)
        if not anchored:
            return None
        sequence = max(anchored)
        return sequence, anchored[sequence]


TAIL_BYTES = 16_384


def _entries(path: Path, tail: int | None = None) -> list[dict]:
    """The JSON lines of an anchor file (of its last ``tail`` bytes); a line torn by a crash,
    or cut by the tail, is skipped. FileNotFoundError: none."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - tail) if tail else 0
            handle.seek(start)
            data = handle.read().decode("ascii", errors="replace")
    except FileNotFoundError:
        return []
    lines = data.splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # begun mid-line
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            found.append(entry)
    return found


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CHECKPOINT_LINE_GUESS = 4096  # bytes: a checkpoint line with its timestamp is 1-3 KB


def millis(moment: datetime) -> int:
    """A date as whole milliseconds since the epoch (as BSON keeps it), exactly."""
    return (_aware(moment) - EPOCH) // timedelta(milliseconds=1)


def replayed_entry(record: dict) -> dict:
    """What the ledger holds of a replayed record, and what a stored one must match."""
    return {
        "id": str(record["_id"]),
        "createdAt": millis(record["createdAt"]),
        "spooledAt": millis(record["spooledAt"]),
        "storedAt": millis(record["storedAt"]),
    }


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _moment(text) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None
