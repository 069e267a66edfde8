"""Log streams as an organization manages them: every rule, for the API and the page.

- only holders of ``manageAuditStreams`` manage streams (the views' decorator), never a
  key bound to a workspace (organization-level, as members and keys are);
- a stream is a read of the log: whatever decides what it sends or where (creating one, a
  backfill, its destination, token, format or filters, resuming it) and sending a test
  event needs ``viewAuditLog`` too (``check_may_read``, here and nowhere else); naming,
  pausing and deleting a stream, and reading its settings and health, need only
  ``manageAuditStreams``: they show no record content;
- a destination must pass its checks (an https URL or a syslog host on a public address,
  unless the installation allows private ones);
- a destination's secret (the webhook's signing secret, made here; a Splunk HEC token,
  given) is shown once and then kept only encrypted (``secrets.py``), never returned;
- every change is a record with ``changes`` (secrets masked);
- a destination URL's path and query may be credentials (a Slack-style webhook path, a
  ``sig=`` or ``token=`` value): it is kept sealed (``destination.urlSealed``) beside its
  masked form, and shown masked everywhere (``shown_destination``, ``masked_body`` for
  the request bodies the audit log keeps); only the sender unseals it;
- a stream delivers only while whoever last set its destination (``destinationSetBy``: a
  member, or an API key and the member it speaks for) still holds both permissions; the
  deliverer asks ``pause_reason`` before each batch and pauses the stream otherwise, until
  someone who holds both resumes it (and so answers for its destination from then on).
"""

from __future__ import annotations

import hashlib
import re
import secrets as random_secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import ObjectId
from marshmallow import Schema
from werkzeug.datastructures import MultiDict

from ..api_keys import repository as api_keys
from ..audit.capture.changes import Target, record_changes
from ..audit.capture.context import note_created
from ..audit.store.query import FilterSchema, parse_query
from ..auth.principal import Principal
from ..db import Document, get_db
from ..errors import ApiError, bad_request, conflict, not_found
from ..ids import iso, utcnow
from ..organizations import repository as orgs
from ..organizations.permissions import VIEW_AUDIT_LOG
from ..pagination import Page, paged
from . import delivery, destinations, formats
from . import repository as streams
from .secrets import SecretUnreadable, fingerprint, open_destination, seal

STREAM_FIELDS = ("name", "destination", "format", "filters", "state", "start", "secret")
WEBHOOK_SECRET_PREFIX = "whsec_"
MANAGE = "manageAuditStreams"
READS_THE_LOG = (MANAGE, VIEW_AUDIT_LOG)
# the settings of a PATCH that decide what a stream sends or where: a read of the log
READING_SETTINGS = ("destination", "token", "format", "filters")
MAX_URL, MAX_HOST = 2000, 255  # as the API's schema says; the page's input too
# what health says of the records a stream's filters matched (how many, when): only for
# holders of viewAuditLog, as the log itself. Every time in it dates a matched record: the
# lag runs from the storedAt of the first one not delivered (or of the cursor, the last one
# delivered); a stream fails first when a matched record is there to send, and its later
# attempts (lastErrorAt, nextAttemptAt) follow from then by the backoff.
MATCHED_RECORDS_HEALTH = (
    "delivered", "failed", "truncated", "lastDeliveredAt", "lastTruncatedId", "lastTruncatedAt",
    "lagSeconds", "failingSince", "lastErrorAt", "nextAttemptAt",
)  # fmt: skip


def check_may_read(actor: Principal, what: str) -> None:
    """Refuse ``what`` (a read of the log through a stream) unless the actor holds both
    ``manageAuditStreams`` and ``viewAuditLog``: 403, and nothing changed or sent."""
    lacking = [name for name in READS_THE_LOG if not actor.can(name)]
    if lacking:
        raise ApiError(
            403,
            "forbidden",
            f"{what} reads the audit log: it needs the manageAuditStreams and viewAuditLog "
            f"permissions, and this caller lacks {' and '.join(lacking)}.",
        )


def _set_by(actor: Principal) -> dict[str, Any]:
    """Who answers for a stream's destination from now on: the member (for an API key, the
    member it speaks for, None for an operator's key) and the key, if a key did it."""
    return {
        "accountId": actor.account_id or actor.key_creator_id,
        "apiKeyId": actor.api_key_id,
        "at": utcnow(),
    }


