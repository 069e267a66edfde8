"""The demo organization: three people, two workspaces, an API key and real traffic.

The traffic is made through the app itself (Flask's test client), so every request passes
the same hooks as a real one and lands in the audit log exactly as production records do:
successes, validation errors, a 401, 403s and 404s, bodies with secrets to redact. It is
dated over the last 14 days (``requests_happen_at``), with two incidents a chart shows: a
burst of failed logins, and an integration failing for an hour.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta

from .audit.capture.context import requests_happen_at
from .audit.capture.hooks import store_journaled
from .audit.integrity.sealing import anchor
from .db import get_db
from .ids import utcnow
from .organizations import repository as orgs
from .organizations import service as access
from .organizations.permissions import ADMIN, MEMBER

DEMO_ORGANIZATION = "Acme Learning (demo)"
DEMO_LOGINS = [
    {"role": "Owner", "email": "owner@demo.example", "password": "demo-owner-pass"},
    {"role": "Admin", "email": "admin@demo.example", "password": "demo-admin-pass"},
    {"role": "Member", "email": "member@demo.example", "password": "demo-member-pass"},
]
_AGENTS = [
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Mozilla/5.0 (Macintosh) Safari/605.1.15",
    "acme-sync/1.4 (+ci)",
    "PostmanRuntime/7.39.0",
]
_IPS = ["203.0.113.10", "198.51.100.24", "192.0.2.77", "203.0.113.58"]
TARGETED = "finance@demo.example"
_ATTACKER_IP = "192.0.2.200"


def find_demo(db) -> dict | None:
    owner = orgs.find_account_by_email(db, DEMO_LOGINS[0]["email"])
    if owner is None:
        return None
    for organization in orgs.list_organizations_of_account(db, owner["_id"]):
        if organization["name"] == DEMO_ORGANIZATION:
            return organization
    return None


@contextlib.contextmanager
def _quiet_limiter() -> Iterator[None]:
    limiter_log = logging.getLogger("flask-limiter")
    level = limiter_log.level
    limiter_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        limiter_log.setLevel(level)


def seed_demo(app, request_count: int = 300) -> dict:
    """Create the demo organization once; later calls only report it."""
    with app.app_context():
        return _seed(app, request_count)


def _seed(app, request_count: int) -> dict:
    db = get_db(app)
    existing = find_demo(db)
    if existing is not None:
        return {
            "organizationId": str(existing["_id"]),
            "created": False,
            "message": f"The demo organization already exists ({existing['_id']}).",
        }
    made = access.create_organization(
        DEMO_ORGANIZATION, DEMO_LOGINS[0]["email"], DEMO_LOGINS[0]["password"]
    )
    organization_id = made["organization"]["_id"]
    for login, key in ((DEMO_LOGINS[1], ADMIN), (DEMO_LOGINS[2], MEMBER)):
        access.add_member_as_operator(
            organization_id, login["email"], login["password"], made["roles"][key]
        )
    # the target of the demo's password-guessing incident (not a login a newcomer uses:
    # the guesses rate-limit the account they name)
    access.add_member_as_operator(
        organization_id, TARGETED, secrets.token_urlsafe(16), made["roles"][MEMBER]
    )
    traffic = _Traffic(app, random.Random(20261125))  # noqa: S311 - demo data, not crypto
    with _quiet_limiter():  # the demo's password guessing is refused on purpose: not news
        summary = traffic.run(request_count)
    store_journaled(app)  # stored before the moment that excuses their dates is set
    # its records are dated back on purpose: said outside the database, once, so that
    # sealing and verify do not name them (docs/integrity.md, "Times no request explains")
    anchor(app).anchor_backdated(organization_id, utcnow())
    return {
        "organizationId": str(organization_id),
        "created": True,
        **summary,
        "message": f"Created the demo organization {DEMO_ORGANIZATION!r} "
        f"({organization_id}) with {summary['requests']} recorded API requests.",
    }


class _Traffic:
    """Plays realistic API clients against the app."""

    DAYS = 14

    def __init__(self, app, rng: random.Random):
        self.client = app.test_client()
        self.rng = rng
        self.count = 0
        self.budget = 1
        self.start = utcnow() - timedelta(days=self.DAYS)
        self.pinned: datetime | None = None  # the moment of an incident's calls

    def moment(self):
        """When the next call happens: through the 14 days in order, in working hours."""
        if self.pinned is not None:
            self.pinned += timedelta(seconds=self.rng.uniform(5, 40))
            return self.pinned
        day = self.start + timedelta(days=int(self.DAYS * self.count / self.budget))
        hour = self.rng.choice([8, 9, 10, 11, 13, 14, 15, 16, 17, 20])
        at = day.replace(hour=hour) + timedelta(minutes=self.rng.uniform(0, 59))
        return min(at, utcnow() - timedelta(minutes=5))

    def call(
        self,
        method,
        path,
        *,
        token=None,
        key=None,
        workspace=None,
        body=None,
        headers=None,
        ip=None,
    ):
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if key:
            sent["X-API-Key"] = key
        if workspace:
            sent["X-Workspace-Id"] = workspace
        sent.setdefault("User-Agent", self.rng.choice(_AGENTS))
        self.count += 1
        with requests_happen_at(self.moment()):
            return self.client.open(
                path,
                method=method,
                json=body,
                headers=sent,
                environ_base={"REMOTE_ADDR": ip or self.rng.choice(_IPS)},
            )

    def incident(self, day: int, hour: int, calls) -> None:
        """A run of calls pinned to one hour of one day (``calls`` makes them)."""
        self.pinned = (self.start + timedelta(days=day)).replace(hour=hour, minute=5)
        try:
            calls()
        finally:
            self.pinned = None

    def token(self, login) -> str:
        answer = self.call(
            "POST",
            "/api/v1/auth/token",
            body={"email": login["email"], "password": login["password"]},
        )
        return answer.get_json()["token"]

    def _guessing(self) -> None:
        """Day 5: someone tries passwords against an account, from one address (401s,
        then the login rate limit's 429s)."""
        for i in range(max(self.budget // 12, 8)):
            self.call(
                "POST",
                "/api/v1/auth/token",
                ip=_ATTACKER_IP,
                body={"email": TARGETED, "password": f"guess-{i}"},
            )

    def _failing_integration(self, api_key: str) -> None:
        """Day 10: the CI pipeline's key calls an endpoint its role may not (403s)."""
        for _ in range(max(self.budget // 15, 6)):
            self.call("POST", "/api/v1/workspaces", key=api_key, body={"name": "ci-tmp"})

    def run(self, budget: int) -> dict:
        self.budget = max(budget, 1)
        owner, admin, member = (self.token(login) for login in DEMO_LOGINS)
        workspaces = [
            self.call(
                "POST", "/api/v1/workspaces", token=owner, body={"name": name, "description": text}
            ).get_json()["id"]
            for name, text in (
                ("Onboarding", "New-hire learning paths"),
                ("Research", "Pathways for the research team"),
            )
        ]
        roles = self.call("GET", "/api/v1/roles", token=admin).get_json()["items"]
        member_role = next(r["id"] for r in roles if r["name"] == "Member")
        created = self.call(
            "POST",
            "/api/v1/api-keys",
            token=admin,
            body={"name": "CI pipeline", "roleId": member_role, "workspaceId": workspaces[0]},
        ).get_json()
        api_key = created["key"]
        pathways: list[tuple[str, str]] = []
        rng = self.rng
        incidents = {
            int(budget * 5 / self.DAYS): lambda: self.incident(5, 3, self._guessing),
            int(budget * 10 / self.DAYS): lambda: self.incident(
                10, 14, lambda: self._failing_integration(api_key)
            ),
        }
        while self.count < budget:
            for at in [at for at in incidents if self.count >= at]:
                incidents.pop(at)()
            workspace = rng.choice(workspaces)
            who = rng.choice([owner, admin, member, member])
            roll = rng.random()
            if roll < 0.22 or not pathways:
                if rng.random() < 0.2:  # a client sending a field the API does not accept
                    self.call(
                        "POST",
                        "/api/v1/pathways",
                        token=who,
                        workspace=workspace,
                        body={
                            "name": "Imported pathway",
                            "integration": {
                                "webhookUrl": "https://hooks.example",
                                "apiToken": "tok_demo_secret",
                            },
                        },
                    )
                body = self.call(
                    "POST",
                    "/api/v1/pathways",
                    token=who,
                    workspace=workspace,
                    body={
                        "name": f"Pathway {rng.randint(100, 999)}",
                        "description": "Week one essentials",
                        "steps": [{"title": "Read the handbook"}, {"title": "Meet your buddy"}],
                    },
                ).get_json()
                pathways.append((body["id"], workspace))
            elif roll < 0.5:
                self.call(
                    "GET",
                    "/api/v1/pathways",
                    token=who,
                    workspace=workspace,
                    headers={"Accept": "application/json"},
                )
            elif roll < 0.62:
                pathway, where = rng.choice(pathways)
                self.call("GET", f"/api/v1/pathways/{pathway}", token=who, workspace=where)
            elif roll < 0.7:
                pathway, where = rng.choice(pathways)
                self.call(
                    "PATCH",
                    f"/api/v1/pathways/{pathway}",
                    token=who,
                    workspace=where,
                    body={"description": f"Revised {rng.randint(1, 9)}"},
                )
            elif roll < 0.76:
                self.call("GET", "/api/v1/pathways", key=api_key)
            elif roll < 0.8:
                self.call("GET", "/api/v1/members", token=rng.choice([owner, admin]))
            elif roll < 0.83:
                self.call(
                    "POST",
                    "/api/v1/roles",
                    token=member,
                    body={"name": "Auditors", "permissions": ["viewAuditLog"]},
                )
            elif roll < 0.86:
                self.call("GET", f"/api/v1/pathways/{'0' * 24}", token=who, workspace=workspace)
            elif roll < 0.88:
                self.call(
                    "POST",
                    "/api/v1/auth/token",
                    body={"email": "owner@demo.example", "password": "wrong-password"},
                )
            elif roll < 0.9:
                self.call("GET", "/api/v1/workspaces", token="not-a-real-token")
            elif roll < 0.93:
                self.call(
                    "POST",
                    "/api/v1/pathways",
                    token=who,
                    workspace=workspace,
                    body={"name": "", "steps": "not-a-list"},
                )
            elif roll < 0.96 and len(pathways) > 3:
                pathway, where = pathways.pop(rng.randrange(len(pathways)))
                self.call("DELETE", f"/api/v1/pathways/{pathway}", token=who, workspace=where)
            else:
                self.call("GET", "/api/v1/organization", token=who)
        return {"requests": self.count, "workspaces": workspaces, "apiKeyPrefix": created["prefix"]}
