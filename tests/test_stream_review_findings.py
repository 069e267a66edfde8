"""What an adversarial review of log streams (docs/streams.md) found: each test proved a
defect (it is named after it) and now guards its fix. Receivers are real servers on
127.0.0.1 (tests/streams_receivers.py and the small ones below); DNS is replaced by a
fake resolver where a test needs a public name (the machine has no outside DNS)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audit_app.db import get_db
from audit_app.streams.formats import FORMATS, ocsf

from .factories import Api
from .streams_receivers import HttpReceiver, SyslogReceiver
from .test_streams import create, deliver, since_start, traffic
from .test_web_session import csrf_from, login

PUBLIC = "93.184.216.34"  # any global address: nothing connects to it in these tests


@pytest.fixture
def app(make_app):
    return make_app(AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)


class AnsweringReceiver:
    """An HTTP receiver that answers every POST with ``status`` and the bytes ``body``
    (changeable), and keeps each request with the body it was answered with."""

    def __init__(self, body: bytes, status: int = 200, content_type: str = "application/json"):
        self.body, self.status, self.content_type = body, status, content_type
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = receiver.body
                receiver.requests.append(
                    {"headers": dict(self.headers), "body": sent, "answer": answer}
                )
                self.send_response(receiver.status)
                self.send_header("Content-Type", receiver.content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _hec_ids(body: bytes) -> list[str]:
    decoder, text, position, ids = json.JSONDecoder(), body.decode(), 0, []
    while position < len(text):
        obj, position = decoder.raw_decode(text, position)
        ids.append(obj["event"]["id"])
    return ids


def _fake_dns(monkeypatch, answers):
    """Resolve the names in ``answers`` (name -> callable(caller) -> address) and every
    other name as the system does."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            address = answers[host](sys._getframe(1).f_code.co_name)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# 5. Never a 500 ----------------------------------------------------------------------------


@pytest.mark.parametrize("allow_private", [True, False])
@pytest.mark.parametrize(
    "url",
    [
        "https://[::1/hook",  # urlsplit: Invalid IPv6 URL
        "https://siem.example.com:99999/hook",  # .port: out of range 0-65535
        "https://siem.example.com:http/hook",  # .port: could not be cast to integer
    ],
)
def test_a_malformed_destination_url_is_a_500_instead_of_an_error_naming_destination(
    make_app, org, url, allow_private
):
    app = make_app(AUDIT_STREAM_ALLOW_PRIVATE=allow_private)
    api = Api(app.test_client())
    made = api.post(
        "/api/v1/audit-streams",
        as_=org.admin,
        json={"name": "x", "destination": {"type": "webhook", "url": url}},
    )
    assert made.status_code in (400, 422), made.get_json()
    assert made.get_json()["error"]["field"] == "destination"


# 1./7. A delivery that raises something other than DeliveryFailed ----------------------------


def _case_name_now_resolves_privately(make_app, monkeypatch):
    """The documented re-check ("a name may resolve elsewhere later") raises AddressRefused,
    which is no DeliveryFailed."""
    resolved = {"to": PUBLIC}
    _fake_dns(monkeypatch, {"siem.example.com": lambda caller: resolved["to"]})
    app = make_app(AUDIT_STREAM_SETTLE_SECONDS=0)  # private destinations NOT allowed
    destination = {"type": "webhook", "url": "https://siem.example.com/hook"}

    def later():
        resolved["to"] = "10.1.2.3"  # the name now points inside the network

    return app, {"destination": destination}, later, None


def _case_unparseable_host(make_app, monkeypatch):
    """Accepted at creation (AUDIT_STREAM_ALLOW_PRIVATE skips the check); urllib3 raises
    LocationParseError, a ValueError, not a RequestException."""
    app = make_app(AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)
    destination = {"type": "webhook", "url": "https://" + "a" * 64 + ".example.com/hook"}
    return app, {"destination": destination}, lambda: None, None


def _case_hec_token_not_latin1(make_app, monkeypatch):
    """A token pasted with typographic quotes: http.client raises UnicodeEncodeError."""
    app = make_app(AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)
    hec = AnsweringReceiver(b'{"text":"Success","code":0}')
    body = {
        "destination": {"type": "splunk", "url": hec.url + "/services/collector/event"},
        "token": "\u201c0123-hec-token\u201d",
    }
    return app, body, lambda: None, hec


