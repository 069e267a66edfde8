"""Password hashing with Argon2id; only the hash is ever stored.

``PASSWORD_HASH_PROFILE=fast`` exists for the test suite alone: it keeps Argon2id but with
tiny costs, so hundreds of logins do not take minutes.
"""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

_PROFILES: dict[str, dict[str, int]] = {
    "strong": {},  # argon2-cffi defaults: RFC 9106 low-memory profile
    "fast": {"time_cost": 1, "memory_cost": 8, "parallelism": 1},
}


@lru_cache(maxsize=4)
def _hasher(profile: str) -> PasswordHasher:
    if profile not in _PROFILES:
        raise ValueError(f"PASSWORD_HASH_PROFILE must be one of {sorted(_PROFILES)}")
    return PasswordHasher(**_PROFILES[profile])  # type: ignore[arg-type]  # (ints, by name)


@lru_cache(maxsize=4)
def _dummy_hash(profile: str) -> str:
    return _hasher(profile).hash("not-a-real-password")


def _profile() -> str:
    return current_app.config.get("PASSWORD_HASH_PROFILE", "strong")


def _bytes(password: str) -> bytes:
    """The password as bytes; a lone surrogate (valid JSON, not UTF-8) is kept, not an error."""
    return password.encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    return _hasher(_profile()).hash(_bytes(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; an unknown account costs the same work as a wrong password."""
    hasher = _hasher(_profile())
    try:
        return hasher.verify(password_hash or _dummy_hash(_profile()), _bytes(password)) and bool(
            password_hash
        )
    except (VerificationError, InvalidHashError):
        return False
