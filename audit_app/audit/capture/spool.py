"""The local spool: audit records that could not reach the store wait here, on disk.

One append-only file, ``records.ndjson``, one record a line in canonical Extended JSON (so
ObjectIds, dates and number types come back exactly). Every append takes an exclusive
``flock``, writes the whole line and ``fsync``s before the response is sent.

Replay claims the file by renaming it to ``replaying-<uuid>.ndjson``, then takes its lock:
an append that opened the old name either finished before, or finds after locking that the
name now points elsewhere and opens the new file. Lines are inserted by ``_id``, so a record
already stored is skipped, and a replay that stops half-way can simply run again. A line
torn by a crash is set aside in ``rejected-<uuid>.ndjson`` for a person to look at.

Each entry carries ``spooledAt``, when it was spooled, and keeps it when replayed: the
record's ``storedAt`` is then the replay's time, and verification needs to tell a request
that waited out an outage from a record dated back by hand (``integrity.time_suspicion``).
That claim is believed only if the anchor's replay ledger confirms it: the writer's
``insert_one`` appends each record there before inserting it (``writer.AuditWriter.replay``),
and an error from either leaves the file to the next replay.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS, JSONOptions
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ...ids import utcnow

log = logging.getLogger(__name__)

ACTIVE = "records.ndjson"
_LOAD_OPTIONS = JSONOptions(tz_aware=True, tzinfo=UTC)


@dataclass
class ReplayResult:
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    files: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "files": self.files,
            "errors": self.errors,
        }


def dumps(record: dict) -> str:
    return json_util.dumps(record, json_options=CANONICAL_JSON_OPTIONS)


def loads(line: str) -> dict:
    return json_util.loads(line, json_options=_LOAD_OPTIONS)


class Spool:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    @property
    def active_path(self) -> Path:
        return self.directory / ACTIVE

    def _ensure_directory(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def append(self, record: dict) -> None:
        """Write one record durably, with when (``spooledAt``); raise OSError if the disk
        refuses. The caller's record is left as it was."""
        self.append_many([record])

    def append_many(self, records: list[dict]) -> None:
        """Write records durably, in one ``write`` and one ``fsync`` (a batch of the
        journal's fold that the store refused); all of them or, raising OSError, none."""
        self._ensure_directory()
        now = utcnow()
        line = "".join(
            dumps(record if "spooledAt" in record else {**record, "spooledAt": now}) + "\n"
            for record in records
        ).encode("utf-8")
        path = self.active_path
        while True:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    current = None
                if current is None or current.st_ino != os.fstat(fd).st_ino:
                    continue  # a replayer renamed the file between our open and our lock
                before = os.fstat(fd).st_size
                try:
                    write_all(fd, line)
                    os.fsync(fd)
                except OSError:
                    # no torn line is left behind: the whole record goes to the caller's
                    # last resort (the CRITICAL log line) instead
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, before)
                    raise
                if before == 0:
                    self._fsync_directory()
                return
            finally:
                os.close(fd)

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        names = sorted(p for p in self.directory.glob("replaying-*.ndjson"))
        if self.active_path.exists():
            names.append(self.active_path)
        return names

    def pending_bytes(self) -> int:
        total = 0
        for path in self.pending_files():
            with contextlib.suppress(FileNotFoundError):  # replayed meanwhile
                total += path.stat().st_size
        return total

    def writable(self) -> bool:
        """Whether an append could succeed right now (for /readyz)."""
        try:
            self._ensure_directory()
        except OSError:
            return False
        return os.access(self.directory, os.W_OK | os.X_OK)

    def replay(self, insert_one) -> ReplayResult:
        """Insert every spooled record with ``insert_one``; safe to run from many processes."""
        result = ReplayResult()
        if self.active_path.exists():
            claimed = self.directory / f"replaying-{uuid.uuid4().hex}.ndjson"
            with contextlib.suppress(FileNotFoundError):  # another replayer claimed it first
                os.rename(self.active_path, claimed)
        for path in sorted(self.directory.glob("replaying-*.ndjson")):
            if not self._replay_file(path, insert_one, result):
                break
        return result

    def _replay_file(self, path: Path, insert_one, result: ReplayResult) -> bool:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True  # another process is replaying this file
            if not path.exists():
                return True
            with os.fdopen(os.dup(fd), "r", encoding="utf-8", errors="replace") as handle:
                lines = handle.readlines()
            rejected = []
            for line in lines:
                if not line.strip():
                    continue
                try:
                    record = loads(line)
                except ValueError:
                    rejected.append(line if line.endswith("\n") else line + "\n")
                    continue
                try:
                    insert_one(record)
                    result.stored += 1
                except (DuplicateKeyError, BulkWriteError) as error:
                    if isinstance(error, BulkWriteError) and not _only_duplicates(error):
                        raise
                    result.duplicates += 1
                except Exception as error:  # noqa: BLE001 - any store failure: keep the file
                    result.errors.append(f"{type(error).__name__}: {error}")
                    log.warning("Spool replay paused (the store, or the replay ledger): %s", error)
                    return False
            if rejected:
                result.rejected += len(rejected)
                kept = self.directory / f"rejected-{uuid.uuid4().hex}.ndjson"
                kept.write_text("".join(rejected), encoding="utf-8")
                ids = [m.group(1) for line in rejected if (m := _REQUEST_ID.search(line))]
                log.error(
                    "Spool replay set aside %d unreadable line(s) in %s (request ids: %s)",
                    len(rejected),
                    kept,
                    ", ".join(ids) or "none readable",
                )
            os.unlink(path)
            result.files += 1
            return True
        finally:
            os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte, or raise: a short write is retried, a write of nothing is ENOSPC."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "the spool accepted no more bytes")
        view = view[written:]


_REQUEST_ID = re.compile(r'"requestId"\s*:\s*"([^"]{1,128})"')


def _only_duplicates(error: BulkWriteError) -> bool:
    return all(e.get("code") == 11000 for e in error.details.get("writeErrors", []))
