"""Web sessions kept on the server, so that ending one takes effect in every process.

The browser's signed cookie carries a random token; the store keeps only its SHA-256 with
the account and an expiry. A request whose token has no live document here is not logged
in, whatever the cookie says: logging out, changing the password and losing a membership
delete the documents, and every gunicorn worker and CLI process reads the same store.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.database import Database

from ..db import IndexSpec
from ..ids import utcnow

INDEXES: dict[str, list[IndexSpec]] = {
    "sessions": [
        ([("tokenHash", ASCENDING)], {"name": "token_unique", "unique": True}),
        ([("accountId", ASCENDING)], {"name": "account"}),
        ([("expiresAt", ASCENDING)], {"name": "expiry_ttl", "expireAfterSeconds": 0}),
    ],
}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(db: Database, account_id: ObjectId, lifetime: timedelta) -> tuple[str, ObjectId]:
    """Open a session for the account; return the token the cookie will carry and the
    session's server-side id (its name in the audit log)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session_id = ObjectId()
    db.sessions.insert_one(
        {
            "_id": session_id,
            "tokenHash": _hash(token),
            "accountId": account_id,
            "createdAt": now,
            "expiresAt": now + lifetime,
        }
    )
    return token, session_id


def live_session(db: Database, token: object, account_id: ObjectId) -> ObjectId | None:
    """The id of the account's open session the token names, or None."""
    if not isinstance(token, str) or not token:
        return None
    found = db.sessions.find_one(
        {"tokenHash": _hash(token), "accountId": account_id, "expiresAt": {"$gt": utcnow()}},
        {"_id": 1},
    )
    return found["_id"] if found is not None else None


def end_session(db: Database, token: object) -> None:
    if isinstance(token, str) and token:
        db.sessions.delete_one({"tokenHash": _hash(token)})


def end_account_sessions(db: Database, account_id: ObjectId) -> int:
    """End every session of an account, in every browser and every process."""
    return db.sessions.delete_many({"accountId": account_id}).deleted_count
