"""Where a stream sends its events: an HTTPS webhook, Splunk HEC, or syslog over TCP.

Each sender takes a batch of rendered events and returns only when the destination
acknowledged all of them (an HTTP 2xx; for Splunk also ``{"code": 0}``; for syslog, every
byte written to the socket), or raises ``DeliveryFailed`` with a message safe to show (no
secret, no response body beyond a short excerpt). A send connects to the very address
that passed the public-address check, has an overall deadline (``CONNECT_TIMEOUT`` +
``READ_TIMEOUT``) however the destination trickles its answer, follows no redirect, and
reads nothing from the environment (no proxy, no netrc credentials).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import urllib3
from flask import current_app

from .addresses import refusal

DESTINATION_TYPES = ("webhook", "splunk", "syslog")
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
SIGNATURE_HEADER = "X-Audit-Signature"
USER_AGENT = "organization-audit-log-streams/1"
_T = TypeVar("_T")


# Why a delivery failed, as a code beside the message (health's ``lastErrorCode``, a test
# event's ``errorCode``), so a monitor tells a receiver that is down from one that hangs
FAILURE_CODES: dict[str, str] = {
    "connectionRefused": "nothing accepts connections at the destination's address and port",
    "timeout": "the destination did not connect, or did not answer, in time",
    "dnsFailure": "the destination's host name does not resolve",
    "tlsError": "the TLS handshake failed (certificate, host name or protocol)",
    "connectionFailed": "the connection failed otherwise (reset, network unreachable)",
    "httpStatus": "the destination answered with a status other than 2xx",
    "notAcknowledged": "Splunk answered 2xx without acknowledging the batch",
    "addressRefused": "the destination is on an address this installation does not send to",
    "failed": "anything else (a secret that cannot be read, filters no longer valid)",
}


class DeliveryFailed(Exception):
    """The destination did not acknowledge the batch; the message says why, in our words.

    ``status``: the HTTP status it answered, if any. ``detail``: what the destination said
    (an excerpt of its answer), kept apart because a receiver may quote the events it
    refused: only holders of viewAuditLog see it (``service.health_for``). ``code``: why,
    one of ``FAILURE_CODES``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str | None = None,
        code: str = "failed",
    ):
        super().__init__(message)
        self.status, self.detail, self.code = status, detail, code

    def full(self) -> str:
        """The message with the destination's own words, for those who may read them."""
        return f"{self} {self.detail}" if self.detail else str(self)


class AddressRefused(ValueError):
    """A destination on an address this installation does not send to."""

    code = "addressRefused"


class NameNotResolved(AddressRefused):
    """A destination whose host name does not resolve."""

    code = "dnsFailure"


ALLOW_PRIVATE_HINT = (
    "A destination inside your own network needs the installation's operator to set "
    "AUDIT_STREAM_ALLOW_PRIVATE=true."
)


def _allow_private() -> bool:
    return bool(current_app.config.get("AUDIT_STREAM_ALLOW_PRIVATE"))