def _case_hec_answers_a_json_array(make_app, monkeypatch):
    """A 200 whose JSON is not an object: ``response.json().get`` raises AttributeError."""
    app = make_app(AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)
    hec = AnsweringReceiver(b"[]")
    body = {
        "destination": {"type": "splunk", "url": hec.url + "/services/collector/event"},
        "token": "hec-token",
    }
    return app, body, lambda: None, hec


@pytest.mark.parametrize(
    "case",
    [
        _case_name_now_resolves_privately,
        _case_unparseable_host,
        _case_hec_token_not_latin1,
        _case_hec_answers_a_json_array,
    ],
    ids=["name-now-private", "unparseable-host", "hec-token-not-latin1", "hec-json-array"],
)
def test_a_send_error_other_than_delivery_failed_is_a_500_and_a_silent_stall(
    make_app, org, monkeypatch, case
):
    """send() turns only some errors into DeliveryFailed. Anything else escapes: the test
    endpoint answers 500, and the deliverer's catch-all logs it and records nothing, so
    the stream stays 'active', lagSeconds 0, lastError None, no banner, and it is retried
    every tick (no backoff) forever while its records wait."""
    app, body, later, server = case(make_app, monkeypatch)
    try:
        api = Api(app.test_client())
        made = api.post("/api/v1/audit-streams", as_=org.admin, json={"name": "SIEM", **body})
        if made.status_code in (400, 422) and case is not _case_name_now_resolves_privately:
            return  # refused when it was created, with a field named: fine too
        assert made.status_code == 201, made.get_json()
        stream = made.get_json()
        later()
        traffic(api, org, 2)
        deliver(app)
        health = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin).get_json()
        tested = api.post(f"/api/v1/audit-streams/{stream['id']}/test", as_=org.admin)
        observed = {
            "test endpoint": tested.status_code,
            "state": health["state"],
            "lastError": health["lastError"],
            "lagSeconds": health["lagSeconds"],
        }
        assert observed["test endpoint"] == 200 and observed["state"] == "failing", observed
        assert observed["lastError"] and tested.get_json()["delivered"] is False, observed
    finally:
        if server is not None:
            server.stop()


# 1. Splunk: a 2xx without {"code": 0} ----------------------------------------------------------


@pytest.mark.parametrize(
    "answer,content_type",
    [
        (b"<html><body>OK</body></html>", "text/html"),  # a proxy's or a wrong port's page
        (b"", "text/plain"),
        (b"{}", "application/json"),
    ],
    ids=["html", "empty", "no-code"],
)
def test_splunk_2xx_without_code_0_counts_as_delivered_and_the_records_are_lost(
    app, api, org, db, answer, content_type
):
    """docs/streams.md: 'an answer other than 2xx with {"code": 0} is a failure'. The code
    takes a body that is no JSON (or JSON without code) as code 0: the cursor moves past
    records the destination never acknowledged, and they are never sent again."""
    hec = AnsweringReceiver(answer, content_type=content_type)
    try:
        stream = create(
            api,
            org,
            destination={"type": "splunk", "url": hec.url + "/services/collector/event"},
            token="hec-token",
        )
        traffic(api, org, 2)
        deliver(app)  # answered 200 + not {"code": 0}
        hec.body, hec.content_type = b'{"text":"Success","code":0}', "application/json"
        deliver(app)
        acknowledged = [
            record_id
            for request in hec.requests
            if request["answer"] == b'{"text":"Success","code":0}'
            for record_id in _hec_ids(request["body"])
        ]
        owed = since_start(db, org, stream)[:-1]  # all but the last tick's own record
        missing = [record_id for record_id in owed if record_id not in acknowledged]
        assert not missing, f"{len(missing)} of {len(owed)} records never acknowledged"
    finally:
        hec.stop()


