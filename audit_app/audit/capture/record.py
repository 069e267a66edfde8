"""Build the ``audit_logs`` document for one request (see docs/audit-schema.md).

Reading the request never raises: whatever the body is, the record is built. The body is
parsed, redacted and made BSON-safe first, and truncated only after that, so a truncated
body can never expose a secret that redaction would have caught.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import json
import os
import re
import uuid
from typing import Any

from bson import ObjectId
from flask import Request, Response, current_app, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from ...errors import error_code
from ...ids import canonical_ip, utcnow
from .. import actions
from .context import TARGET_TYPES, Notes, body_mask, notes
from .redaction import REDACTED, Redactor, safe_str, scrub_decoded, scrub_values

NEVER_STORED_HEADERS = frozenset(
    {"authorization", "cookie", "x-api-key", "proxy-authorization", "set-cookie"}
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_ROUTE_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_TEXT_TYPES = (
    "application/xml",
    "application/javascript",
    "application/x-ndjson",
    "application/graphql",
    "application/csv",
)


def request_id_from(req: Request) -> str:
    """Keep a client's sane ``X-Request-Id``; otherwise make one."""
    given = req.headers.get("X-Request-Id", "")
    if _REQUEST_ID.match(given) and scrub_values(given) == given:
        return given
    return os.urandom(16).hex()  # malformed, or a secret pasted where an id goes


def redactor() -> Redactor:
    """The app's redactor, built once from ``AUDIT_REDACT_KEYS``."""
    app = current_app
    cached = app.extensions.get("audit_app.redactor")
    if cached is None:
        cached = Redactor(app.config["AUDIT_REDACT_KEYS"], app.config.get("AUDIT_REDACT_WORDS", ()))
        app.extensions["audit_app.redactor"] = cached
    return cached


def route_of(req: Request) -> str | None:
    """The matched URL rule without converter names: ``/api/v1/pathways/<pathwayId>``."""
    rule = req.url_rule
    return _route_text(rule.rule) if rule is not None else None


@functools.lru_cache(maxsize=1024)  # one entry per URL rule of the app
def _route_text(rule: str) -> str:
    return _ROUTE_CONVERTER.sub(r"<\1>", rule)


def resource_of(req: Request) -> str:
    """The controller that handled the request: its blueprint, ``unknown`` if none matched."""
    if req.url_rule is None:
        return "unknown"
    if req.blueprint:
        return req.blueprint.rsplit(".", 1)[-1]
    return (req.endpoint or "unknown").rsplit(".", 1)[-1]


def _allowed_headers() -> frozenset:
    cached = current_app.extensions.get("audit_app.header_allowlist")
    if cached is None:
        configured = {h.lower() for h in current_app.config["AUDIT_HEADER_ALLOWLIST"]}
        cached = frozenset(configured - NEVER_STORED_HEADERS)
        current_app.extensions["audit_app.header_allowlist"] = cached
    return cached


def selected_headers(req: Request) -> dict:
    allow = _allowed_headers()
    clean = redactor()
    headers = {}
    for name, value in req.headers.items():
        lowered = name.lower()
        if lowered in allow:
            headers[name] = REDACTED if clean.is_secret(name) else clean.text(value[:2048])
    return headers