def resolve(host: str, port: int) -> str:
    """The address to connect to: the first the name resolves to, after every one was
    checked (only what IANA marks globally reachable, IPv4 addresses embedded in IPv6 ones
    included: ``addresses.refusal``; anything with ``AUDIT_STREAM_ALLOW_PRIVATE``). The
    sender connects to exactly this address, so a name that resolves elsewhere a moment
    later (DNS rebinding) gains nothing."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError, OSError) as error:
        raise NameNotResolved(f"The host {host!r} does not resolve: {error}.") from None
    if not infos:
        raise NameNotResolved(f"The host {host!r} does not resolve.")
    addresses = [str(info[4][0]).split("%", 1)[0] for info in infos]
    if not _allow_private():
        for address in addresses:
            why = refusal(address)
            if why is not None:
                raise AddressRefused(
                    f"The host {host!r} resolves to {address}, which is not a public address "
                    f"({why}): this installation sends only to globally reachable addresses. "
                    + ALLOW_PRIVATE_HINT
                )
    return addresses[0]


def _target(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a destination URL; ``AddressRefused`` if malformed."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname
    except ValueError:
        # not the parser's own words: they quote the URL's user:password part, and this
        # message is shown, stored in the request's record and delivered by streams
        raise AddressRefused(
            "The URL is not valid: give https://host[:port]/path with a host of letters, "
            "digits, dots and hyphens and a port of 1-65535."
        ) from None
    if parts.scheme not in ("https", "http") or not host or parts.username or parts.password:
        raise AddressRefused("The URL needs https://, a host, and no user or password in it.")
    if parts.scheme != "https" and not _allow_private():
        raise AddressRefused(
            "The URL must be https://: http:// is taken only where private destinations are "
            "allowed (AUDIT_STREAM_ALLOW_PRIVATE=true)."
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, path


# Path segments shown as they are in a masked URL: words that name an endpoint on common
# receivers (Splunk HEC, Sumo Logic, Datadog, Slack-style webhooks), never a credential
SHOWN_SEGMENTS = frozenset(
    {
        "api", "v1", "v2", "v3", "services", "collector", "event", "events", "raw",
        "hook", "hooks", "webhook", "webhooks", "ingest", "input", "inputs", "intake",
        "log", "logs", "receiver", "http", "audit", "siem",
    }
)  # fmt: skip
MASK = "****"


def mask_url(url: str) -> str:
    """A destination URL as it may be shown (API answers, the page, the audit log): the
    scheme, host and port; of the path, only the segments in ``SHOWN_SEGMENTS``, every
    other one ``****``; every query value ``****`` (names kept); user info and fragment
    ``****``. Slack-style paths, ``sig=``/``token=``/``key=`` values and the like are all
    masked, whatever they are called. Masking a masked URL changes nothing."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{MASK}@" if parts.username or parts.password else "") + host + port
    path = "/".join(
        segment if not segment or segment.lower() in SHOWN_SEGMENTS else MASK
        for segment in parts.path.split("/")
    )
    query = "&".join(
        f"{pair.partition('=')[0]}={MASK}" if pair else "" for pair in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, path, query, MASK if parts.fragment else ""))


