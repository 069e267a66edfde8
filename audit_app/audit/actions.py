"""The actions records name (``<resource>.<verb>``), and how the UI reads them.

Each view declares its action beside its code (``capture.audit_action``); what a service or
a command names in place of it is declared where it is used, with ``declare``. The set of
both is what ``action:<resource>.*`` searches and what docs/audit-schema.md lists (a test
holds the two equal).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask

ACTION = re.compile(r"^[a-z][A-Za-z0-9]*\.[a-z][A-Za-z0-9]*$")
_DECLARED: set[str] = set()


def declare(*names: str) -> tuple[str, ...]:
    """Declare actions named outside a view's declaration (a service, a command)."""
    for name in names:
        if not ACTION.match(name):
            raise ValueError(f"an action is <resource>.<verb> in camelCase, not {name!r}")
    _DECLARED.update(names)
    return names


# a reader's views of the log (the list, a record, the chart, the integrity page), which the
# web list hides for its viewer by default; an export is no view: it stays in sight
LOG_VIEWS = ("auditLog.list", "auditLog.view", "auditLog.histogram", "auditLog.viewIntegrity")


def canonical_action(actions: Iterable[str], name: str) -> str:
    """The declared spelling of an action named in any case (``member.ADD``: member.add);
    a name no action has stays as given (it finds what it names, as before)."""
    folded = name.lower()
    return next((action for action in actions if action.lower() == folded), name)


def known_actions(app: Flask) -> list[str]:
    """Every action a record of this app can carry, sorted."""
    cached = app.extensions.get("audit_app.actions")
    if cached is None:
        found = set(_DECLARED)
        for view in app.view_functions.values():
            for attribute in ("audit_action", "audit_action_failed"):
                name = getattr(view, attribute, None)
                if name:
                    found.add(name)
        cached = app.extensions["audit_app.actions"] = sorted(found)
    return list(cached)


def of_resource(actions: Iterable[str], resource: str) -> list[str]:
    """The actions of a resource, named in any case (``MEMBER``: member's)."""
    folded = resource.lower()
    return [name for name in actions if name.split(".", 1)[0].lower() == folded]


# Targets -----------------------------------------------------------------------------------

# What each action's records name as ``targets`` (docs/audit-schema.md's table is this one: a
# test holds them equal, and a test holds every record's target types to it). A refused
# request names what its path names, with no name.
_SAME = ("pathway", "role", "workspace", "auditStream")
TARGETS: dict[str, tuple[str, ...]] = {
    "account.passwordChange": ("member",),
    "account.revokeCredentials": ("member",),
    "apiKey.create": ("apiKey",),
    "apiKey.revoke": ("apiKey",),
    "auditLog.view": ("auditLog",),
    "auditLog.viewProof": ("auditLog",),
    "auditStream.test": ("auditStream",),
    "invitation.accept": ("invitation", "member"),
    "invitation.open": ("invitation",),
    "invitation.revoke": ("invitation",),
    "member.add": ("member",),
    "member.invite": ("invitation", "role"),
    "member.remove": ("member",),
    "member.roleChange": ("member", "role"),
    "organization.create": ("organization", "member"),
    "organization.update": ("organization",),
    "role.permissionsChange": ("role",),
    # the platform's support staff (``staff/``): a grant names its organization and itself;
    # a read under it names the grant (and the record it opened); a refused one its path's
    "staff.grantRequested": ("organization", "staffGrant"),
    "staff.grantApproved": ("staffGrant",),
    "staff.grantDenied": ("staffGrant",),
    "staff.grantRevoked": ("staffGrant",),
    "staff.access": ("staffGrant", "auditLog", "organization"),
    # a destructive web form's first POST: its confirmation page (web/confirm.py)
    "apiKey.revokeAsked": ("apiKey",),
    "auditStream.deleteAsked": ("auditStream",),
    "invitation.revokeAsked": ("invitation",),
    "staff.grantRevokedAsked": ("staffGrant",),
    "member.removeAsked": ("member",),
    "organization.updateAsked": ("organization",),
    "role.deleteAsked": ("role",),
    "workspace.deleteAsked": ("workspace",),
    **{
        f"{kind}.{verb}": (kind,)
        for kind in _SAME
        for verb in ("create", "update", "delete", "view")
    },
}


# Labels ------------------------------------------------------------------------------------

_RESOURCES = {"apiKey": "API key", "apiDocs": "API description", "auditLog": "Audit log"}
_LABELS = {  # where "<resource> <verb>ed" does not read well
    "request.unmatched": "No such endpoint",
    "auditLog.list": "Audit log searched",
    "auditLog.viewIntegrity": "Audit log integrity viewed",
    "auditLog.viewCheckpoint": "Audit log checkpoint viewed",
    "auditLog.viewConsistency": "Audit log consistency proof viewed",
    "auditLog.viewProof": "Audit record proof downloaded",
    "auditLog.checkpointed": "Audit log checkpoint signed",
    "auditLog.acknowledgeIntegrity": "Audit log integrity failure acknowledged",
    "session.login": "Logged in",
    "session.loginFailed": "Login failed",
    "session.logout": "Logged out",
    "session.switchOrganization": "Switched organization",
    "invitation.open": "Invitation opened",
    "account.revokeCredentials": "Account credentials revoked",
    "account.passwordChange": "Password changed",
    "member.roleChange": "Member's role changed",
    "role.permissionsChange": "Role's permissions changed",
    "staff.login": "Platform staff signed in",
    "staff.loginFailed": "Platform staff sign-in failed",
    "staff.logout": "Platform staff signed out",
    "staff.lookup": "Platform staff looked up an id",
    "staff.listGrants": "Platform staff listed their grants",
    "staff.grantRequested": "Platform staff requested access",
    "staff.grantApproved": "Platform staff access approved",
    "staff.grantDenied": "Platform staff access denied",
    "staff.grantRevoked": "Platform staff access revoked",
    "staff.grantRevokedAsked": "Platform staff access revocation: confirmation asked",
    "staff.access": "Platform staff read the log",
    "staff.listRequests": "Platform staff requests listed",
}
_VERBS = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "list": "s listed",
    "view": "viewed",
    "revoke": "revoked",
    "invite": "invited",
    "remove": "removed",
    "add": "added",
    "accept": "accepted",
    "login": "logged in",
    "loginFailed": "login failed",
    "logout": "logged out",
    "export": "exported",
    "exportEnded": "export ended",
    "exportDigests": "digests exported",
    "verify": "verified",
    "unmatched": "no such page",
}