def capture_body(req: Request) -> dict:
    """Describe the request body: its kind, size, and a redacted, storable value."""
    limit = current_app.config["AUDIT_MAX_BODY_BYTES"]
    clean = redactor()
    mimetype = req.mimetype or ""
    declared = req.content_length
    if mimetype in _FORM_TYPES:
        try:
            form = {k: req.form.getlist(k) for k in req.form}
            files = [
                {
                    "field": clean.text(field),
                    "filename": clean.text(f.filename or ""),
                    "contentType": f.mimetype,
                    "size": _file_size(f),
                }
                for field in req.files
                for f in req.files.getlist(field)
            ]
        except HTTPException:
            return {"bodyType": "omitted", "bodySize": declared, "body": None}
        kept, cut = _within(form, limit, clean)
        value = clean.clean_mapping(kept)
        body: dict[str, Any] = {"bodyType": "form", "bodySize": declared, "body": value}
        if files:
            body["files"] = files
        if cut or (declared or 0) > limit:
            text = clean.json_text(value)
            if cut or len(text.encode("utf-8")) > limit:
                body.update(body=_cut(text, limit), bodyTruncated=True)
        return body
    try:
        data = req.get_data(cache=True)
    except HTTPException:  # too large or unreadable: the request was refused anyway
        return {"bodyType": "omitted", "bodySize": declared, "body": None}
    if not data:
        return {"bodyType": "empty", "bodySize": 0, "body": None}
    size = len(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _binary(mimetype, data)
    body_type = "text"
    if mimetype == "application/json" or mimetype.endswith("+json"):
        if size > limit:
            # only its start is kept: scrubbed as text, never parsed whole (see _scrubbed_start)
            body_type = "json"
        else:
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError):
                parsed = _NOT_JSON
            if parsed is not _NOT_JSON:
                return {"bodyType": "json", "bodySize": size, "body": clean.clean(parsed)}
    elif not (mimetype.startswith("text/") or mimetype in _TEXT_TYPES or mimetype == ""):
        return _binary(mimetype, data)
    body = {"bodyType": body_type, "bodySize": size, "body": None}
    redacted, truncated = _scrubbed_start(text, clean, limit)
    body["body"] = redacted
    if truncated:
        body["bodyTruncated"] = True
    return body


_NOT_JSON = object()


# A body over the kept size (``AUDIT_MAX_BODY_BYTES``) is scrubbed only as far as a window
# of the kept size plus two margins, whatever its size (4 MB of one character cost 23 s when
# the whole body was scrubbed). A secret that starts before the cut and ends after it (a
# JWT, a "password": "..." value, a user:password@ URL) is within the window and recognised
# whole. What comes from the window's end, where a secret may be cut in two, is never kept:
# the scrubbed text's last two margins are dropped, even when redactions before them shrank
# the text (a redacted 70 KB value) and so pulled them towards the start. (Redactions can
# also grow a text, by at most 10 characters each: more than 800 of them in the last 16 KB
# could still pull in a fragment. docs/security.md)
SCRUB_MARGIN = 8 * 1024
_ROW_COST = 16  # what one form field or value costs the budget beyond its characters


def _scrubbed_start(text: str, clean: Redactor, limit: int) -> tuple[str, bool]:
    """The redacted start of a text body, at most ``limit`` bytes, and whether it was cut."""
    window = limit + 2 * SCRUB_MARGIN
    if len(text) <= window:
        redacted = clean.text(text)
        if len(redacted.encode("utf-8")) > limit:
            return _cut(redacted, limit), True
        return redacted, False
    redacted = clean.text(text[:window])
    return _cut(redacted[: max(0, len(redacted) - 2 * SCRUB_MARGIN)], limit), True


def _within(
    form: dict[str, list[str]], budget: int, clean: Redactor
) -> tuple[dict[str, list[str]], bool]:
    """The form's fields in order until ``budget`` (each field and value costs its length
    plus a few characters, so that 250,000 empty values are not all kept), and whether
    anything was cut: the rest is never scrubbed. The value cut at the budget is scrubbed
    with a margin past the cut, and what comes from the margin is dropped."""
    kept: dict[str, list[str]] = {}
    for key, values in form.items():
        if budget <= 0:
            return kept, True
        key = key[:budget]
        budget -= len(key) + _ROW_COST
        kept[key] = []
        for value in values:
            if budget <= 0:
                return kept, True
            if len(value) > budget:
                redacted = clean.text(value[: budget + 2 * SCRUB_MARGIN])
                if len(value) > budget + 2 * SCRUB_MARGIN:
                    redacted = redacted[: max(0, len(redacted) - 2 * SCRUB_MARGIN)]
                kept[key].append(redacted[:budget])
                return kept, True
            kept[key].append(value)
            budget -= len(value) + _ROW_COST
    return kept, False