def check(destination: Mapping[str, Any]) -> None:
    """The destination's own rules (scheme, host, port) and its address."""
    if destination["type"] == "syslog":
        port = destination.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise AddressRefused("A syslog port is a number from 1 to 65535.")
        resolve(destination["host"], port)
        return
    _scheme, host, port, _path = _target(destination["url"])
    resolve(host, port)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` (docs/streams.md)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _within(
    seconds: float, work: Callable[[], _T], stop: Callable[[], None], where: str = ""
) -> _T:
    """Run ``work`` with an overall deadline: a destination that trickles its answer a byte
    at a time cannot hold the deliverer past it (``stop`` closes the connection)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = error

    worker = threading.Thread(target=run, name="audit-stream-send", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        stop()
        raise DeliveryFailed(
            f"The destination did not answer in time: the exchange with {where or 'it'} "
            f"took more than {seconds:g} s.",
            code="timeout",
        )
    if "error" in outcome:
        raise outcome["error"]
    return cast(_T, outcome["value"])


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST to the exact address that passed the check; (status, the first 64 KB back)."""
    scheme, host, port, path = _target(url)
    address = resolve(host, port)
    timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT)
    pool: urllib3.HTTPConnectionPool
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            ssl_context=ssl.create_default_context(),
            assert_hostname=host,
            server_hostname=host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
    shown_host = host if port in (80, 443) else f"{host}:{port}"
    sent = {"Host": shown_host, "User-Agent": USER_AGENT, **headers}

    def exchange() -> tuple[int, bytes]:
        response = pool.urlopen(
            "POST", path, body=body, headers=sent, redirect=False, preload_content=False
        )
        try:
            return response.status, response.read(65536)
        finally:
            response.release_conn()

    where = _where(host, port)
    try:
        return _within(CONNECT_TIMEOUT + READ_TIMEOUT, exchange, pool.close, where)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise failure(error, where, "sent no answer") from None
    finally:
        pool.close()


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _inner(error: BaseException) -> BaseException:
    """The OS or TLS error a urllib3 error wraps (its cause, or an argument), or itself."""
    found = error
    for _ in range(3):  # urllib3 wraps at most twice
        inner = found.__cause__ or next(
            (arg for arg in found.args if isinstance(arg, BaseException)), None
        )
        if inner is None:
            break
        found = inner
    return found


def failure(error: BaseException, where: str, awaited: str | None) -> DeliveryFailed:
    """What went wrong with a connection to ``where`` (``host:port``), in our words and as
    a code: refused, not in time, a TLS failure, or another connection failure. ``awaited``
    says what the destination failed to do once connected (None: it was connecting). urllib3 raises
    a refused connection as a subclass of its connect timeout: the OS error inside tells."""
    inner = _inner(error)
    if isinstance(inner, ConnectionRefusedError):
        return DeliveryFailed(
            f"Connection refused by {where}: nothing accepts connections there (is the "
            "receiver running, on that port?).",
            code="connectionRefused",
        )
    timed_out = isinstance(inner, TimeoutError) or (
        isinstance(error, urllib3.exceptions.TimeoutError)
        and not isinstance(error, urllib3.exceptions.NewConnectionError)
    )
    if timed_out:
        connecting = awaited is None or isinstance(error, urllib3.exceptions.ConnectTimeoutError)
        if connecting:
            said = f"no connection to {where} within {CONNECT_TIMEOUT:g} s"
        else:
            said = f"{where} took the connection but {awaited} within {READ_TIMEOUT:g} s"
        return DeliveryFailed(f"The destination did not answer in time: {said}.", code="timeout")
    if isinstance(inner, ssl.SSLError) or isinstance(error, urllib3.exceptions.SSLError):
        reason = getattr(inner, "verify_message", None) or getattr(inner, "reason", None)
        return DeliveryFailed(
            f"TLS with {where} failed: {reason or type(inner).__name__}.", code="tlsError"
        )
    reason = inner.strerror if isinstance(inner, OSError) else None
    return DeliveryFailed(
        f"The connection to {where} failed: {reason or type(inner).__name__}.",
        code="connectionFailed",
    )


def _answered(status: int, text: bytes) -> None:
    if not 200 <= status < 300:
        excerpt = text[:200].decode("utf-8", "replace").replace("\n", " ").strip()
        raise DeliveryFailed(
            f"The destination answered {status}.",
            status=status,
            detail=excerpt or None,
            code="httpStatus",
        )


def webhook_event(event: str) -> bytes:
    """One event of a webhook delivery: an NDJSON line."""
    return event.encode("utf-8") + b"\n"


def splunk_event(event: str, at: float, sourcetype: str = "_json") -> bytes:
    """One event of a HEC delivery: its JSON object (HEC takes them concatenated)."""
    return json.dumps(
        {
            "time": at,
            "source": "organization-audit-log",
            "sourcetype": sourcetype,
            "event": json.loads(event) if event.startswith("{") else event,
        },
        separators=(",", ":"),
    ).encode("utf-8")


def send_webhook(destination: Mapping[str, Any], secret: str, body: bytes) -> None:
    """POST the NDJSON ``body`` (``webhook_event``s), signed."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/x-ndjson",
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
    _answered(*_post(destination["url"], body, headers))


def send_splunk(destination: Mapping[str, Any], token: str, body: bytes) -> None:
    """HEC's event endpoint: ``splunk_event``s concatenated; ``{"code": 0}`` back."""
    if not token.isascii() or any(c in token for c in "\r\n"):
        raise DeliveryFailed("The HEC token has characters a header cannot carry; set it again.")
    headers = {"Authorization": f"Splunk {token}", "Content-Type": "application/json"}
    status, answer = _post(destination["url"], body, headers)
    _answered(status, answer)
    try:
        acknowledged = json.loads(answer)
    except ValueError:
        acknowledged = None
    code = acknowledged.get("code") if isinstance(acknowledged, dict) else None
    if code != 0 or isinstance(code, bool):  # HEC acknowledges with {"code": 0}, nothing else
        raise DeliveryFailed(
            "Splunk did not acknowledge the batch (no code 0).",
            detail=f"code {code!r}"[:200],
            code="notAcknowledged",
        )


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


def send_syslog(destination: Mapping[str, Any], body: bytes) -> None:
    """Write ``body`` (``syslog_frame``s) to the syslog server."""
    host, port = destination["host"], int(destination["port"])
    address = resolve(host, port)  # connect to exactly the address that was checked
    cafile = current_app.config.get("AUDIT_STREAM_CA_FILE")
    where = _where(host, port)
    try:
        raw = socket.create_connection((address, port), timeout=CONNECT_TIMEOUT)
    except OSError as error:
        raise failure(error, where, None) from None

    def write() -> None:
        raw.settimeout(READ_TIMEOUT)
        connection: socket.socket = raw
        if destination.get("tls"):
            context = ssl.create_default_context(cafile=cafile)
            connection = context.wrap_socket(raw, server_hostname=host)
        connection.sendall(body)

    try:
        _within(CONNECT_TIMEOUT + READ_TIMEOUT, write, raw.close, where)
    except OSError as error:
        raise failure(error, where, "did not take the events") from None
    finally:
        raw.close()
