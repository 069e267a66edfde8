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
import urllib.parse
import urllib.request
from base64 import b64decode, b64encode
from dataclasses import dataclass

from . import bounded_http
from .verifier import (
    Checkpoint,
    VerificationError,
    VerifierKey,
    b64hashes,
    verified_checkpoint,
    verify_consistency,
)

TIMEOUT = 30  # seconds for a whole answer
MAX_ANSWER = 1 << 20  # bytes: a checkpoint and a proof are a few kilobytes


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
        body = bounded_http.exchange(request, timeout=TIMEOUT, max_bytes=MAX_ANSWER)
    except bounded_http.ExchangeError as error:
        message = (
            f"{path} answered {error.status}: {error.body!r}"
            if error.kind == "status"
            else f"{url} {error}"
        )
        raise WitnessError("unavailable", message) from None
    try:
        answer = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise WitnessError("unavailable", f"{url} cannot be read: {error}") from None
    if not isinstance(answer, dict):
        raise WitnessError("unavailable", f"{path} answered {type(answer).__name__}, not an object")
    return answer


def _load(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as error:
        raise WitnessError("state", f"the state file {path} cannot be read: {error}") from None
    if not isinstance(state, dict):
        raise WitnessError("state", f"the state file {path} is not a witness's state")
    return state


def _seen(state: dict, path: str) -> Checkpoint:
    """The checkpoint a state file holds, or a "state" error naming what is wrong."""
    origin, size, root = state.get("origin"), state.get("treeSize"), state.get("rootHash")
    try:
        if not isinstance(origin, str) or not origin:
            raise ValueError("no origin")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("its tree size is not a whole number")
        decoded = b64decode(root, validate=True) if isinstance(root, str) else b""
        if len(decoded) != 32:
            raise ValueError("its root hash is not 32 bytes of base64")
    except (ValueError, TypeError) as error:
        raise WitnessError("state", f"the state file {path} was edited: {error}") from None
    return Checkpoint(origin, size, decoded)


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
    if not isinstance(pinned, str):
        raise WitnessError("signature", "no public key of the log: give --key")
    try:
        log_key = VerifierKey.parse(str(pinned))
    except VerificationError as error:
        raise WitnessError("signature", f"the log's key: {error}") from None
    if served.get("checkpoint") is None:
        raise WitnessError("empty", "the log has no checkpoint yet: nothing to witness")
    if not isinstance(served["checkpoint"], str):
        raise WitnessError("signature", "the log's checkpoint is not a signed note")
    origin = str(served.get("origin") or "")
    if not origin.endswith("/" + organization_id):
        raise WitnessError("signature", f"the log {origin!r} is not the organization's")
    try:
        new = verified_checkpoint(served["checkpoint"], log_key, origin)
    except VerificationError as error:
        raise WitnessError("signature", str(error)) from None
    old_size, kind = 0, "first"
    if state is not None:
        old = _seen(state, state_path)
        if old.origin != origin:
            raise WitnessError(
                "state", f"{state_path} witnessed the log {old.origin!r}, not {origin!r}"
            )
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
                given = answer.get("proof")
                if not isinstance(given, list) or not all(isinstance(h, str) for h in given):
                    raise VerificationError("the consistency proof is not a list of hashes")
                proof = b64hashes(given)
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
