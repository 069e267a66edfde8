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
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from bson import ObjectId

from ..ids import iso, utcnow


class Anchor:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, organization_id: ObjectId) -> Path:
        return self.directory / f"{ObjectId(organization_id)}.ndjson"

    def append(self, organization_id: ObjectId, digest: dict) -> None:
        """Anchor a digest just stored; raise OSError if the anchor cannot be written."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = json.dumps(
            {
                "sequence": digest["sequence"],
                "digestHash": digest["digestHash"],
                "windowEnd": iso(digest["windowEnd"]),
                "sealedAt": iso(utcnow()),
            },
            sort_keys=True,
        )
        fd = os.open(self.path(organization_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = (line + "\n").encode("ascii")
            while data:
                written = os.write(fd, data)
                data = data[written:]
            os.fsync(fd)
        finally:
            os.close(fd)

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
