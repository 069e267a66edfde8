"""Destination secrets at rest: encrypted with a key that is not in the database.

What is sealed: a webhook's signing secret, a Splunk HEC token, and a webhook's or HEC's
URL (its path and query may be credentials: ``destination.urlSealed``; ``destination.url``
keeps only its masked form, ``destinations.mask_url``).

The key is ``AUDIT_STREAM_KEY`` (a Fernet key: 32 url-safe base64 bytes), or else one
derived from ``SECRET_KEY`` with HKDF; either way it lives in the app's settings, so
someone who reads the database (or a backup of it) gets only ciphertext.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from ..config import ConfigError


def check_key(config: Mapping[str, Any]) -> None:
    """Refuse to start with an ``AUDIT_STREAM_KEY`` that is no Fernet key."""
    value = config.get("AUDIT_STREAM_KEY")
    if not value:
        return
    try:
        Fernet(str(value).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigError(
            "AUDIT_STREAM_KEY must be a Fernet key (32 bytes, url-safe base64), e.g. from "
            "Fernet.generate_key() of the cryptography package."
        ) from None


class SecretUnreadable(Exception):
    """The stored secret cannot be decrypted (another key, or edited)."""


def _key() -> bytes:
    configured = current_app.config.get("AUDIT_STREAM_KEY")
    if configured:
        return str(configured).encode("ascii")
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"organization-audit-log streams"
    ).derive(str(current_app.config["SECRET_KEY"]).encode("utf-8"))
    return base64.urlsafe_b64encode(derived)


def key_id() -> str:
    """A short, non-secret name of the current key, stored beside each ciphertext."""
    return hashlib.sha256(_key()).hexdigest()[:8]


def seal(secret: str) -> dict[str, str]:
    return {
        "ciphertext": Fernet(_key()).encrypt(secret.encode("utf-8")).decode(),
        "keyId": key_id(),
    }


def unseal(sealed: dict[str, str] | None) -> str | None:
    if not sealed:
        return None
    try:
        return Fernet(_key()).decrypt(sealed["ciphertext"].encode()).decode("utf-8")
    except (InvalidToken, KeyError, ValueError, TypeError):
        raise SecretUnreadable(
            "The destination's secret cannot be decrypted (the stream key changed?); set it again."
        ) from None


def fingerprint(text: str) -> str:
    """A short, stable name of a secret for the audit log's ``changes`` (a new URL is a
    change even when its masked form is the same): an HMAC with the stream key, so it
    reveals nothing of the secret."""
    return hmac.new(_key(), text.encode("utf-8"), hashlib.sha256).hexdigest()[:8]


def open_destination(destination: Mapping[str, Any]) -> dict[str, Any]:
    """The destination to send to: its URL unsealed (``SecretUnreadable`` if it cannot be);
    a destination stored before URLs were sealed has it in clear."""
    opened = {key: value for key, value in destination.items() if key != "urlSealed"}
    if destination.get("urlSealed"):
        opened["url"] = unseal(destination["urlSealed"])
    return opened
