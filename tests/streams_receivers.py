"""Real receivers on 127.0.0.1 for the stream tests: an HTTPS-webhook-shaped HTTP server
that checks signatures, a Splunk-HEC-shaped endpoint, and a syslog TCP server that parses
RFC 5424 messages framed by octet counting (RFC 6587)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HttpReceiver:
    """Answers each POST with ``status`` (a list pops one per request, then the last),
    hangs ``hang`` seconds first if set, and keeps what arrived."""

    def __init__(self, *, secret: str | None = None, token: str | None = None):
        self.secret, self.token = secret, token
        self.requests: list[dict] = []
        self.statuses: list[int] = [200]
        self.hang = 0.0
        self.echo = False  # answer with (the start of) what was sent, as some receivers do
        self.max_body: int | None = None  # a body larger than this is answered 413
        self.too_large: list[int] = []  # the sizes of the bodies answered 413
        self.in_flight = 0  # requests being answered right now
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.max_body is not None and len(body) > receiver.max_body:
                    receiver.too_large.append(len(body))  # as nginx's client_max_body_size
                    self._answer(413, b"<html><h1>413 Request Entity Too Large</h1></html>")
                    return
                receiver.in_flight += 1
                if receiver.hang:
                    time.sleep(receiver.hang)
                receiver.in_flight -= 1
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    status = (
                        receiver.statuses.pop(0)
                        if len(receiver.statuses) > 1
                        else receiver.statuses[0]
                    )
                answer = json.dumps({"text": "Success", "code": 0}).encode()
                self._answer(status, body[:4096] if receiver.echo else answer)

            def _answer(self, status: int, answer: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def verify(self, request: dict, tolerance: int = 300) -> bool:
        """The documented recipe: HMAC-SHA256 of "<t>." + body, t within 5 minutes."""
        header = request["headers"].get("X-Audit-Signature", "")
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        timestamp = int(parts.get("t", "0"))
        expected = hmac.new(
            self.secret.encode(), f"{timestamp}.".encode() + request["body"], hashlib.sha256
        ).hexdigest()
        fresh = abs(time.time() - timestamp) <= tolerance
        return fresh and hmac.compare_digest(expected, parts.get("v1", ""))

    def events(self) -> list[dict]:
        """Every event received (NDJSON lines, or HEC objects), in order, duplicates kept."""
        found = []
        for request in self.requests:
            text = request["body"].decode()
            if request["path"].startswith("/services/collector"):
                found += _concatenated_json(text)
            else:
                found += [json.loads(line) for line in text.splitlines() if line]
        return found


def _concatenated_json(text: str) -> list[dict]:
    decoder, position, objects = json.JSONDecoder(), 0, []
    while position < len(text):
        obj, position = decoder.raw_decode(text, position)
        objects.append(obj)
    return objects


SYSLOG = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<proc>\S+) "
    rb"(?P<msgid>\S+) (?P<sd>-|\[.*?\]) (?P<msg>.*)$",
    re.DOTALL,
)


class SyslogReceiver:
    """A TCP syslog server: reads ``<length> <message>`` frames and parses RFC 5424."""

    def __init__(self):
        self.messages: list[dict] = []
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while True:
                    length = b""
                    while (char := self.rfile.read(1)) not in (b" ", b""):
                        length += char
                    if not length:
                        return
                    frame = self.rfile.read(int(length))
                    match = SYSLOG.match(frame)
                    assert match, frame
                    message: dict = {
                        k: v.decode() for k, v in match.groupdict().items() if k != "msg"
                    }
                    body = match.group("msg")
                    assert body.startswith(b"\xef\xbb\xbf")  # the BOM says UTF-8
                    message["msg"] = body[3:].decode()
                    message["length"] = int(length) == len(frame)
                    message["raw"] = frame
                    receiver.messages.append(message)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