# 3. Secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["splunk-url", "webhook-to-splunk"])
def test_a_stored_secret_follows_the_destination_to_a_new_url_in_clear(
    app, api, org, receiver, change
):
    """'A Splunk stream takes its HEC token; it is never returned.' Anyone with
    manageAuditStreams (an Admin API key too) reads it back by pointing the URL at a
    server of theirs: the stored token is sent there in the Authorization header. Turning
    a webhook stream into a Splunk one sends its signing secret the same way."""
    hec = HttpReceiver()
    try:
        if change == "splunk-url":
            secret = "hec-0123-secret-token"
            stream = create(
                api,
                org,
                destination={"type": "splunk", "url": hec.url + "/services/collector/event"},
                token=secret,
            )
        else:
            stream = create(api, org, destination={"type": "webhook", "url": hec.url})
            secret = stream["secret"]
        api.patch(
            f"/api/v1/audit-streams/{stream['id']}",
            as_=org.admin,
            json={"destination": {"type": "splunk", "url": receiver.url + "/collect"}},
        )
        api.post(f"/api/v1/audit-streams/{stream['id']}/test", as_=org.admin)
        leaked = [
            r["headers"].get("Authorization")
            for r in receiver.requests
            if secret in r["headers"].get("Authorization", "")
        ]
        assert not leaked, f"the new URL received {leaked}"
    finally:
        hec.stop()


def test_a_stream_key_that_is_no_fernet_key_makes_every_create_a_500(make_app, org):
    """'A changed key yields a clear failure, not a crash': AUDIT_STREAM_KEY is taken as
    given; seal() raises ValueError inside the request (and unseal reports it as 'the
    stream key changed?')."""
    try:
        app = make_app(
            AUDIT_STREAM_KEY="correct-horse-battery-staple", AUDIT_STREAM_ALLOW_PRIVATE=True
        )
    except (ValueError, RuntimeError):
        return  # refused at start with a message: what the claim asks for
    answer = Api(app.test_client()).post(
        "/api/v1/audit-streams",
        as_=org.admin,
        json={"name": "x", "destination": {"type": "webhook", "url": "http://127.0.0.1:9/"}},
    )
    assert answer.status_code != 500, answer.get_json()


def test_the_sender_attaches_the_servers_netrc_credentials_to_a_tenants_webhook(
    app, api, org, receiver, tmp_path, monkeypatch
):
    """requests.post trusts the environment: with a netrc on the server (NETRC or
    ~/.netrc, e.g. for a private package registry, with a ``default`` entry), every webhook
    delivery carries the server's login and password as Basic auth to whatever URL an
    organization's admin typed. (HTTPS_PROXY and friends are honoured the same way.)"""
    netrc = tmp_path / "netrc"
    netrc.write_text("default login deploy password registry-password-of-the-server\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url + "/hook"})
    api.post(f"/api/v1/audit-streams/{stream['id']}/test", as_=org.admin)
    [request] = receiver.requests
    assert "Authorization" not in request["headers"], request["headers"]["Authorization"]


# 4. SSRF ---------------------------------------------------------------------------------


def test_dns_rebinding_gets_syslog_frames_to_loopback_without_the_allowance(
    make_app, org, monkeypatch
):
    """The address is checked on one resolution and connected on another: a name that
    answers a public address to the check and 127.0.0.1 to the connection (a rebinding
    DNS with TTL 0) delivers to a loopback service with AUDIT_STREAM_ALLOW_PRIVATE off."""
    monkeypatch.setattr("audit_app.streams.destinations.CONNECT_TIMEOUT", 0.5)
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        """The address check asks with type= (a public answer); a connection made by host
        name (socket.create_connection asks positionally) would get loopback."""
        if host == "siem.example.com":
            address = PUBLIC if "type" in kwargs else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    app = make_app(AUDIT_STREAM_SETTLE_SECONDS=0)
    syslog = SyslogReceiver()
    try:
        api = Api(app.test_client())
        stream = create(
            api,
            org,
            destination={"type": "syslog", "host": "siem.example.com", "port": syslog.port},
            format="cef",
        )
        api.post(f"/api/v1/audit-streams/{stream['id']}/test", as_=org.admin)
        for _ in range(100):  # up to 2 s for the receiver's thread to parse what arrived
            if syslog.messages:
                break
            time.sleep(0.02)
        assert syslog.messages == [], "a loopback service received the stream's events"
    finally:
        syslog.stop()


# 8. A slow destination -------------------------------------------------------------------


class TricklingServer:
    """Reads a request, then answers '200 OK' one byte every ``pause`` seconds: never
    silent long enough for a read timeout."""

    def __init__(self, pause: float):
        self.pause, self.stopped = pause, threading.Event()
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        self.socket.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection):
        try:
            connection.settimeout(2)
            connection.recv(1 << 20)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if self.stopped.is_set():
                    break
                connection.send(bytes([byte]))
                time.sleep(self.pause)
        except OSError:
            pass
        finally:
            connection.close()

    def stop(self):
        self.stopped.set()
        self.socket.close()