def _cut(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _binary(mimetype: str, data: bytes) -> dict:
    return {
        "bodyType": "binary",
        "bodySize": len(data),
        "body": None,
        "binary": {
            "contentType": mimetype or None,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    }


def _file_size(storage) -> int | None:
    try:
        stream = storage.stream
        position = stream.tell()
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(position)
        return size
    except (OSError, AttributeError, ValueError):
        return None


def build_record(response: Response, duration_ms: float) -> dict:
    """Assemble the document for the current request and its response."""
    clean = redactor()
    query = clean.clean_mapping({k: request.args.getlist(k) for k in request.args})
    params = clean.clean({k: str(v) for k, v in (request.view_args or {}).items()})
    details = {"query": query, "params": params, "headers": selected_headers(request)}
    details.update(capture_body(request))
    for key, value in notes().details.items():  # what a service added (a staff grant)
        details[key] = clean.clean(value)
    mask = body_mask(request.endpoint)
    if mask is not None:  # secrets only its view knows (a log stream's destination URL)
        details["body"] = mask(details["body"])
    return {**summary_fields(response, duration_ms), "request": details}


def redacted_path() -> str:
    """The URL path, with path parameters that hold secrets (an invitation token) masked."""
    clean = redactor()
    path = safe_str(request.path)
    for key, value in (request.view_args or {}).items():
        if isinstance(value, str) and value and clean.is_secret(key):
            path = path.replace(value, REDACTED)
    return clean.text(path)


RECORD_FIELDS = (
    "_id",
    "organizationId",
    "accountId",
    "accountEmail",
    "apiKeyId",
    "apiKeyName",
    "workspaceId",
    "authType",
    "credentialId",
    "action",
    "resource",
    "method",
    "path",
    "route",
    "statusCode",
    "createdAt",
    "durationMs",
    "ip",
    "userAgent",
    "requestId",
    "response",
    "outcome",
    "targets",
)
OPTIONAL_FIELDS = ("changes",)  # present only when there is something to say
_KNOWN_FIELDS = frozenset((*RECORD_FIELDS, *OPTIONAL_FIELDS, "request"))
(UNMATCHED_ACTION,) = actions.declare("request.unmatched")  # no route matched the request
(OPTIONS_ACTION,) = actions.declare("request.options")  # which methods a path takes


def new_record(**fields) -> dict:
    """The one builder of an ``audit_logs`` document, for HTTP requests and CLI commands.

    Every top-level field is present (unknown ones are refused), so records of every origin
    have the same shape; what is not given is null, or a fresh id and the current time.
    """
    unknown = fields.keys() - _KNOWN_FIELDS
    if unknown:
        raise TypeError(f"not audit record fields: {sorted(unknown)}")
    record: dict = dict.fromkeys(RECORD_FIELDS)
    record.update(
        authType="none",
        durationMs=0.0,
        response={},
        outcome=SUCCESS,
        targets=[],
        request={"query": {}, "params": {}, "headers": {}, "bodyType": "empty", "body": None},
    )
    record.update(fields)
    # made only when not given (a request's record gives them: no id or time wasted)
    if record["_id"] is None:
        record["_id"] = ObjectId()
    if record["createdAt"] is None:
        record["createdAt"] = utcnow()
    if record["requestId"] is None:
        record["requestId"] = uuid.uuid4().hex
    return record


SUCCESS, FAILURE = "success", "failure"
OUTCOMES = (SUCCESS, FAILURE)


def outcome_of(status: int, noted: Notes) -> str:
    """``failure`` when the request did not do what it asked: an error status, or a page
    that answered with the form's refusal (a web form redirects or re-renders on one)."""
    return FAILURE if status >= 400 or noted.error else SUCCESS


def targets_of(noted: Notes, *, from_path: bool = True) -> list[dict]:
    """What the request acted on: what its service named (with names as they were), else,
    for a refused request or one no service saw, the ids its path names (no names: a path
    may name another organization's object, whose name is not this log's business)."""
    if noted.targets:
        return [
            {"type": t["type"], "id": t["id"], "name": _clean_or_none(t["name"])}
            for t in noted.targets
        ]
    found: list[dict] = []
    arguments = (request.view_args or {}) if from_path else {}
    for kind, parameter in TARGET_TYPES.items():
        value = arguments.get(parameter)
        if isinstance(value, str) and len(value) == 24 and ObjectId.is_valid(value):
            found.append({"type": kind, "id": ObjectId(value), "name": None})
    return found


def _clean_or_none(text: str | None) -> str | None:
    return redactor().text(text) if text else None


def action_of(req: Request, status: int, noted: str | None) -> str:
    """What the request did: what its service noted, else what its view declares (its
    ``failed`` variant for a 4xx or 5xx, e.g. ``session.loginFailed``)."""
    if noted:
        return noted
    if req.url_rule is None or req.endpoint is None:
        return UNMATCHED_ACTION
    if req.method == "OPTIONS":  # answered by Flask itself: the view did not run
        return OPTIONS_ACTION
    view = current_app.view_functions.get(req.endpoint)
    declared = getattr(view, "audit_action", None)
    if declared is None:  # every recorded view declares one (tests/test_actions.py)
        return f"{resource_of(req)}.{req.method.lower()}"
    failed = getattr(view, "audit_action_failed", None)
    return failed if failed and status >= 400 else declared


def response_of(status: int, notes: Notes) -> dict:
    """``{errorCode, errorMessage}`` of the error the client saw; ``{id}`` of what was made."""
    if status >= 400 or notes.error:  # (a refused web form answers with a redirect)
        error = notes.error or {"errorCode": error_code(HTTP_STATUS_CODES.get(status, "error"))}
        message = error.get("errorMessage")
        return {
            "errorCode": safe_str(error["errorCode"])[:64],
            # our own words, which may quote what the client sent: its secrets are masked
            "errorMessage": scrub_decoded(safe_str(message)[:1024]) if message else None,
        }
    if notes.created_id is not None:
        return {"id": str(notes.created_id)}
    return {}


def summary_fields(response: Response | Any, duration_ms: float) -> dict:
    """Every top-level field of the record: who, what, when, how it ended."""
    principal = g.get("principal")
    noted = notes()
    status = response.status_code
    record = new_record(
        _id=g.get("audit_record_id") or ObjectId(),
        organizationId=getattr(principal, "organization_id", None),
        accountId=getattr(principal, "account_id", None),
        accountEmail=getattr(principal, "account_email", None),
        apiKeyId=getattr(principal, "api_key_id", None),
        apiKeyName=_clean_or_none(getattr(principal, "api_key_name", None)),
        workspaceId=noted.workspace_id,
        authType=getattr(principal, "auth_type", "none"),
        credentialId=noted.credential_id or getattr(principal, "credential_id", None),
        action=action_of(request, status, noted.action),
        resource=resource_of(request),
        method=request.method,
        path=redacted_path(),
        route=route_of(request),
        statusCode=status,
        createdAt=g.audit_started_at,
        durationMs=round(duration_ms, 3),
        ip=canonical_ip(request.remote_addr),
        userAgent=_clean_or_none(request.headers.get("User-Agent", "")[:1024]),
        requestId=g.request_id,
        response=response_of(status, noted),
        outcome=outcome_of(status, noted),
        targets=targets_of(noted),
    )
    if noted.opened_auth_type and status < 400:  # a login: the credential it opened
        record["authType"] = noted.opened_auth_type
    del record["request"]
    if noted.changes:
        record["changes"] = noted.changes
    actor = noted.actor
    if actor and (record["organizationId"] is None or noted.actor_overrides):
        if record["organizationId"] not in (None, actor.get("organizationId")):
            # the caller's own organization's key or workspace is not the other's business
            record.update(apiKeyId=None, apiKeyName=None, workspaceId=None)
        record.update(actor)
        record["apiKeyName"] = _clean_or_none(record.get("apiKeyName"))
    return record


def operator_record(
    organization_id, command: str, options: dict, *, action: str, details: dict | None = None
) -> dict:
    """The record of an operator's command on the server (``authType: "cli"``), with what
    the command's services noted (``changes``, the id of what it created)."""
    noted = notes()
    extra = {"changes": noted.changes} if noted.changes else {}
    return new_record(
        organizationId=organization_id,
        authType="cli",
        targets=targets_of(noted, from_path=False),
        action=noted.action or action,
        response=response_of(200, noted),
        **extra,
        resource="cli",
        method="CLI",
        path=f"flask {command}",
        route=command,
        statusCode=200,
        userAgent=f"flask-cli (user {_operator_name()})",
        request={
            "query": {},
            "params": redactor().clean({k: v for k, v in options.items() if v is not None}),
            "headers": {},
            "bodyType": "empty",
            "body": None,
            "bodySize": 0,
            **(details or {}),
        },
    )


def _operator_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return f"uid {os.getuid()}"
