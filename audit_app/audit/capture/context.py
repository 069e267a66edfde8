"""What a view or a service tells the audit hook about its request, beyond what Flask knows.

Each request (and each operator command) starts with empty ``Notes``; services note what
they changed, what they created and which credential a login opened, and the hook puts it
in the record. Outside a request or a command, noting is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import ObjectId
from flask import g, has_app_context

_KEY = "audit_notes"


@dataclass
class Notes:
    workspace_id: ObjectId | None = None
    actor: dict[str, Any] | None = None
    actor_overrides: bool = False  # the actor's organization wins over the caller's
    action: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    created_id: ObjectId | str | None = None
    credential_id: str | None = None
    error: dict[str, str] | None = None
    targets: list[dict[str, Any]] = field(default_factory=list)
    opened_auth_type: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # more of ``request``, by key


def begin() -> Notes:
    """Start the notes of a new request or command (``g`` may outlive a request)."""
    notes = Notes()
    setattr(g, _KEY, notes)
    return notes


def notes() -> Notes:
    """The current notes; a throwaway set outside a request or a command."""
    if not has_app_context():
        return Notes()
    current = g.get(_KEY)
    return current if current is not None else begin()


def note_workspace(workspace_id: ObjectId | None) -> None:
    """Mark the request as workspace-specific, so its record carries the workspace."""
    notes().workspace_id = workspace_id


def note_actor(
    account: dict[str, Any], organization_id: ObjectId, *, overrides: bool = False
) -> None:
    """Attribute an unauthenticated request (a login) to the account it names.

    A login attempt against a known account, successful or not, belongs in the log of that
    account's organization: admins need to see failed logins of their members.
    ``overrides``: the request acts in that organization even when its caller is
    authenticated in another one (an invitation accepted with one's token from elsewhere).
    """
    current = notes()
    current.actor_overrides = overrides
    current.actor = {
        "accountId": account["_id"],
        "accountEmail": account["email"],
        "organizationId": organization_id,
    }


def note_former_credential(attribution: dict[str, Any]) -> None:
    """Attribute a request refused for a credential that *was* valid to its owner.

    A revoked or expired API key, the JWT of a removed member or of a changed password:
    the organization sees these attempts by its former insiders in its own log.
    """
    notes().actor = attribution


def note_action(action: str) -> None:
    """Name what the request did more precisely than its view's declared action."""
    notes().action = action


def note_changes(changes: list[dict[str, Any]]) -> None:
    """Add ``[{field, from, to}]`` entries (built by ``audit.changes``) to the record."""
    notes().changes.extend(changes)


def note_created(object_id: ObjectId | str) -> None:
    """The id of what the request created, for the record's ``response.id``."""
    notes().created_id = object_id


def note_credential(credential_id: str, auth_type: str | None = None) -> None:
    """The credential a login opened (a session, a JWT): its own requests carry this id,
    and the login's record its kind (``authType``: it was not authenticated before)."""
    current = notes()
    current.credential_id = credential_id
    current.opened_auth_type = auth_type


# What a record may name as a target: its ``type`` and the path parameter that holds its id
TARGET_TYPES = {
    "member": "accountId",
    "role": "roleId",
    "apiKey": "apiKeyId",
    "workspace": "workspaceId",
    "pathway": "pathwayId",
    "invitation": "invitationId",
    "auditStream": "streamId",
    "organization": "organizationId",
    "auditLog": "auditLogId",
    "staffGrant": "grantId",
}


def note_target(kind: str, object_id: ObjectId | None, name: str | None = None) -> None:
    """Name an object the request acted on (``targets``), with its name as it is now: the
    record keeps it, so a deleted object still reads well. Once per object."""
    if kind not in TARGET_TYPES:
        raise ValueError(f"not a target type: {kind!r}")
    current = notes()
    for target in current.targets:
        if target["type"] == kind and target["id"] == object_id:
            if name and not target["name"]:
                target["name"] = name
            return
    current.targets.append({"type": kind, "id": object_id, "name": name})


def note_details(key: str, value: Any) -> None:
    """Add ``request.<key>`` to the record (a staff grant's justification and ticket), as
    its redaction rules clean it."""
    notes().details[key] = value


def note_error(code: str, message: str) -> None:
    """The error the client was answered (JSON or an error page), for ``response``."""
    notes().error = {"errorCode": code, "errorMessage": message}


# Request bodies that carry secrets no redaction rule can recognise (a log stream's
# destination URL, whose path may be the credential): endpoint prefix -> what masks them in
# the record's ``request.body``, for every request to those endpoints, refused ones too
_BODY_MASKS: dict[str, Callable[[Any], Any]] = {}


def mask_bodies_of(endpoint_prefix: str, mask: Callable[[Any], Any]) -> None:
    """Keep the bodies of requests to endpoints starting with ``endpoint_prefix`` (e.g.
    ``"api.auditStreams."``) in their records only through ``mask`` (set at import)."""
    _BODY_MASKS[endpoint_prefix] = mask


def body_mask(endpoint: str | None) -> Callable[[Any], Any] | None:
    """The mask for the bodies of this endpoint's requests, if one was declared."""
    for prefix, mask in _BODY_MASKS.items():
        if endpoint and endpoint.startswith(prefix):
            return mask
    return None


# The moment requests happen: now, except while the demo plays traffic it dates in the past
# (set from code only: nothing a request sends can move it).
_CLOCK: ContextVar[datetime | None] = ContextVar("audit_request_time", default=None)


@contextmanager
def requests_happen_at(moment: datetime) -> Iterator[None]:
    """For the demo: the requests made inside are recorded as received at ``moment``."""
    token = _CLOCK.set(moment)
    try:
        yield
    finally:
        _CLOCK.reset(token)


def backdated() -> datetime | None:
    """The moment set by ``requests_happen_at``, if any."""
    return _CLOCK.get()
