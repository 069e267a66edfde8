"""The Audit Streams form and a stream's failures, as an admin meets them (issue #26, item 4).

A refused form comes back as typed (but the HEC token, which is never sent back), saying
what to change beside the form; a destination on a private address names the setting that
allows it; a delivery tells "connection refused" from "did not answer in time" (and from a
name that does not resolve, and a TLS failure), in the test event's answer, in the
stream's health on the page and in the API (``lastError``, ``lastErrorCode``). Real sockets
on 127.0.0.1: a closed port refuses, a listening socket that never answers times out.
"""

from __future__ import annotations

import html
import socket
from contextlib import contextmanager

import pytest
from bson import ObjectId

from .factories import Api, make_org
from .streams_receivers import HttpReceiver
from .test_streams import deliver
from .test_web_session import csrf_from, login

HEC_TOKEN = "hec-token-5f0c1d2e-typed-once"


@pytest.fixture
def app(make_app):
    return make_app(
        WTF_CSRF_ENABLED=True, AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0
    )


@pytest.fixture
def org(app):
    return make_org(app, "Acme")


@pytest.fixture
def owner(app, org):
    client = app.test_client()
    login(client, org.owner)
    return client


def _token(client) -> str:
    return csrf_from(client.get("/organization/audit-streams").get_data(as_text=True))


def _record(db, response):
    return db.audit_logs.find_one({"requestId": response.headers["X-Request-Id"]})


def _value(page: str, input_id: str) -> str | None:
    """The value attribute of an input, as the browser reads it."""
    tag = page.split(f'id="{input_id}"', 1)[1].split(">", 1)[0]
    if 'value="' not in tag:
        return None
    return html.unescape(tag.split('value="', 1)[1].split('"', 1)[0])


def _selected(page: str, select_id: str) -> list[str]:
    select = page.split(f'id="{select_id}"', 1)[1].split("</select>", 1)[0]
    return [
        option.split('value="', 1)[1].split('"', 1)[0]
        for option in select.split("<option")[1:]
        if " selected" in option.split(">", 1)[0]
    ]


# Refused is not a timeout ---------------------------------------------------------------------