RESUME = (
    " A member holding manageAuditStreams and viewAuditLog resumes it, and answers for its "
    "destination from then on."
)


def pause_reason(stream: Mapping[str, Any]) -> str | None:
    """Why the stream must not deliver now (its health shows it), or None: the one who last
    set its destination no longer may read the log. Asked by the deliverer before each
    batch, so a removal, a role change, a role edited or a key revoked all stop it, with no
    hook in those services."""
    db = get_db()
    organization_id = stream["organizationId"]
    setter = stream.get("destinationSetBy") or _legacy_setter(stream)
    if setter is None:
        return (
            "Paused: who set this stream's destination is not recorded (it was made or "
            "changed before that was kept)." + RESUME
        )
    account_id = setter.get("accountId")
    key_id = setter.get("apiKeyId")
    if key_id is not None:
        key = api_keys.find_api_keys_by_ids(db, organization_id, [key_id]).get(key_id)
        name = f"API key {key['name']!r}" if key else "The API key"
        if key is None or key.get("revokedAt") is not None:
            return f"Paused: the {name} that set its destination has been revoked." + RESUME
        role = orgs.find_role(db, organization_id, key["roleId"])
        lacking = _lacking(role)
        if lacking or key.get("workspaceId") is not None:
            return (
                f"Paused: the {name} that set its destination no longer holds "
                f"{' and '.join(lacking or ['the organization'])}." + RESUME
            )
        account_id = key.get("createdBy")  # the key speaks for its creator
        if account_id is None:
            return None  # an operator's key: it holds its role
    if account_id is None:
        return "Paused: who set this stream's destination is not recorded." + RESUME
    account = orgs.find_account(db, account_id)
    who = account["email"] if account else str(account_id)
    membership = orgs.find_membership(db, organization_id, account_id)
    if membership is None:
        return f"Paused: {who}, who set its destination, is no longer a member." + RESUME
    lacking = _lacking(orgs.find_role(db, organization_id, membership["roleId"]))
    if lacking:
        return (
            f"Paused: {who}, who set its destination, no longer holds {' and '.join(lacking)}."
            + RESUME
        )
    return None


def _lacking(role: Mapping[str, Any] | None) -> list[str]:
    held = set(role["permissions"]) if role else set()
    return [name for name in READS_THE_LOG if name not in held]


def _legacy_setter(stream: Mapping[str, Any]) -> dict[str, Any] | None:
    """A stream stored before ``destinationSetBy`` was kept: its creator answers for its
    destination only if it was never changed since (anyone holding manageAuditStreams could
    change it then); otherwise nobody does, and it stays paused until resumed."""
    creator = stream.get("createdBy")
    if creator is not None and stream.get("updatedAt") == stream.get("createdAt"):
        return {"accountId": creator, "apiKeyId": None}
    return None


