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


def start_session(db: Database, account_id: ObjectId, lifetime: timedelta) -> str:
    """Open a session for the account and return the token the cookie will carry."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.sessions.insert_one(
        {
            "_id": ObjectId(),
            "tokenHash": _hash(token),
            "accountId": account_id,
            "createdAt": now,
            "expiresAt": now + lifetime,
        }
    )
    return token


def session_is_live(db: Database, token: object, account_id: ObjectId) -> bool:
    if not isinstance(token, str) or not token:
        return False
    found = db.sessions.find_one(
        {"tokenHash": _hash(token), "accountId": account_id, "expiresAt": {"$gt": utcnow()}},
        {"_id": 1},
    )
    return found is not None


def end_session(db: Database, token: object) -> None:
    if isinstance(token, str) and token:
        db.sessions.delete_one({"tokenHash": _hash(token)})


def end_account_sessions(db: Database, account_id: ObjectId) -> int:
    """End every session of an account, in every browser and every process."""
    return db.sessions.delete_many({"accountId": account_id}).deleted_count
