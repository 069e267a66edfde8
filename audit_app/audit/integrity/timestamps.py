"""RFC 3161 timestamps of the verifiable log's checkpoints (``AUDIT_TSA_URL``, off by default).

A checkpoint says what the log held, signed by this installation; it does not prove *when*:
whoever holds the signing key could sign a checkpoint today and date it last year. A
timestamp authority (TSA) signs the hash of the checkpoint's note with its own time
(``genTime``), so the checkpoint existed by then, on the word of a party outside the
installation. Each new checkpoint is sent to the TSA when it is signed; the answer (the
whole DER ``TimeStampResp``) is kept with the checkpoint, in the anchor, in the API's
checkpoint and in every downloaded proof, where the offline verifier checks it against the
TSA's root certificate (``--tsa-root``).

The request and the answer's checks are ``rfc3161-client`` (Trail of Bits, for Sigstore):
SHA-256 imprint of the note's bytes, a nonce, the TSA's certificate in the answer. An
answer is kept only if it is granted, for this note and this nonce, and (with
``AUDIT_TSA_CA_FILE``) signed by a certificate for time stamping that chains to one of its
roots. A TSA that cannot be reached, answers late, too much or wrongly leaves the
checkpoint unstamped (logged); the sealer never waits for it more than ``TIMEOUT`` seconds.
"""

from __future__ import annotations

import base64
import logging
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    TimeStampResponse,
    decode_timestamp_response,
)

from ... import bounded_http, verifier
from ...ids import iso

log = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds, the whole exchange
MAX_RESPONSE = 64 * 1024  # a TSA's answer with its certificate chain is a few KiB
PAUSE = 60  # seconds without asking, after a failure


class TimestampError(Exception):
    """A timestamp that cannot be had or does not hold."""


def load_roots(path: str) -> tuple[x509.Certificate, ...]:
    """The PEM certificates of a file (``AUDIT_TSA_CA_FILE``)."""
    try:
        return tuple(verifier.load_roots(path))
    except verifier.VerificationError as error:
        raise TimestampError(str(error)) from None


def check(
    response: TimeStampResponse,
    note: str,
    roots: Sequence[x509.Certificate] = (),
    nonce: int | None = None,
) -> None:
    """Raise TimestampError unless the answer is a granted timestamp of this note (and of
    this nonce), and, given roots, signed by a time-stamping certificate that chains to one:
    the offline verifier's check (``verifier.verify_timestamp``), one rule for both."""
    try:
        verifier.verify_timestamp(response, note, roots, nonce)
    except verifier.VerificationError as error:
        raise TimestampError(str(error)) from None


def decode(token: str) -> TimeStampResponse:
    """A stored token (base64 of the DER ``TimeStampResp``)."""
    try:
        return verifier.decode_timestamp(token)
    except verifier.VerificationError as error:
        raise TimestampError(str(error)) from None


def describe(stamp: dict | None) -> dict | None:
    """How the API and a proof file show a stored timestamp."""
    if not isinstance(stamp, dict) or not isinstance(stamp.get("token"), str):
        return None
    gen_time = stamp.get("genTime")
    return {
        "authority": stamp.get("authority"),
        "genTime": iso(gen_time) if isinstance(gen_time, datetime) else gen_time,
        "token": stamp["token"],
    }


@dataclass(frozen=True)
class Authority:
    """A TSA the sealer asks to timestamp each checkpoint. After a failure it is not asked
    again for ``PAUSE`` seconds (the checkpoints signed meanwhile stay unstamped), so an
    authority out of reach costs a seal of many organizations one timeout, not one each."""

    url: str
    roots: tuple[x509.Certificate, ...] = ()
    _paused_until: list[float] = field(default_factory=lambda: [0.0], compare=False, repr=False)

    def stamp(self, note: str) -> dict | None:
        """The authority's timestamp of a checkpoint note, checked; None (logged) if it
        could not be had."""
        if time.monotonic() < self._paused_until[0]:
            return None
        request = (
            TimestampRequestBuilder()
            .data(note.encode("utf-8"))
            .hash_algorithm(HashAlgorithm.SHA256)
            .nonce(nonce=True)
            .cert_request(cert_request=True)
            .build()
        )
        try:
            answer = self._post(request.as_bytes())
            try:
                response = decode_timestamp_response(answer)
            except ValueError as error:
                raise TimestampError(f"the answer is not an RFC 3161 response ({error})") from None
            check(response, note, self.roots, request.nonce)
        except TimestampError as error:
            self._paused_until[0] = time.monotonic() + PAUSE
            log.warning(
                "A checkpoint was not timestamped by %s: %s (the next %d s of checkpoints "
                "are not sent)",
                _host(self.url),
                str(error)[:300],
                PAUSE,
            )
            return None
        gen_time = response.tst_info.gen_time
        return {
            "authority": _public(self.url),
            "genTime": gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC),
            "token": base64.b64encode(response.as_bytes()).decode(),
        }

    def _post(self, body: bytes) -> bytes:
        url, headers = _without_user_info(self.url)
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked by the settings
            url,
            data=body,
            headers={
                **headers,
                "Content-Type": "application/timestamp-query",
                "Accept": "application/timestamp-reply",
            },
            method="POST",
        )
        try:
            return bounded_http.exchange(request, timeout=TIMEOUT, max_bytes=MAX_RESPONSE)
        except bounded_http.ExchangeError as error:
            prefix = "" if error.kind in ("timeout", "too_large") else "the authority "
            raise TimestampError(f"{prefix}{error}") from None


def _without_user_info(url: str) -> tuple[str, dict[str, str]]:
    """A URL's ``user:password@`` as HTTP Basic authentication (an authority that needs an
    account), and the URL without it."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, {}
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), {
        "Authorization": f"Basic {credentials}"
    }


def _public(url: str) -> str:
    """The URL as stored and shown: without user info and query (what may be a credential)."""
    parts = urllib.parse.urlsplit(url)
    return _host(url) + parts.path


def _host(url: str) -> str:
    """The URL without what may be a credential (user info, query)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def authority_from_settings(url: str | None, ca_file: str | None) -> Authority | None:
    """``AUDIT_TSA_URL`` and ``AUDIT_TSA_CA_FILE``, checked (a ValueError names the one
    that is wrong); None when no authority is set."""
    if not url:
        if ca_file:
            raise ValueError("AUDIT_TSA_CA_FILE is set but AUDIT_TSA_URL is not")
        return None
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port out of range or not a number
    except ValueError:
        raise ValueError("AUDIT_TSA_URL has a port that is not a number from 1 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port == 0:
        raise ValueError(f"AUDIT_TSA_URL must be an http(s) URL, not {_host(url) or url[:40]!r}")
    try:
        roots = load_roots(ca_file) if ca_file else ()
    except (OSError, TimestampError) as error:
        raise ValueError(f"AUDIT_TSA_CA_FILE: {error}") from None
    return Authority(url, roots)
