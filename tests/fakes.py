"""A store that can be switched off: a mongomock client whose writes raise while it is down."""

from __future__ import annotations

import time

from pymongo.errors import AutoReconnect


class FlakyClient:
    """Wraps a mongomock client; while ``down`` (or ``slow``) inserts fail like a lost server."""

    def __init__(self, inner):
        self.inner = inner
        self.down = False
        self.delay = 0.0
        self.insert_attempts = 0

    def __getitem__(self, name):
        return _Database(self, self.inner[name])

    def get_database(self, name):
        return self[name]

    @property
    def admin(self):
        return _Admin(self)

    def close(self):
        pass


class _Admin:
    def __init__(self, owner):
        self.owner = owner

    def command(self, name):
        if self.owner.down:
            raise AutoReconnect("connection refused (the test switched the store off)")
        return {"ok": 1.0}


class _Database:
    def __init__(self, owner, inner):
        self.owner = owner
        self.inner = inner

    def __getitem__(self, name):
        return _Collection(self.owner, self.inner[name])

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def command(self, *args, **kwargs):
        return self.inner.command(*args, **kwargs)


class _Collection:
    def __init__(self, owner, inner):
        self.owner = owner
        self.inner = inner

    def insert_one(self, document, *args, **kwargs):
        self.owner.insert_attempts += 1
        if self.owner.delay:
            time.sleep(self.owner.delay)
        if self.owner.down:
            raise AutoReconnect("connection refused (the test switched the store off)")
        return self.inner.insert_one(document, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)
