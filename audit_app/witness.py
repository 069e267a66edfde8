"""A witness of an organization's verifiable log: ``flask witness``.

Run by the customer or a third party, on a schedule, against the installation's API. It
keeps the last checkpoint it accepted in a state file of its own, and accepts a new one only
when the log proves (RFC 9162 consistency proof) that the new tree extends the old one. It
fails, naming what it saw, on:

- a rollback or truncated tail: the log is now smaller than it was;
- a fork: two different roots for one tree size, or a new tree that does not contain the
  old one (history rewritten: a record edited, deleted, reordered or inserted);
- a checkpoint not signed by the log's key (pinned with ``--key``, or the first one seen);

and then leaves its state as it was, so every later run fails too until a person looks.
Like ``verifier.py`` it needs no database: only the API (``viewAuditLog``) and a key.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64decode, b64encode
from dataclasses import dataclass

from .verifier import (
    Checkpoint,
    VerificationError,
    VerifierKey,
    b64hashes,
    verified_checkpoint,
    verify_consistency,
)

TIMEOUT = 30


class WitnessError(Exception):
    """What the witness refused, and why (``kind``: rollback, fork, signature, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Outcome:
    kind: str  # "first" (nothing seen before), "extended", "unchanged"
    old_size: int
    checkpoint: Checkpoint


def _get(url: str, path: str, headers: dict, params: dict | None = None) -> dict:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise WitnessError("usage", f"--url must be http(s)://..., not {url!r}")
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    # the scheme is checked above: http(s) only
    request = urllib.request.Request(url.rstrip("/") + path + query, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310  # nosec B310
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        raise WitnessError(
            "unavailable", f"{path} answered {error.code}: {error.read()[:300]!r}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise WitnessError("unavailable", f"{url} cannot be read: {error}") from None


def _load(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise WitnessError("state", f"the state file {path} is not JSON: {error}") from None


def _save(path: str, state: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".witness-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def witness(
    url: str, organization_id: str, state_path: str, headers: dict, key: str | None = None
) -> Outcome:
    state = _load(state_path)
    if state is not None and state.get("organizationId") != organization_id:
        raise WitnessError("state", f"{state_path} witnesses another organization")
    served = _get(url, "/api/v1/audit-logs/checkpoint", headers)
    pinned = key or (state or {}).get("publicKey") or served.get("publicKey")
    try:
        log_key = VerifierKey.parse(str(pinned))
    except VerificationError as error:
        raise WitnessError("signature", f"the log's key: {error}") from None
    if served.get("checkpoint") is None:
        raise WitnessError("empty", "the log has no checkpoint yet: nothing to witness")
    origin = str(served.get("origin") or "")
    if not origin.endswith("/" + organization_id):
        raise WitnessError("signature", f"the log {origin!r} is not the organization's")
    try:
        new = verified_checkpoint(served["checkpoint"], log_key, origin)
    except VerificationError as error:
        raise WitnessError("signature", str(error)) from None
    old_size, kind = 0, "first"
    if state is not None:
        old = Checkpoint(state["origin"], int(state["treeSize"]), b64decode(state["rootHash"]))
        old_size = old.size
        if new.size < old.size:
            raise WitnessError(
                "rollback",
                f"ROLLBACK: the log now ends at tree size {new.size}, but it was {old.size} "
                "when last witnessed: records were cut from its tail or the database was "
                "rolled back",
            )
        if new.size == old.size:
            if new.root != old.root:
                raise WitnessError(
                    "fork",
                    f"FORK: two different roots for tree size {new.size}: the history was "
                    "rewritten",
                )
            kind = "unchanged"
        else:
            answer = _get(
                url,
                "/api/v1/audit-logs/consistency",
                headers,
                {"from": old.size, "to": new.size},
            )
            try:
                proof = b64hashes(list(answer.get("proof") or []))
                verify_consistency(old.size, new.size, proof, old.root, new.root)
            except VerificationError as error:
                raise WitnessError(
                    "fork",
                    f"FORK: the tree of size {new.size} does not extend the tree of size "
                    f"{old.size} witnessed before ({error})",
                ) from None
            kind = "extended"
    _save(
        state_path,
        {
            "url": url,
            "organizationId": organization_id,
            "origin": new.origin,
            "publicKey": str(log_key),
            "treeSize": new.size,
            "rootHash": b64encode(new.root).decode(),
            "checkpoint": served["checkpoint"],
        },
    )
    return Outcome(kind, old_size, new)
