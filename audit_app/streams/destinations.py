"""Where a stream sends its events: an HTTPS webhook, Splunk HEC, or syslog over TCP.

Each sender takes a batch of rendered events and returns only when the destination
acknowledged all of them (an HTTP 2xx; for syslog, every byte written to the socket), or
raises ``DeliveryFailed`` with a message safe to show (no secret, no response body beyond
a short excerpt). Connections time out (``CONNECT_TIMEOUT``, ``READ_TIMEOUT``); redirects
are not followed (a redirect to a private address would get around the address check).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app

DESTINATION_TYPES = ("webhook", "splunk", "syslog")
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
SIGNATURE_HEADER = "X-Audit-Signature"
USER_AGENT = "organization-audit-log-streams/1"


class DeliveryFailed(Exception):
    """The destination did not acknowledge the batch; the message says why."""


class AddressRefused(ValueError):
    """A destination on an address this installation does not send to."""


def _allow_private() -> bool:
    return bool(current_app.config.get("AUDIT_STREAM_ALLOW_PRIVATE"))


def check_address(host: str, port: int) -> None:
    """Refuse loopback, private, link-local and other non-public addresses (every address
    the name resolves to), unless ``AUDIT_STREAM_ALLOW_PRIVATE`` is set."""
    if _allow_private():
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as error:
        raise AddressRefused(f"The host {host!r} does not resolve: {error}.") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise AddressRefused(
                f"The host {host!r} resolves to {address}, which is not a public address; "
                "this installation sends only to public addresses."
            )


def check(destination: Mapping[str, Any]) -> None:
    """The destination's own rules (scheme, host, port) and its address."""
    kind = destination["type"]
    if kind == "syslog":
        check_address(destination["host"], int(destination["port"]))
        return
    parts = urlsplit(destination["url"])
    if parts.scheme != "https" and not (parts.scheme == "http" and _allow_private()):
        raise AddressRefused("The URL must be https:// (http:// only where private is allowed).")
    if not parts.hostname or parts.username or parts.password:
        raise AddressRefused("The URL needs a host and no user or password in it.")
    check_address(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` (docs/streams.md)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    try:
        return requests.post(
            url,
            data=body,
            headers={"User-Agent": USER_AGENT, **headers},
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            allow_redirects=False,
        )
    except requests.Timeout:
        raise DeliveryFailed("The destination did not answer in time.") from None
    except requests.ConnectionError as error:
        raise DeliveryFailed(f"Could not connect: {type(error).__name__}.") from None
    except requests.RequestException as error:
        raise DeliveryFailed(f"The request failed: {type(error).__name__}.") from None


def _answered(response: requests.Response) -> None:
    if not 200 <= response.status_code < 300:
        excerpt = response.text[:200].replace("\n", " ") if response.text else ""
        raise DeliveryFailed(f"The destination answered {response.status_code}. {excerpt}".strip())


def send_webhook(destination: Mapping[str, Any], secret: str, events: Sequence[str]) -> None:
    body = ("\n".join(events) + "\n").encode("utf-8")
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/x-ndjson",
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    _answered(_post(destination["url"], body, headers))


def send_splunk(
    destination: Mapping[str, Any], token: str, events: Sequence[str], times: Sequence[float]
) -> None:
    """HEC's event endpoint: one JSON object per event, concatenated; ``{"code": 0}`` back."""
    sourcetype = destination.get("sourcetype") or "_json"
    body = "".join(
        json.dumps(
            {
                "time": at,
                "source": "organization-audit-log",
                "sourcetype": sourcetype,
                "event": json.loads(event) if event.startswith("{") else event,
            },
            separators=(",", ":"),
        )
        for event, at in zip(events, times, strict=True)
    ).encode("utf-8")
    headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
    response = _post(destination["url"], body, headers)
    _answered(response)
    try:
        code = response.json().get("code", 0)
    except ValueError:
        code = 0
    if code != 0:
        raise DeliveryFailed(f"Splunk refused the batch (code {code}).")


def syslog_frame(message: str, *, action: str, failed: bool, at: datetime) -> bytes:
    """One RFC 5424 message with RFC 6587 octet-counting framing: ``<len> <msg>``.

    Facility 13 (log audit); severity informational, or warning for a failed request.
    """
    pri = 13 * 8 + (4 if failed else 6)
    stamp = at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = (socket.gethostname() or "-")[:255].replace(" ", "-")
    msgid = "".join(c for c in action if 33 <= ord(c) <= 126)[:32] or "-"
    header = f"<{pri}>1 {stamp} {host} organization-audit-log - {msgid} - "
    payload = header.encode("ascii", "replace") + b"\xef\xbb\xbf" + message.encode("utf-8")
    return str(len(payload)).encode("ascii") + b" " + payload


def send_syslog(destination: Mapping[str, Any], frames: Sequence[bytes]) -> None:
    host, port = destination["host"], int(destination["port"])
    try:
        raw = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as error:
        raise DeliveryFailed(f"Could not connect: {type(error).__name__}.") from None
    try:
        raw.settimeout(READ_TIMEOUT)
        connection: socket.socket = raw
        if destination.get("tls"):
            context = ssl.create_default_context(
                cafile=current_app.config.get("AUDIT_STREAM_CA_FILE")
            )
            connection = context.wrap_socket(raw, server_hostname=host)
        connection.sendall(b"".join(frames))
    except (OSError, ssl.SSLError) as error:
        raise DeliveryFailed(f"Sending failed: {type(error).__name__}.") from None
    finally:
        raw.close()