def _closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on: bound, then closed."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@contextmanager
def _silent_listener():
    """A socket that takes connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def _stream(api, org, destination, **body):
    made = api.post(
        "/api/v1/audit-streams",
        as_=org.owner,
        json={"name": "SIEM", "destination": destination, **body},
    )
    assert made.status_code == 201, made.get_json()
    return made.get_json()["id"]


def _state_cell(page: str) -> str:
    return html.unescape(page.split('data-label="State"', 1)[1].split("</td>", 1)[0])


def _tried(app, org, owner, api, stream_id) -> tuple[dict, str, dict, str]:
    """The test event through the API and the page, then one delivery; what each says."""
    tested = api.post(f"/api/v1/audit-streams/{stream_id}/test", as_=org.owner).get_json()
    flashed = owner.post(
        f"/organization/audit-streams/{stream_id}/test",
        data={"csrf_token": _token(owner)},
        follow_redirects=True,
    ).get_data(as_text=True)
    flash = html.unescape(flashed.split('class="flash error"', 1)[1].split("</p>", 1)[0])
    api.get("/api/v1/workspaces", as_=org.owner)  # a record to deliver
    deliver(app)
    shown = api.get(f"/api/v1/audit-streams/{stream_id}", as_=org.owner).get_json()
    page = owner.get("/organization/audit-streams").get_data(as_text=True)
    return tested, flash, shown, _state_cell(page)


def test_a_closed_port_is_connection_refused(app, org, owner):
    api = Api(app.test_client())
    port = _closed_port()
    stream_id = _stream(api, org, {"type": "webhook", "url": f"http://127.0.0.1:{port}/hook"})
    tested, flash, shown, state = _tried(app, org, owner, api, stream_id)
    said = f"Connection refused by 127.0.0.1:{port}"
    assert tested["delivered"] is False and tested["errorCode"] == "connectionRefused"
    assert said in tested["error"] and "in time" not in tested["error"]
    assert said in flash
    assert shown["state"] == "failing" and shown["lastErrorCode"] == "connectionRefused"
    assert said in shown["lastError"] and shown["health"]["lastErrorCode"] == "connectionRefused"
    assert "failing" in state and said in state


def test_a_socket_that_never_answers_did_not_answer_in_time(app, org, owner, monkeypatch):
    monkeypatch.setattr("audit_app.streams.destinations.CONNECT_TIMEOUT", 0.3)
    monkeypatch.setattr("audit_app.streams.destinations.READ_TIMEOUT", 0.3)
    api = Api(app.test_client())
    with _silent_listener() as port:
        stream_id = _stream(api, org, {"type": "webhook", "url": f"http://127.0.0.1:{port}/"})
        tested, flash, shown, state = _tried(app, org, owner, api, stream_id)
    said = "The destination did not answer in time"
    assert tested["delivered"] is False and tested["errorCode"] == "timeout"
    assert said in tested["error"] and "refused" not in tested["error"].lower()
    waited = f"127.0.0.1:{port} took the connection but sent no answer within 0.3 s"
    assert waited in tested["error"]
    assert said in flash
    assert shown["state"] == "failing" and shown["lastErrorCode"] == "timeout"
    assert said in shown["lastError"] and said in state


def test_a_syslog_port_that_refuses_says_so(app, org, owner):
    api = Api(app.test_client())
    port = _closed_port()
    stream_id = _stream(
        api, org, {"type": "syslog", "host": "127.0.0.1", "port": port}, format="cef"
    )
    tested = api.post(f"/api/v1/audit-streams/{stream_id}/test", as_=org.owner).get_json()
    assert tested["errorCode"] == "connectionRefused"
    assert f"Connection refused by 127.0.0.1:{port}" in tested["error"]


def test_tls_to_a_plain_http_server_is_a_tls_error(app, org, owner):
    api = Api(app.test_client())
    plain = HttpReceiver()
    try:
        url = plain.url.replace("http://", "https://") + "/hook"
        stream_id = _stream(api, org, {"type": "webhook", "url": url})
        tested = api.post(f"/api/v1/audit-streams/{stream_id}/test", as_=org.owner).get_json()
    finally:
        plain.stop()
    assert tested["delivered"] is False and tested["errorCode"] == "tlsError"
    assert tested["error"].startswith("TLS with 127.0.0.1:")


def test_a_name_that_stops_resolving_is_a_dns_failure(app, org, owner, monkeypatch):
    api = Api(app.test_client())
    real = socket.getaddrinfo
    resolving = {"siem.example.com": True}

    def fake(host, port, *args, **kwargs):
        if host == "siem.example.com":
            if not resolving[host]:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    stream_id = _stream(api, org, {"type": "webhook", "url": "http://siem.example.com:9/"})
    resolving["siem.example.com"] = False
    api.get("/api/v1/workspaces", as_=org.owner)
    deliver(app)
    shown = api.get(f"/api/v1/audit-streams/{stream_id}", as_=org.owner).get_json()
    assert shown["lastErrorCode"] == "dnsFailure"
    assert "'siem.example.com' does not resolve" in shown["lastError"]


def test_a_delivery_that_succeeds_clears_the_code(app, org, owner):
    api = Api(app.test_client())
    receiver = HttpReceiver()
    try:
        stream_id = _stream(api, org, {"type": "webhook", "url": receiver.url})
        receiver.statuses = [503, 200]
        api.get("/api/v1/workspaces", as_=org.owner)
        deliver(app)
        failing = api.get(f"/api/v1/audit-streams/{stream_id}", as_=org.owner).get_json()
        assert failing["lastErrorCode"] == "httpStatus" and "503" in failing["lastError"]
        deliver(app)
        back = api.get(f"/api/v1/audit-streams/{stream_id}", as_=org.owner).get_json()
    finally:
        receiver.stop()
    assert back["state"] == "active" and back["lastError"] is None
    assert back["lastErrorCode"] is None


def test_a_stream_paused_by_the_deliverer_says_paused(app, org, owner, db):
    api = Api(app.test_client())
    stream_id = _stream(api, org, {"type": "webhook", "url": "http://127.0.0.1:9/"})
    db.audit_streams.update_one(
        {"_id": ObjectId(stream_id)},
        {"$set": {"destinationSetBy": {"accountId": ObjectId(), "apiKeyId": None}}},
    )
    api.get("/api/v1/workspaces", as_=org.owner)
    deliver(app)
    shown = api.get(f"/api/v1/audit-streams/{stream_id}", as_=org.owner).get_json()
    assert shown["state"] == "paused" and shown["lastErrorCode"] == "paused"
    assert shown["pausedReason"] == shown["lastError"]
