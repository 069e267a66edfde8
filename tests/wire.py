"""A scripted MongoDB for wire-level tests: mockupdb answering the real pymongo driver.

``ScriptedServer`` answers every command the app sends from a small in-test model: ``find``
on a collection returns that collection's scripted documents (or what a callable returns
for the request), writes are acknowledged, and ``fail`` scripts a server error for the
next matching command. Every request is kept, so a test asserts the exact commands sent:
filter, sort, hint, limit, ``maxTimeMS``, projection, write concern.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from bson import ObjectId
from mockupdb import MockupDB

from audit_app.ids import utcnow


class ScriptedServer:
    def __init__(self):
        self.mock = MockupDB(auto_ismaster={"maxWireVersion": 21, "minWireVersion": 0})
        self.documents: dict[str, list[dict] | Callable] = {}
        self.failures: list[tuple[str, str, dict]] = []
        # listIndexes answers from here; createIndexes adds to it
        self.indexes: dict[str, list[dict]] = {}
        # a find on a collection named here answers with this cursor id (more to come)
        self.cursor_ids: dict[str, int] = {}
        self.requests: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def uri(self) -> str:
        return self.mock.uri

    def start(self) -> ScriptedServer:
        self.mock.run()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.mock.stop()

    def fail(self, command: str, collection: str, **error) -> None:
        """The next ``command`` on ``collection`` is answered with this error."""
        self.failures.append((command, collection, {"error": error}))

    def answer(self, command: str, collection: str, **fields) -> None:
        """The next ``command`` on ``collection`` is answered ``ok`` with these fields."""
        self.failures.append((command, collection, {"ok": fields}))

    def sent(self, command: str, collection: str | None = None) -> list[dict]:
        """The documents of the commands received, in order."""
        return [
            doc
            for doc in list(self.requests)
            if next(iter(doc)) == command and (collection is None or doc[command] == collection)
        ]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                request = self.mock.receives(timeout=0.2)
            except AssertionError:  # nothing arrived in that time
                continue
            doc = request.doc
            self.requests.append(doc)
            command = next(iter(doc))
            target = doc[command]
            failure = next((f for f in self.failures if f[0] == command and f[1] == target), None)
            if failure is not None:
                self.failures.remove(failure)
                if "error" in failure[2]:
                    request.command_err(**failure[2]["error"])
                else:
                    request.ok(**failure[2]["ok"])
                continue
            if command == "find":
                scripted = self.documents.get(target, [])
                batch = scripted(doc) if callable(scripted) else scripted
                namespace = f"{doc['$db']}.{target}"
                cursor_id = self.cursor_ids.pop(target, 0)
                request.ok(cursor={"id": cursor_id, "ns": namespace, "firstBatch": batch})
            elif command == "getMore":
                namespace = f"{doc['$db']}.{doc['collection']}"
                request.ok(cursor={"id": 0, "ns": namespace, "nextBatch": []})
            elif command in ("insert", "delete"):
                request.ok(n=len(doc.get("documents", doc.get("deletes", []))))
            elif command == "update":
                request.ok(n=1, nModified=1)
            elif command == "listIndexes":
                if target not in self.indexes:
                    request.command_err(code=26, errmsg=f"ns does not exist: {target}")
                    continue
                namespace = f"{doc['$db']}.{target}"
                request.ok(cursor={"id": 0, "ns": namespace, "firstBatch": self.indexes[target]})
            elif command == "createIndexes":
                present = self.indexes.setdefault(target, [{"key": {"_id": 1}, "name": "_id_"}])
                present.extend(index for index in doc["indexes"] if index not in present)
                request.ok()
            elif command == "findAndModify":
                request.ok(value=None)
            else:
                request.ok()


def app_on(server_uri: str, tmp_path, **overrides):
    """An app whose MONGO_URI is the scripted server, with nothing in the background."""
    from audit_app import create_app

    from .conftest import TEST_SECRET

    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": TEST_SECRET,
            "MONGO_URI": server_uri + "/auditdb",
            "AUDIT_ENSURE_INDEXES_ON_START": False,
            "AUDIT_SEAL_IN_BACKGROUND": False,
            "AUDIT_REPLAY_INTERVAL": 0,
            "AUDIT_STREAM_INTERVAL": 0,
            "AUDIT_PURGE_INTERVAL": 0,
            "AUDIT_COUNTS_INTERVAL": 0,
            "AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "RATELIMIT_STORAGE_URI": "memory://",
            **overrides,
        }
    )


def member_documents(permissions: list[str]) -> tuple[dict, ObjectId]:
    """The platform documents a JWT of an Admin resolves through; returns them and the org."""
    organization_id, account_id, role_id = ObjectId(), ObjectId(), ObjectId()
    now = utcnow()
    account = {
        "_id": account_id,
        "email": "admin@example.test",
        "emailLower": "admin@example.test",
        "passwordHash": "x",
        "createdAt": now,
    }
    return {
        "accounts": [account],
        "memberships": [
            {"organizationId": organization_id, "accountId": account_id, "roleId": role_id}
        ],
        "roles": [
            {
                "_id": role_id,
                "organizationId": organization_id,
                "name": "Admin",
                "key": "admin",
                "permissions": permissions,
            }
        ],
        "organizations": [{"_id": organization_id, "name": "Wire Org", "createdAt": now}],
    }, organization_id
