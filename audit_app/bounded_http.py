"""One HTTP exchange with a server this installation does not control, bounded in time and
in bytes, and never redirected: the RFC 3161 timestamp authority the sealer asks for each
checkpoint (``audit/integrity/timestamps.py``) and the installation ``flask witness`` reads.

A socket's timeout bounds each read, not the exchange: a server that drips its status line,
its headers or its body a byte at a time never trips it. So the exchange runs in a worker
thread that the caller waits for ``timeout`` seconds at most; past it, the connection is shut
down (which ends the worker's read) and the caller gets a ``timeout`` error. The body is read
as it comes (``read1``), at most ``max_bytes``. A redirect is refused: it would carry the
request's credentials to wherever it points.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request


class ExchangeError(Exception):
    """Why the exchange gave no answer. ``kind``: ``status`` (an HTTP error status:
    ``status`` and the start of its ``body``), ``redirect``, ``unreachable``, ``timeout``,
    ``too_large``."""

    def __init__(self, kind: str, message: str, status: int | None = None, body: bytes = b""):
        super().__init__(message)
        self.kind, self.status, self.body = kind, status, body


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        fp.close()
        raise ExchangeError("redirect", f"redirects ({code}) to {newurl[:200]}: not followed")


def exchange(request: urllib.request.Request, *, timeout: float, max_bytes: int) -> bytes:
    """The answer's body (a 2xx answer), within ``timeout`` seconds in all and ``max_bytes``;
    ExchangeError otherwise."""
    deadline = time.monotonic() + timeout
    connections: list[http.client.HTTPConnection] = []
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["data"] = _exchange(request, deadline, timeout, max_bytes, connections)
        except Exception as error:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="bounded-http", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        for connection in list(connections):  # ends the worker's read, if it got so far
            with contextlib.suppress(Exception):
                if connection.sock is not None:
                    connection.sock.shutdown(socket.SHUT_RDWR)
        raise ExchangeError("timeout", f"no whole answer within {timeout:g} s")
    failure = outcome.pop("error", None)
    if failure is not None:
        try:
            raise failure
        finally:
            del failure  # not a cycle with its traceback (which holds the answer open)
    return outcome["data"]


def _exchange(request, deadline: float, timeout: float, max_bytes: int, connections) -> bytes:
    def tracked(base):
        def connection(*args, **kwargs):
            made = base(*args, **kwargs)
            connections.append(made)
            return made

        return connection

    class Http(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(tracked(http.client.HTTPConnection), req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(tracked(http.client.HTTPSConnection), req, context=self._context)

    opener = urllib.request.build_opener(_NoRedirects, Http, Https)
    try:
        with opener.open(request, timeout=timeout) as answer:  # nosec B310 - callers check
            return _read(answer, deadline, timeout, max_bytes)
    except urllib.error.HTTPError as error:
        body = b""
        with contextlib.suppress(Exception):
            body = error.read(300)
        error.close()
        raise ExchangeError("status", f"answered HTTP {error.code}", error.code, body) from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise ExchangeError("unreachable", f"cannot be reached ({reason})") from None
    finally:
        for connection in connections:
            connection.close()


def _read(answer, deadline: float, timeout: float, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise ExchangeError("timeout", f"no whole answer within {timeout:g} s")
        chunk = answer.read1(65536)  # what has come, not a blocking wait for 64 KiB
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise ExchangeError("too_large", f"an answer over {max_bytes} bytes")
        chunks.append(chunk)
