"""The journal: a request's record is handed off here, and folded into the store in batches.

In the journal write mode (``AUDIT_WRITE_MODE=journal``, the embedded store's default) the
request thread does not commit to the store: it appends the record to one local file,
``journal.bin`` in ``AUDIT_JOURNAL_DIR``, and answers. A ``write`` without ``fsync``
survives a crash of the process (the bytes are in the kernel's page cache) as a commit of
the embedded store at ``synchronous=NORMAL`` does; a lost disk or machine takes both.

Each entry is ``MAGIC``, a 16-byte MAC, then one BSON document ``{"t": <when handed off>,
"r": <the record>}`` (BSON is self-delimiting: its first four bytes are its length, its
last is NUL). The MAC is an HMAC-SHA256 of the BSON under the journal's own key
(``journal.key`` in its folder, 0600, made once): a record holds what clients sent, and
bytes a client shaped like an entry must never be read as one. An append takes an
exclusive ``flock`` of the file and writes the entry in one ``write``, so entries of
concurrent processes and threads never interleave.

A folder (each process's background lane ``journal``, every ``AUDIT_FOLD_INTERVAL_MS``;
a read of the log, so a reader sees what was answered before it; a process's exit) claims
the file by renaming it to ``folding-<uuid>.bin`` and takes its lock, which waits for
appends in flight (an append that opened the old name finds, after locking, that the name
now points elsewhere and starts over on the new file, as the spool's appends do). It
inserts the entries in batches, one transaction each, and removes the file only when
every entry is in the store (or in the spool). Records are inserted by ``_id``: a fold
that stops half-way (a crash, a failing store) runs again and stores each record once.

Only one folder works at a time, across the processes that share the directory
(``fold.lock``): the background folders skip when another one holds it, a reader waits
for it. An entry that cannot be read (a crash of the machine tore a write) is set aside
in ``rejected-<uuid>.bin``, and reading resumes at the next ``MAGIC`` that starts an entry
whose MAC holds (a write cut short by a crash of the machine, or by a SIGKILL in the middle
of a large ``write``: that request was never answered).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import logging
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
from bson.codec_options import CodecOptions

from ...ids import utcnow
from .spool import ReplayResult, write_all

log = logging.getLogger(__name__)

ACTIVE = "journal.bin"
CLAIMED_PREFIX = "folding-"
MAGIC = b"\x1eAJ1"  # an entry starts here; reading resumes at the next one after damage
BATCH = 500  # records a transaction of the fold inserts
MAX_BYTES = 64 * 1024 * 1024  # AUDIT_JOURNAL_MAX_BYTES: the active file's bound
_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)
_LENGTH_LIMIT = 64 * 1024 * 1024  # no record comes near it (they are far below 16 MB)


@dataclass
class FoldResult(ReplayResult):
    """A replay's counts (``rejected``: unreadable stretches), and what went to the spool."""

    spooled: int = 0

    def as_dict(self) -> dict:
        return {**super().as_dict(), "spooled": self.spooled}


@dataclass
class Entry:
    handed_off: datetime
    record: dict[str, Any]


# What the folder gives each batch to: returns how many of the batch were newly stored, how
# many were there already, and how many went to the spool instead; raises to keep the file
# for the next fold.
InsertBatch = Callable[[list[Entry]], tuple[int, int, int]]


MAC_SIZE = 16


def _mac(key: bytes, document: bytes) -> bytes:
    return hmac.new(key, document, hashlib.sha256).digest()[:MAC_SIZE]


def encode(record: dict[str, Any], key: bytes, handed_off: datetime | None = None) -> bytes:
    document = bson.encode({"t": handed_off or utcnow(), "r": record})
    return MAGIC + _mac(key, document) + document


def decode_all(data: bytes, key: bytes) -> tuple[list[Entry], list[bytes]]:
    """The entries of a file's bytes, and the damaged stretches between them."""
    entries: list[Entry] = []
    damaged: list[bytes] = []
    position, size = 0, len(data)
    while position < size:
        start = position
        entry, end = _entry_at(data, position, key)
        if entry is not None:
            entries.append(entry)
            position = end
            continue
        following = data.find(MAGIC, position + 1)
        position = size if following < 0 else following
        damaged.append(data[start:position])
    return entries, damaged


def _entry_at(data: bytes, position: int, key: bytes) -> tuple[Entry | None, int]:
    if data[position : position + len(MAGIC)] != MAGIC:
        return None, position
    begin = position + len(MAGIC) + MAC_SIZE
    if begin + 5 > len(data):
        return None, position
    length = int.from_bytes(data[begin : begin + 4], "little")
    end = begin + length
    if length < 5 or length > _LENGTH_LIMIT or end > len(data) or data[end - 1] != 0:
        return None, position
    if not hmac.compare_digest(data[begin - MAC_SIZE : begin], _mac(key, data[begin:end])):
        return None, position  # not written by this journal: a client's bytes, or damage
    try:
        document = bson.decode(data[begin:end], codec_options=_CODEC)
    except (bson.errors.BSONError, ValueError, OverflowError):
        return None, position
    handed_off, record = document.get("t"), document.get("r")
    if not isinstance(handed_off, datetime) or not isinstance(record, dict):
        return None, position
    return Entry(handed_off, record), end