# What an action is called when it did not happen: "Role creation refused"
_NOUNS = {
    "create": "creation",
    "delete": "deletion",
    "revoke": "revocation",
    "invite": "invitation",
    "remove": "removal",
    "add": "addition",
    "accept": "acceptance",
    "list": "listing",
    "open": "opening",
    "verify": "verification",
    "exportDigests": "digest export",
    "switchOrganization": "organization switch",
    "passwordChange": "password change",
}


def _words(camel: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r" \1", camel).lower()


def record_label(record: Mapping[str, Any]) -> str:
    """What a record's action reads as, said as what happened: "Role created", or "Role
    creation refused" (401, 403) or "... failed" (another error) when it did not happen."""
    action = record.get("action")
    status = record.get("statusCode")
    failed = record.get("outcome") == "failure" or (isinstance(status, int) and status >= 400)
    if not failed or not action or "." not in action or action.endswith("Failed"):
        return label(action)
    if action in ("request.unmatched", "request.options"):
        return label(action)
    resource, verb = action.split(".", 1)
    noun = _NOUNS.get(verb) or _words(verb)
    error = (record.get("response") or {}).get("errorCode")
    refused = status in (401, 403) or error in ("forbidden", "unauthorized")
    how = "refused" if refused else "failed"  # (a web form answers a refusal with a 302)
    return f"{_subject(resource)} {noun} {how}"


_TARGET_WORDS = {
    "member": "member",
    "role": "role",
    "apiKey": "API key",
    "workspace": "workspace",
    "pathway": "pathway",
    "invitation": "invitation for",
    "auditStream": "audit stream",
    "organization": "organization",
    "auditLog": "audit log record",
}


def target_text(target: Mapping[str, Any]) -> str:
    """One target as people read it: ``role Auditors``, ``member ana@corp.example``."""
    word = _TARGET_WORDS.get(str(target.get("type")), str(target.get("type")))
    return f"{word} {target.get('name') or target.get('id') or '?'}"


def actor_text(record: Mapping[str, Any]) -> str:
    """Who did it, as a sentence names them."""
    if record.get("accountEmail"):
        return str(record["accountEmail"])
    if record.get("apiKeyName"):
        return f"API key {record['apiKeyName']}"
    if record.get("authType") == "cli":
        return "the operator (command line)"
    return "an unauthenticated client"


def matched_text(matched: Iterable[str]) -> str:
    """How a record found by an id involves it: "by it", "acted on it", "in it"."""
    matched = set(matched)
    said = []
    if matched & {"actor", "apiKey"}:
        said.append("by it")
    if "target" in matched:
        said.append("acted on it")
    if "workspace" in matched and not said:
        said.append("in it")
    return ", ".join(said)


def sentence(record: Mapping[str, Any]) -> str:
    """The record as one sentence, the target first: "ana@corp.example's role changed from
    Member to Admin by owner@corp.example", "Role creation refused: role Auditors, by ..."."""
    targets = [t for t in record.get("targets") or () if isinstance(t, Mapping)]
    who = actor_text(record)
    failed = record.get("outcome") == "failure"
    if record.get("action") == "member.roleChange" and not failed:
        member = next((t for t in targets if t.get("type") == "member"), None)
        change = next(
            (
                c
                for c in record.get("changes") or ()
                if isinstance(c, Mapping) and c.get("field") == "role"
            ),
            None,
        )
        if member is not None and change is not None:
            name = member.get("name") or member.get("id")
            return f"{name}'s role changed from {change.get('from')} to {change.get('to')} by {who}"
    said = record_label(record)
    if targets:
        return f"{said}: {', '.join(target_text(t) for t in targets)}, by {who}"
    return f"{said}, by {who}"


def label(action: str | None) -> str:
    """``apiKey.create`` -> "API key created"; ``workspace.list`` -> "Workspaces listed"."""
    if not action or "." not in action:
        return action or ""
    if action in _LABELS:
        return _LABELS[action]
    resource, verb = action.split(".", 1)
    if verb.endswith("Asked"):  # "Member removal: confirmation asked" (nothing done yet)
        asked = verb.removesuffix("Asked")
        return f"{_subject(resource)} {_NOUNS.get(asked) or _words(asked)}: confirmation asked"
    said = _VERBS.get(verb) or " " + _words(verb)
    return _subject(resource) + (said if said.startswith("s ") else " " + said.lstrip())


def _subject(resource: str) -> str:
    """What a label calls a resource: ``apiKey`` -> "API key", ``member`` -> "Member"."""
    return _RESOURCES.get(resource) or _words(resource).capitalize()


# The access transparency of the platform's support staff: each grant request, decision and
# read under a grant is recorded in the organization's own log with ``authType: "staff"``
# (docs/security.md, "Platform staff")
STAFF_ACTIONS = declare(
    "staff.grantRequested",
    "staff.grantApproved",
    "staff.grantDenied",
    "staff.grantRevoked",
    "staff.access",
)