def _checked_destination(data: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    if fmt not in formats.FORMATS:
        raise bad_request("format: must be json, ocsf or cef.", "format")
    kind = data.get("type")
    if kind not in destinations.DESTINATION_TYPES:
        raise bad_request("destination.type: must be webhook, splunk or syslog.", "destination")
    if kind == "syslog":
        host, port = data.get("host"), data.get("port")
        if not isinstance(host, str) or not host or not isinstance(port, int):
            raise bad_request("destination: syslog needs host and port.", "destination")
        if len(host) > MAX_HOST:
            raise bad_request(f"destination.host: at most {MAX_HOST} characters.", "destination")
        if not 1 <= port <= 65535 or isinstance(port, bool):
            raise bad_request("destination.port: must be from 1 to 65535.", "destination")
        destination = {
            "type": kind,
            "host": host.strip(),
            "port": port,
            "tls": bool(data.get("tls")),
        }
    else:
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise bad_request(f"destination: {kind} needs a url.", "destination")
        if len(url) > MAX_URL:
            raise bad_request(f"destination.url: at most {MAX_URL} characters.", "destination")
        destination = {"type": kind, "url": url.strip()}
    if fmt == "cef" and kind != "syslog":
        raise bad_request("format: cef is for syslog destinations; use json or ocsf.", "format")
    try:
        destinations.check(destination)
    except destinations.AddressRefused as error:
        raise ApiError(422, "unprocessable", f"destination: {error}", "destination") from None
    return destination


def _opened(destination: Mapping[str, Any]) -> dict[str, Any]:
    """The stored destination with its URL in clear (None if it cannot be unsealed)."""
    try:
        return open_destination(destination)
    except SecretUnreadable:
        return {**shown_destination(destination), "url": None}


def _stored(destination: Mapping[str, Any]) -> dict[str, Any]:
    """A checked destination as it is kept: its URL sealed, beside its masked form."""
    url = destination.get("url")
    if not url:
        return dict(destination)
    return {**destination, "url": destinations.mask_url(url), "urlSealed": seal(url)}


def _unmasked(given: Mapping[str, Any], current: Mapping[str, Any]) -> Mapping[str, Any]:
    """A destination sent back as a GET showed it (masked) means the current one."""
    url, kept = given.get("url"), current.get("url")
    same_kind = given.get("type") == current.get("type")
    if same_kind and url and kept and url == destinations.mask_url(kept):
        return {**given, "url": kept}
    return given


def shown_destination(destination: Mapping[str, Any]) -> dict[str, Any]:
    """A destination as the API, the page and the audit log show it: its URL masked."""
    shown = {key: value for key, value in destination.items() if key != "urlSealed"}
    if shown.get("url"):
        shown["url"] = destinations.mask_url(shown["url"])
    return shown


def masked_body(body: Any) -> Any:
    """A request body of the streams' API or page, as the audit log keeps it: any value
    under a key ``url``, and any http(s) URL in any text, masked (``mask_url``)."""
    if isinstance(body, dict):
        return {
            key: _masked_url_value(value) if key == "url" else masked_body(value)
            for key, value in body.items()
        }
    if isinstance(body, list):
        return [masked_body(item) for item in body]
    if isinstance(body, str):
        return _URL_IN_TEXT.sub(lambda match: destinations.mask_url(match.group()), body)
    return body


_URL_IN_TEXT = re.compile(r"""https?://[^\s"'<>\\]+""", re.IGNORECASE)


def _masked_url_value(value: Any) -> Any:
    if isinstance(value, str):
        return destinations.mask_url(value)
    if isinstance(value, list):
        return [_masked_url_value(item) for item in value]
    return masked_body(value)


def _checked_filters(filters: Mapping[str, str] | None) -> dict[str, str]:
    """The log's own filters (q with its qualifiers, statusCode, ...), checked as a search
    would check them, kept as given."""
    if not filters:
        return {}
    clean = {str(k): str(v) for k, v in filters.items() if str(v).strip()}
    try:
        parse_query(MultiDict(clean), FilterSchema())
    except ApiError as error:
        raise bad_request(f"filters.{error.message}", "filters") from None
    return clean


def _view(stream: Mapping[str, Any]) -> dict[str, Any]:
    """A stream as ``changes`` compares it: its secret as a fingerprint of the ciphertext,
    so a new secret is a change (which ``changes`` masks, as any field named secret); its
    destination masked, with a keyed fingerprint of the whole URL, so a new URL is a change
    even where the masked forms are the same."""
    sealed = stream.get("secret")
    shown = None
    if sealed:
        shown = "set " + hashlib.sha256(sealed["ciphertext"].encode()).hexdigest()[:8]
    destination = shown_destination(stream["destination"])
    url = _opened(stream["destination"]).get("url")
    if url:
        destination["urlFingerprint"] = fingerprint(url)
    return {**stream, "secret": shown, "destination": destination}


def create_stream(actor: Principal, data: Mapping[str, Any]) -> tuple[Document, str | None]:
    """Create a stream; return it and the secret to show once (a webhook's signing secret)."""
    check_may_read(actor, "Creating a stream")
    db = get_db()
    if streams.count_streams(db, actor.org) >= streams.MAX_STREAMS:
        raise conflict(f"An organization has at most {streams.MAX_STREAMS} streams.", "name")
    fmt = data.get("format", "json")
    destination = _checked_destination(data["destination"], fmt)  # its URL in clear
    shown: str | None = None
    if data.get("token") and destination["type"] != "splunk":
        raise bad_request("token: only a Splunk destination takes a token.", "token")
    if destination["type"] == "webhook":
        shown = secret = WEBHOOK_SECRET_PREFIX + random_secrets.token_urlsafe(32)
    elif destination["type"] == "splunk":
        secret = data.get("token") or ""
        if not secret:
            raise bad_request("token: a Splunk HEC token is needed.", "token")
    else:
        secret = ""
    now = utcnow()
    start = data.get("start") or now
    stream: Document = {
        "_id": ObjectId(),
        "name": data["name"].strip(),
        "destination": _stored(destination),
        "format": fmt,
        "filters": _checked_filters(data.get("filters")),
        "state": "paused" if data.get("paused") else "active",
        "start": start,
        "secret": seal(secret) if secret else None,
        "cursor": None,
        "lease": None,
        "health": {"delivered": 0, "failed": 0, "attempts": 0, "pendingSince": start},
        "nextAttemptAt": now,
        "createdAt": now,
        "updatedAt": now,
        "createdBy": actor.account_id or actor.key_creator_id,
        "destinationSetBy": _set_by(actor),
        "pausedReason": None,
    }
    streams.insert_stream(db, actor.org, stream)
    note_created(stream["_id"])
    record_changes(None, _view(stream), STREAM_FIELDS, target=_stream_target(stream))
    return stream, shown


def list_streams(
    actor: Principal, args: MultiDict[str, str] | None = None, schema: Schema | None = None
) -> Page:
    """A page of the organization's streams, newest first."""
    db = get_db()
    return paged(
        args if args is not None else MultiDict(),
        streams.STREAMS,
        actor.org,
        lambda request: streams.page_streams(db, actor.org, request),
        schema,
    )


def find_stream(actor: Principal, stream_id: ObjectId) -> Document:
    stream = streams.find_stream(get_db(), actor.org, stream_id)
    if stream is None:
        raise not_found("Audit stream", "streamId")
    return stream


def update_stream(
    actor: Principal, stream_id: ObjectId, data: Mapping[str, Any]
) -> tuple[Document, str | None]:
    """Change a stream's settings; return it and a new webhook secret if one was made."""
    stream = find_stream(actor, stream_id)
    if any(name in data for name in READING_SETTINGS):
        check_may_read(actor, "Changing a stream's destination, token, format or filters")
    if data.get("paused") is False:
        check_may_read(actor, "Resuming a stream")
    if data.get("rotateSecret"):  # a new secret signs events for the stream's receiver
        check_may_read(actor, "Rotating a stream's signing secret")
    update: dict[str, Any] = {}
    shown: str | None = None
    fmt = data.get("format", stream["format"])
    if "name" in data:
        update["name"] = data["name"].strip()
    current = _opened(stream["destination"])  # its URL in clear
    destination = current
    if "destination" in data or "format" in data:
        given = _unmasked(data.get("destination") or current, current)
        destination = _checked_destination(given, fmt)
        update["destination"] = _stored(destination)
        update["format"] = fmt
    if "filters" in data:
        update["filters"] = _checked_filters(data["filters"])
    if "paused" in data:
        update["state"] = "paused" if data["paused"] else "active"
        update["pausedReason"] = None  # paused by a person, or resumed
        update["nextAttemptAt"] = utcnow()
    if any(name in data for name in READING_SETTINGS) or data.get("paused") is False:
        update["destinationSetBy"] = _set_by(actor)
    kind = destination["type"]
    moved = destination != current
    if data.get("rotateSecret") and kind != "webhook":
        raise bad_request("rotateSecret: only a webhook has a signing secret.", "rotateSecret")
    if data.get("token") and kind != "splunk":
        raise bad_request("token: only a Splunk destination takes a token.", "token")
    if kind == "webhook" and (
        data.get("rotateSecret") or (moved and stream["destination"]["type"] != "webhook")
    ):
        shown = WEBHOOK_SECRET_PREFIX + random_secrets.token_urlsafe(32)
        update["secret"] = seal(shown)
    elif kind == "splunk" and data.get("token"):
        update["secret"] = seal(data["token"])
    elif kind == "splunk" and moved:
        # a stored token never follows its destination elsewhere: the new one needs its own
        raise bad_request("token: a changed Splunk destination needs its token again.", "token")
    elif kind == "syslog" and moved:
        update["secret"] = None
    if not update:
        return stream, None
    before, after = streams.update_stream(get_db(), actor.org, stream_id, update)
    record_changes(_view(before), _view(after), STREAM_FIELDS, target=_stream_target(before))
    return after, shown


def delete_stream(actor: Principal, stream_id: ObjectId) -> None:
    deleted = streams.delete_stream(get_db(), actor.org, stream_id)
    record_changes(_view(deleted), None, STREAM_FIELDS, target=_stream_target(deleted))


def _stream_target(stream: Mapping[str, Any]) -> Target:
    return ("auditStream", stream["_id"], stream.get("name"))


def send_test_event(actor: Principal, stream_id: ObjectId) -> dict[str, Any]:
    """Send one event now, marked as a test, and say whether the destination took it."""
    stream = find_stream(actor, stream_id)
    check_may_read(actor, "Testing a stream")
    now = utcnow()
    event: Document = {
        "_id": ObjectId(),
        "organizationId": actor.org,
        "action": "auditStream.test",
        "resource": "auditStreams",
        "method": "POST",
        "path": f"/api/v1/audit-streams/{stream_id}/test",
        "statusCode": 200,
        "createdAt": now,
        "storedAt": now,
        "requestId": "test-" + ObjectId().binary.hex(),
        "authType": actor.auth_type,
        "accountEmail": actor.account_email,
        "request": {"test": True},
    }
    try:
        delivery.send(stream, [event])
    except destinations.DeliveryFailed as error:
        return {"delivered": False, "error": error.full(), "errorCode": error.code}
    return {"delivered": True, "error": None, "errorCode": None}


def health(stream: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """``state`` (active, paused, failing), ``lagSeconds``, ``lastDeliveredAt``,
    ``lastError`` (and why as a code, ``lastErrorCode``: one of ``FAILURE_CODES``, or
    ``paused`` when the deliverer paused it), ``delivered``, ``failed``, ``truncated``
    (records delivered cut down, the last one's id in ``lastTruncatedId``), from what the
    deliverer saved."""
    now = now or utcnow()
    kept = stream.get("health") or {}
    state = stream.get("state", "active")
    paused_reason = stream.get("pausedReason") if state == "paused" else None
    if state == "active" and kept.get("failingSince"):
        state = "failing"
    pending = kept.get("pendingSince")
    lag = 0.0
    if state == "paused":
        pending = pending or (stream.get("cursor") or {}).get("storedAt") or stream.get("start")
    if pending is not None:
        lag = max(0.0, (now - pending).total_seconds())
    return {
        "state": state,
        "lagSeconds": round(lag, 1),
        "lastDeliveredAt": iso(kept.get("lastDeliveredAt")),
        "lastError": paused_reason or kept.get("lastError"),
        "lastErrorCode": "paused" if paused_reason else _error_code(kept),
        "lastErrorDetail": None if paused_reason else kept.get("lastErrorDetail"),
        "pausedReason": paused_reason,
        "lastErrorAt": iso(kept.get("lastErrorAt")),
        "failingSince": iso(kept.get("failingSince")),
        "nextAttemptAt": iso(stream.get("nextAttemptAt")) if state == "failing" else None,
        "delivered": int(kept.get("delivered") or 0),
        "failed": int(kept.get("failed") or 0),
        "truncated": int(kept.get("truncated") or 0),
        "lastTruncatedId": kept.get("lastTruncatedId"),
        "lastTruncatedAt": iso(kept.get("lastTruncatedAt")),
    }


def _error_code(kept: Mapping[str, Any]) -> str | None:
    """The last failure's code (one saved before codes were kept: ``failed``)."""
    if not kept.get("lastError"):
        return None
    return kept.get("lastErrorCode") or "failed"


def health_for(actor: Principal, stream: Mapping[str, Any]) -> dict[str, Any]:
    """The health as ``actor`` may see it: what the destination answered (which may quote
    the events it refused), and how many records the filters matched and when (a stream
    filtered on one person dates their actions: its counts, its lag, and the times of its
    deliveries and failures), only for holders of viewAuditLog. Others see the ``state``,
    and why (``lastError``, ``pausedReason``: what went wrong, not when, nor what), and a
    lag of 0 when an active stream has caught up (no record's time in it)."""
    shown = health(stream)
    if not actor.can(VIEW_AUDIT_LOG):
        pending = (stream.get("health") or {}).get("pendingSince")
        caught_up = shown["state"] == "active" and pending is None
        shown.update(dict.fromkeys(("lastErrorDetail", *MATCHED_RECORDS_HEALTH)))
        shown["lagSeconds"] = 0.0 if caught_up else None
    return shown


def failing_streams(actor: Principal) -> list[dict[str, Any]]:
    """The organization's streams that are failing, for the audit log page's warning."""
    states = [(s["name"], health(s)) for s in streams.list_streams(get_db(), actor.org)]
    return [{"name": name, **state} for name, state in states if state["state"] == "failing"]


FORMATS = formats.FORMATS
