"""Rate limits on logging in, with counters every worker process shares.

Flask-Limiter keeps its counters in a ``limits`` storage chosen by
``RATELIMIT_STORAGE_URI``: on MongoDB, limits' own MongoDB storage (the default when
``MONGO_URI`` is a ``mongodb://`` URI); on the embedded store, the SQLite storage below,
in a file next to the store, so gunicorn's workers count together; ``memory://`` is for
tests only.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from urllib.parse import urlparse

from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits.storage import Storage

limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def login_email_key() -> str:
    """A second key for logins: the email tried, so many addresses cannot share one account."""
    email = ""
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict) and isinstance(body.get("email"), str):
            email = body["email"]
    else:
        email = request.form.get("email", "")
    return "login-email:" + email.strip().lower()[:320]


class SQLiteStorage(Storage):
    """Fixed-window counters in one SQLite file: each increment is one atomic upsert."""

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = urlparse(uri).path
        self._local = threading.local()
        self._calls = 0

    @property
    def base_exceptions(self):
        return sqlite3.Error

    def _connection(self) -> sqlite3.Connection:
        if getattr(self._local, "pid", None) != os.getpid():
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=5, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS counters "
                "(key TEXT PRIMARY KEY, count INTEGER NOT NULL, expire_at REAL NOT NULL)"
            )
            self._local.connection = connection
            self._local.pid = os.getpid()
        return self._local.connection

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        self._calls += 1
        if self._calls % 1000 == 0:
            self._connection().execute("DELETE FROM counters WHERE expire_at < ?", (now,))
        row = (
            self._connection()
            .execute(
                "INSERT INTO counters (key, count, expire_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET "
                "count = CASE WHEN expire_at < ? THEN ? ELSE count + ? END, "
                "expire_at = CASE WHEN expire_at < ? THEN ? ELSE expire_at END "
                "RETURNING count",
                (key, amount, now + expiry, now, amount, amount, now, now + expiry),
            )
            .fetchone()
        )
        return int(row[0])

    def get(self, key: str) -> int:
        row = (
            self._connection()
            .execute(
                "SELECT count FROM counters WHERE key = ? AND expire_at >= ?", (key, time.time())
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        row = (
            self._connection()
            .execute("SELECT expire_at FROM counters WHERE key = ?", (key,))
            .fetchone()
        )
        return float(row[0]) if row else time.time()

    def check(self) -> bool:
        try:
            self._connection().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        return self._connection().execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        self._connection().execute("DELETE FROM counters WHERE key = ?", (key,))


def default_storage_uri(mongo_uri: str | None, instance_path: str) -> str:
    if mongo_uri and mongo_uri.startswith(("mongodb://", "mongodb+srv://")):
        return mongo_uri
    if mongo_uri and mongo_uri.startswith("mongomock://"):
        return "memory://"
    return f"sqlite:///{os.path.join(instance_path, 'ratelimit.sqlite')}"
