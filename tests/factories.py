"""Test data made through the public data layer, and a small JSON API client."""

from __future__ import annotations

from dataclasses import dataclass, field

from audit_app.api_keys import repository as api_keys
from audit_app.db import get_db
from audit_app.organizations import service as access
from audit_app.workspaces import repository as workspaces

PASSWORD = "correct horse battery"


@dataclass
class Person:
    email: str
    password: str
    account_id: object
    role: str


@dataclass
class Org:
    id: object
    name: str
    roles: dict
    owner: Person
    admin: Person
    member: Person
    workspace: dict
    other_workspace: dict
    api_key: str
    api_key_id: object
    people: dict = field(default_factory=dict)


def make_org(app, name: str) -> Org:
    slug = name.lower()
    with app.app_context():
        db = get_db()
        made = access.create_organization(name, f"owner@{slug}.example", PASSWORD)
        org_id = made["organization"]["_id"]
        people = {"owner": Person(f"owner@{slug}.example", PASSWORD, made["owner"]["_id"], "Owner")}
        for key, role in (("admin", "admin"), ("member", "member")):
            account = access.add_member_as_operator(
                org_id, f"{key}@{slug}.example", PASSWORD, made["roles"][role]
            )["account"]
            people[key] = Person(account["email"], PASSWORD, account["_id"], role)
        workspace = workspaces.create_workspace(db, org_id, f"{name} main")
        other = workspaces.create_workspace(db, org_id, f"{name} second")
        key, secret = api_keys.create_api_key(
            db,
            org_id,
            name="ci",
            role_id=made["roles"]["admin"]["_id"],
            workspace_id=None,
            created_by=None,
        )
    return Org(
        org_id,
        name,
        made["roles"],
        people["owner"],
        people["admin"],
        people["member"],
        workspace,
        other,
        secret,
        key["_id"],
        people,
    )


class Api:
    """Calls the JSON API as a client would, with a JWT or an API key."""

    def __init__(self, client):
        self.client = client
        self._tokens: dict = {}

    def token(self, person: Person, organization_id=None) -> str:
        cache_key = (person.email, organization_id)
        if cache_key not in self._tokens:
            body = {"email": person.email, "password": person.password}
            if organization_id is not None:
                body["organizationId"] = str(organization_id)
            answer = self.client.post("/api/v1/auth/token", json=body)
            assert answer.status_code == 200, answer.get_json()
            self._tokens[cache_key] = answer.get_json()["token"]
        return self._tokens[cache_key]

    def call(
        self,
        method: str,
        path: str,
        *,
        as_=None,
        key=None,
        token=None,
        workspace=None,
        headers=None,
        **kwargs,
    ):
        sent = dict(headers or {})
        if as_ is not None:
            sent["Authorization"] = f"Bearer {self.token(as_)}"
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if key is not None:
            sent["X-API-Key"] = key
        if workspace is not None:
            sent["X-Workspace-Id"] = str(workspace)
        return self.client.open(path, method=method, headers=sent, **kwargs)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, **kw):
        return self.call("POST", path, **kw)

    def patch(self, path, **kw):
        return self.call("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)


def audit_record(organization_id, *, created_at=None, **fields) -> dict:
    """A stored audit record with realistic defaults (for query tests), built by the app's
    one record builder, so a test record has exactly the shape of a real one."""
    from datetime import UTC, datetime

    from bson import ObjectId

    from audit_app.audit.capture.record import new_record

    defaults = {
        "organizationId": organization_id,
        "authType": "jwt",
        "resource": "pathways",
        "method": "GET",
        "path": "/api/v1/pathways",
        "route": "/api/v1/pathways",
        "statusCode": 200,
        "createdAt": created_at or datetime.now(UTC).replace(microsecond=0),
        "durationMs": 1.5,
        "ip": "203.0.113.1",
        "userAgent": "factory/1.0",
        "requestId": ObjectId().binary.hex(),
    }
    stored = {k: fields.pop(k) for k in ("storedAt",) if k in fields}  # set by the writer
    return {**new_record(**{**defaults, **fields}), **stored}


def settled(app) -> None:
    """Store what the audit journal holds (the journal write mode, the embedded store's
    default): a test that reads the store itself right after a request settles first, as
    every reader of the log in the app does (``audit.capture.store_journaled``)."""
    from audit_app.audit.capture.hooks import store_journaled

    with app.app_context():
        store_journaled(app)
