"""What a stream sends for one record: the native JSON, OCSF API Activity, or CEF.

Every event carries the record's id (for de-duplication: delivery is at least once).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..audit.actions import label, record_label
from ..audit.schemas import present
from ..ids import iso

FORMATS = ("json", "ocsf", "cef")
OCSF_VERSION = "1.3.0"
PRODUCT = "Organization Audit Log"
VENDOR = "Organization Audit Log"
# OCSF API Activity (class 6003 in category 6, Application Activity)
API_ACTIVITY = 6003
_ACTIVITY_BY_METHOD = {"POST": 1, "GET": 2, "HEAD": 2, "PUT": 3, "PATCH": 3, "DELETE": 4}


def _millis(moment: Any) -> int | None:
    return int(moment.timestamp() * 1000) if isinstance(moment, datetime) else None


def native(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as the API's detail view shows it."""
    return present(dict(record), details=True)


def ocsf(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as an OCSF 1.x API Activity event (class 6003)."""
    status = int(record.get("statusCode") or 0)
    activity = _ACTIVITY_BY_METHOD.get(str(record.get("method")), 99)  # 99: Other
    response = record.get("response") or {}
    shown = native(record)
    user: dict[str, Any] = {}
    if record.get("accountId") is not None:
        user = {
            "uid": str(record["accountId"]),
            "email_addr": record.get("accountEmail"),
            "type_id": 1,
            "type": "User",
        }
    elif record.get("apiKeyId") is not None:
        user = {
            "uid": str(record["apiKeyId"]),
            "name": record.get("apiKeyName"),
            "type_id": 99,
            "type": "API key",
        }
    actor: dict[str, Any] = {"app_name": PRODUCT}
    if user:
        actor["user"] = {k: v for k, v in user.items() if v is not None}
    if record.get("credentialId"):
        actor["session"] = {"uid": record["credentialId"]}
    event: dict[str, Any] = {
        "class_uid": API_ACTIVITY,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": activity,
        "type_uid": API_ACTIVITY * 100 + activity,
        "time": _millis(record.get("createdAt")),
        "severity_id": 1 if status < 400 else (2 if status < 500 else 3),
        "status_id": 1 if 0 < status < 400 else 2,
        "status_code": str(status),
        "message": record_label(record) or f"{record.get('method')} {record.get('path')}",
        "metadata": {
            "version": OCSF_VERSION,
            "uid": str(record["_id"]),
            "correlation_uid": record.get("requestId"),
            "original_time": iso(record.get("createdAt")),
            "logged_time": _millis(record.get("storedAt")),
            "tenant_uid": str(record.get("organizationId")),
            "product": {"name": PRODUCT, "vendor_name": VENDOR},
        },
        "actor": actor,
        "api": {
            "operation": record.get("action") or f"{record.get('method')} {record.get('route')}",
            "service": {"name": record.get("resource")},
            "request": {"uid": record.get("requestId")},
            "response": {"code": status},
        },
        "src_endpoint": _source(record),
        "http_request": {
            "http_method": record.get("method"),
            "url": {"path": record.get("path")},
            "user_agent": record.get("userAgent"),
        },
        "http_response": {"code": status},
        "unmapped": {
            key: shown[key]
            for key in ("workspaceId", "authType", "route", "changes", "durationMs")
            if shown.get(key) is not None
        },
    }
    if response.get("errorCode"):
        event["status_detail"] = response.get("errorMessage")
        event["api"]["response"]["error"] = response["errorCode"]
        event["api"]["response"]["error_message"] = response.get("errorMessage")
    resources = [
        {
            "uid": str(t.get("id")),
            "type": t.get("type"),
            **({"name": t["name"]} if t.get("name") else {}),
        }
        for t in record.get("targets") or ()
        if isinstance(t, Mapping) and t.get("id") is not None
    ]
    if response.get("id") and all(r["uid"] != response["id"] for r in resources):
        resources.append({"uid": response["id"], "type": record.get("resource")})
    if resources:  # what the request acted on (OCSF's resources[])
        event["resources"] = resources
    return event


def targets_text(targets: Any) -> str | None:
    """What a request acted on, in one text: ``member:ana@corp.example (65f...), role:Admin
    (65f...)`` (CEF's ``cs6`` and the CSV's column)."""
    shown = [
        f"{t.get('type')}:{t.get('name') or ''} ({t.get('id')})"
        for t in targets or ()
        if isinstance(t, Mapping)
    ]
    return ", ".join(shown) or None


def _source(record: Mapping[str, Any]) -> dict[str, Any]:
    """The client's address; an operator's command, or an event with no client address,
    names the server it ran on (OCSF wants one of ip, name, hostname, ...)."""
    if record.get("ip"):
        return {"ip": record["ip"]}
    name = "command line" if record.get("authType") == "cli" else "server"
    return {"name": name, "hostname": socket.gethostname() or "localhost"}


# C0 controls, DEL, C1 controls and the line and paragraph separators: what may reach no
# receiver raw (a NUL cuts a C string, ESC drives a terminal, U+0085/U+2028/U+2029 and
# \x1c-\x1e break lines for str.splitlines and JavaScript)
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _cef_shown(match: re.Match[str]) -> str:
    """CEF escapes only \\ = \\n \\r: any other control is shown as the text ``\\u``
    and its four hex digits, the backslash escaped as CEF wants (ESC reads ``\\u001b``)."""
    return f"\\\\u{ord(match.group()):04x}"


def _cef_header(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return CONTROLS.sub(_cef_shown, text)


def _cef_value(value: Any) -> str:
    text = str(value)
    text = text.replace("\\", "\\\\").replace("=", "\\=")
    text = text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")
    return CONTROLS.sub(_cef_shown, text)


def cef(record: Mapping[str, Any]) -> str:
    """The record as one ArcSight CEF line (for syslog)."""
    status = int(record.get("statusCode") or 0)
    action = record.get("action") or "request.unmatched"
    severity = 3 if status < 400 else (6 if status < 500 else 8)
    extension = {
        "rt": _millis(record.get("createdAt")),
        "externalId": str(record["_id"]),
        "src": record.get("ip"),
        "suser": record.get("accountEmail") or record.get("apiKeyName"),
        "suid": str(record.get("accountId") or record.get("apiKeyId") or "") or None,
        "requestMethod": record.get("method"),
        "request": record.get("path"),
        "requestClientApplication": record.get("userAgent"),
        "outcome": status,
        "cs1Label": "organizationId",
        "cs1": str(record.get("organizationId")),
        "cs2Label": "requestId",
        "cs2": record.get("requestId"),
        "cs3Label": "credentialId",
        "cs3": record.get("credentialId"),
        "cs4Label": "errorCode",
        "cs4": (record.get("response") or {}).get("errorCode"),
        "cs6Label": "targets",
        "cs6": targets_text(record.get("targets")),
    }
    fields = " ".join(f"{k}={_cef_value(v)}" for k, v in extension.items() if v not in (None, ""))
    header = "|".join(
        _cef_header(part)
        for part in ("CEF:0", VENDOR, PRODUCT, "1.0", action, label(action), severity)
    )
    return f"{header}|{fields}"


# What a record too large for any delivery keeps (``shrunk``): stage 1 drops the request's
# details and ``changes`` and cuts every text to KEPT_TEXT characters; stage 2 keeps only
# who, what, when and the id, in MINIMAL_TEXT characters each.
KEPT_TEXT = 2048
MINIMAL_TEXT = 256
MINIMAL_FIELDS = (
    "_id", "organizationId", "accountId", "accountEmail", "apiKeyId", "apiKeyName",
    "workspaceId", "authType", "credentialId", "action", "resource", "method", "route",
    "statusCode", "createdAt", "storedAt", "ip", "requestId",
)  # fmt: skip
TRUNCATION_MARK = "…[truncated]"


def shrunk(record: Mapping[str, Any], stage: int) -> dict[str, Any]:
    """The record cut down for a delivery it did not fit whole (stage 1, then 2)."""
    if stage >= 2:
        kept = {key: record.get(key) for key in MINIMAL_FIELDS if key in record}
        return {**_cut(kept, MINIMAL_TEXT), "response": {}, "request": {}}
    kept = {key: value for key, value in record.items() if key not in ("request", "changes")}
    return {**_cut(kept, KEPT_TEXT), "request": {}}


def _cut(value: Any, limit: int) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + TRUNCATION_MARK
    if isinstance(value, dict):
        return {key: _cut(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut(item, limit) for item in value[:100]]
    return value


def render(fmt: str, record: Mapping[str, Any], truncated_from: int | None = None) -> str:
    """One event as text: JSON for json and ocsf, a CEF line for cef. ``truncated_from``:
    the record was ``shrunk`` from an event of that many bytes, which the event says
    (``truncated`` and ``originalBytes``; in OCSF under ``unmapped``; in CEF as
    ``cs5Label=truncatedFromBytes cs5=<bytes>``)."""
    if fmt == "cef":
        line = cef(record)
        if truncated_from is not None:
            line += f" cs5Label=truncatedFromBytes cs5={truncated_from}"
        return line
    event = ocsf(record) if fmt == "ocsf" else native(record)
    if truncated_from is not None:
        marked = event.setdefault("unmapped", {}) if fmt == "ocsf" else event
        marked.update(truncated=True, originalBytes=truncated_from)
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)
    # one event, one line, no control character raw: json.dumps escapes C0 only, so DEL,
    # C1 (U+0085 among them) and U+2028/U+2029 are escaped here (\\u0085: the same text)
    return text.translate(_JSON_ESCAPES)


_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), 0x2028, 0x2029)}