def test_a_trickling_destination_holds_the_deliverer_past_every_timeout(app, api, org, monkeypatch):
    """'No answer within 10 s is a failure' and '5 s to connect, 10 s to answer': the read
    timeout is per socket read, so a destination that sends one byte at a time holds the
    process's one stream lane (every organization's streams wait behind it) and the
    /test request for as long as it likes; the 60 s lease runs out meanwhile. Scaled
    down: timeouts of 0.2 s, an answer trickled over ~3 s."""
    monkeypatch.setattr("audit_app.streams.destinations.CONNECT_TIMEOUT", 0.2)
    monkeypatch.setattr("audit_app.streams.destinations.READ_TIMEOUT", 0.2)
    trickling = TricklingServer(pause=0.08)
    try:
        create(api, org, destination={"type": "webhook", "url": trickling.url})
        started = time.monotonic()
        deliver(app)
        took = time.monotonic() - started
        assert took < 1.5, f"one delivery took {took:.1f} s with 0.2 s timeouts"
    finally:
        trickling.stop()


# 6. Formats ------------------------------------------------------------------------------


def test_ndjson_lines_carry_raw_line_separators_that_split_an_event(app, api, org, receiver):
    """'One event per line': json.dumps(ensure_ascii=False) leaves U+2028 (from a path)
    and U+0085 (from a User-Agent) raw, and both are line breaks to str.splitlines(): the
    project's own receiver (tests/streams_receivers.py) cannot read the delivery."""
    create(api, org, destination={"type": "webhook", "url": receiver.url + "/hook"})
    api.get("/api/v1/workspaces/%E2%80%A8x", as_=org.admin, headers={"User-Agent": "ua\x85x"})
    deliver(app)
    for request in receiver.requests:
        for line in request["body"].decode().splitlines():
            json.loads(line)  # JSONDecodeError: an event cut in two


# OCSF network_endpoint: "at least one of" these must be set
ENDPOINT_KEYS = (
    "ip", "uid", "name", "hostname", "svc_name", "instance_uid",
    "interface_uid", "interface_name", "domain",
)  # fmt: skip


def test_ocsf_src_endpoint_is_empty_for_records_without_an_ip(app, org):
    """API Activity requires src_endpoint, a network_endpoint that needs at least one of
    ip, uid, name, hostname, ... An operator's command (flask CLI: authType cli) and the
    stream's own test event have no ip: src_endpoint is {"ip": null}."""
    from audit_app.audit.capture.record import operator_record

    with app.test_request_context():
        record = operator_record(
            org.id, "add-member", {"email": "a@b.example"}, action="member.add"
        )
    record["storedAt"] = record["createdAt"]
    endpoint = ocsf(record)["src_endpoint"]
    assert any(endpoint.get(key) not in (None, "") for key in ENDPOINT_KEYS), endpoint


# 5. The page: the API's rules, bypassed ---------------------------------------------------


def test_the_page_stores_streams_the_api_refuses(app, org, db, receiver):
    """The page builds the service's input itself, without StreamCreateSchema: a format
    that does not exist and a port out of 1-65535 are stored (and 70000 is used as 4464,
    the port the address check and the socket wrap it to), where the API answers 400
    naming the field."""
    client = app.test_client()
    login(client, org.admin)
    token = csrf_from(client.get("/organization/audit-streams").get_data(True))
    for form in (
        {"name": "bad format", "type": "webhook", "url": receiver.url, "format": "xml"},
        {"name": "bad port", "type": "syslog", "host": "127.0.0.1", "port": "70000"},
    ):
        client.post("/organization/audit-streams", data={"csrf_token": token, **form})
    with app.app_context():
        stored = list(get_db().audit_streams.find({}))
    wrong = [
        (s["name"], s["format"], s["destination"].get("port"))
        for s in stored
        if s["format"] not in FORMATS or not 1 <= s["destination"].get("port", 1) <= 65535
    ]
    assert not wrong, f"stored: {wrong}"