class Journal:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = MAX_BYTES):
        self.directory = Path(directory)
        # what requests may hand off before a fold takes it: past it they store their own
        # records (the sync path), so a store that cannot keep up slows requests down
        # instead of growing a file without end
        self.max_bytes = max_bytes
        self._active = os.fspath(self.directory / ACTIVE)  # (a str: no Path work per append)
        self._thread_lock = threading.Lock()
        self._key: bytes | None = None
        self._fd: int | None = None  # the active file, open for appends
        self._pid: int | None = None
        self._inode: int | None = None
        self.appended = 0  # this process's appends (the tests count commits against them)

    @property
    def active_path(self) -> Path:
        return self.directory / ACTIVE

    @property
    def key(self) -> bytes:
        """The journal's MAC key, made once by the first process that needs it."""
        if self._key is None:
            path = self.directory / "journal.key"
            try:
                key = path.read_bytes()
            except FileNotFoundError:
                self._ensure_directory()
                temporary = self.directory / f".journal.key-{uuid.uuid4().hex}"
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, secrets.token_bytes(32))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                with contextlib.suppress(FileExistsError):  # another process made it first
                    os.link(temporary, path)
                os.unlink(temporary)
                key = path.read_bytes()
            if len(key) != 32:
                raise OSError(errno.EINVAL, f"{path} is not a journal key (32 bytes)")
            self._key = key
        return self._key

    def _ensure_directory(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    # The request's part ---------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        """Hand one record off: one ``write`` under the file's lock, no ``fsync``.
        Raise OSError if the disk refuses (the caller then writes to the store itself).

        The file stays open between appends (per process; the threads take turns): an
        append is a lock, a check that the name is still this file, a write and an unlock.
        """
        entry = encode(record, self.key)
        with self._thread_lock:
            while True:
                fd = self._open_active()
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    try:
                        current = os.stat(self._active).st_ino
                    except FileNotFoundError:
                        current = None
                    if current != self._inode:  # a folder claimed the file: the new one
                        self._close_active()
                        continue
                    before = os.fstat(fd).st_size
                    if before + len(entry) > self.max_bytes:  # the fold is not keeping up
                        raise OSError(errno.EFBIG, f"the journal holds {before} bytes already")
                    try:
                        write_all(fd, entry)
                    except OSError:
                        with contextlib.suppress(OSError):  # no torn entry left behind
                            os.ftruncate(fd, before)
                        raise
                    self.appended += 1
                    return
                finally:
                    if self._fd == fd:
                        fcntl.flock(fd, fcntl.LOCK_UN)

    def _open_active(self) -> int:
        if self._fd is not None and self._pid == os.getpid():
            return self._fd
        if self._pid != os.getpid():  # a forked child: the parent's descriptor is not ours
            self._fd = None
        try:
            fd = os.open(self._active, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the first record: the directory is made once
            self._ensure_directory()
            fd = os.open(self._active, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._fd, self._pid, self._inode = fd, os.getpid(), os.fstat(fd).st_ino
        return fd

    def close(self) -> None:
        """Let go of the active file (a process that stops handing off: tests, shutdown)."""
        with self._thread_lock:
            self._close_active()

    def _close_active(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = self._inode = None

    # The folder's part ----------------------------------------------------------------

    def pending(self) -> bool:
        """Whether anything waits to be folded (one ``stat`` when nothing does)."""
        try:
            if self.active_path.stat().st_size > 0:
                return True
        except (FileNotFoundError, NotADirectoryError):
            pass
        return self.directory.is_dir() and any(self.directory.glob(f"{CLAIMED_PREFIX}*.bin"))

    def pending_bytes(self) -> int:
        total = 0
        for path in self._files():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        found = sorted(self.directory.glob(f"{CLAIMED_PREFIX}*.bin"))
        if self.active_path.exists():
            found.append(self.active_path)
        return found

    @contextlib.contextmanager
    def _folding(self, wait: bool) -> Iterator[bool]:
        """The directory's fold lock: True when held (``wait``: until it is)."""
        self._ensure_directory()
        fd = os.open(self.directory / "fold.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def fold(
        self,
        insert_batch: InsertBatch,
        *,
        wait: bool = False,
        then: Callable[[FoldResult], None] | None = None,
    ) -> FoldResult:
        """Move every entry into the store through ``insert_batch``; idempotent.

        ``wait``: wait for a fold in progress elsewhere instead of leaving the work to it
        (a reader, who must see what was answered before its request). ``then``: what to
        do next while the fold lock is still held (store what went to the spool), so a
        reader waiting for this fold finds it done."""
        result = FoldResult()
        if not self.pending() and not wait:
            return result
        with self._folding(wait) as held:
            if not held:
                return result
            if self.active_path.exists():
                claimed = self.directory / f"{CLAIMED_PREFIX}{uuid.uuid4().hex}.bin"
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.active_path, claimed)
            for path in sorted(self.directory.glob(f"{CLAIMED_PREFIX}*.bin")):
                if not self._fold_file(path, insert_batch, result):
                    break
            if then is not None:
                then(result)
        return result

    def _fold_file(self, path: Path, insert_batch: InsertBatch, result: FoldResult) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # appends that opened the old name finish first
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read()
            entries, damaged = decode_all(data, self.key)
            for start in range(0, len(entries), BATCH):
                try:
                    stored, duplicates, spooled = insert_batch(entries[start : start + BATCH])
                except Exception as error:  # noqa: BLE001 - any failure: keep the file
                    result.errors.append(f"{type(error).__name__}: {error}")
                    log.warning("Journal fold paused, the file is kept: %s", error)
                    return False
                result.stored += stored
                result.duplicates += duplicates
                result.spooled += spooled
            if damaged:
                result.rejected += len(damaged)
                kept = self.directory / f"rejected-{uuid.uuid4().hex}.bin"
                kept.write_bytes(b"".join(damaged))
                log.error(
                    "Journal fold set aside %d unreadable stretch(es) (%d bytes) in %s",
                    len(damaged),
                    sum(len(d) for d in damaged),
                    kept,
                )
            os.unlink(path)
            result.files += 1
            return True
        finally:
            os.close(fd)
