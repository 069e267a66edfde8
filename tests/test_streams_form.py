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
import json
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


# The form keeps what was typed ------------------------------------------------------------


def test_a_refused_form_comes_back_as_typed_but_the_token(app, org, owner, db):
    typed = {
        "name": "Splunk <prod>",
        "type": "splunk",
        "url": "https://127.0.0.1:8088/services/collector/event",
        "token": HEC_TOKEN,
        "format": "cef",  # cef is for syslog: refused
        "q": "status:4xx action:member.*",
    }
    answer = owner.post("/organization/audit-streams", data={"csrf_token": _token(owner), **typed})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert db.audit_streams.count_documents({}) == 0
    assert _value(page, "stream-name") == "Splunk <prod>"
    assert _value(page, "stream-url") == typed["url"]
    assert _value(page, "stream-q") == typed["q"]
    assert _selected(page, "stream-type") == ["splunk"]
    assert _selected(page, "stream-format") == ["cef"]
    # what to change, beside the form, and the field it names marked
    error = page.split('id="stream-error"', 1)[1].split("</p>", 1)[0]
    assert "cef is for syslog destinations" in error
    assert 'aria-invalid="true"' in page.split('id="stream-format"', 1)[1].split(">", 1)[0]
    # the token: never sent back, and the page says to enter it again
    assert HEC_TOKEN not in page
    assert _value(page, "stream-token") is None
    assert "Enter the HEC token again" in page
    # the record says why, and keeps no token
    record = _record(db, answer)
    assert record["statusCode"] == 400 and record["outcome"] == "failure"
    assert "cef is for syslog" in record["response"]["errorMessage"]
    assert HEC_TOKEN not in json.dumps(record, default=str)


def test_a_refused_syslog_form_keeps_its_host_port_and_tls(app, org, owner, db):
    answer = owner.post(
        "/organization/audit-streams",
        data={
            "csrf_token": _token(owner),
            "name": "Syslog",
            "type": "syslog",
            "host": "127.0.0.1",
            "port": "70000",
            "tls": "on",
            "format": "cef",
        },
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and db.audit_streams.count_documents({}) == 0
    assert "port" in page.split('id="stream-error"', 1)[1].split("</p>", 1)[0]
    assert _value(page, "stream-host") == "127.0.0.1" and _value(page, "stream-port") == "70000"
    assert "checked" in page.split('id="stream-tls"', 1)[1].split(">", 1)[0]
    assert 'aria-invalid="true"' in page.split('id="stream-port"', 1)[1].split(">", 1)[0]
    assert _selected(page, "stream-type") == ["syslog"]
    assert "Enter the HEC token again" not in page  # none was typed


def test_a_form_without_its_csrf_token_changes_nothing(app, org, owner, db):
    for token in ({}, {"csrf_token": "forged"}):
        answer = owner.post(
            "/organization/audit-streams",
            data={"name": "x", "type": "webhook", "url": "http://127.0.0.1:9/", **token},
        )
        assert answer.status_code == 400
    assert db.audit_streams.count_documents({}) == 0


def test_the_form_still_creates_a_stream(app, org, owner, db):
    receiver = HttpReceiver()
    try:
        answer = owner.post(
            "/organization/audit-streams",
            data={
                "csrf_token": _token(owner),
                "name": "Hook",
                "type": "webhook",
                "url": receiver.url + "/hook",
                "format": "json",
            },
        )
    finally:
        receiver.stop()
    assert answer.status_code == 201 and "whsec_" in answer.get_data(as_text=True)
    assert db.audit_streams.find_one({})["name"] == "Hook"
    assert 'id="stream-error"' not in answer.get_data(as_text=True)


def test_without_javascript_each_field_says_which_type_it_is_for(app, org, owner):
    page = owner.get("/organization/audit-streams").get_data(as_text=True)
    for input_id, words, kinds in (
        ("stream-url", "URL (webhook, Splunk HEC)", "webhook splunk"),
        ("stream-token", "HEC token (Splunk only)", "splunk"),
        ("stream-host", "Host (syslog only)", "syslog"),
        ("stream-port", "Port (syslog only)", "syslog"),
        ("stream-tls", "TLS (syslog only)", "syslog"),
    ):
        field = page.split(f'id="{input_id}"', 1)[0].rsplit('<div class="field"', 1)[1]
        assert f'data-destination="{kinds}"' in field, input_id
        label = page.split(f'<label for="{input_id}">', 1)[1].split("</label>", 1)[0]
        assert words in html.unescape(label.replace(f'<input id="{input_id}"', "")), label
    assert "cef (syslog only)" in page
    assert "/static/streams.js" in page


# A private destination names the setting -----------------------------------------------------


@pytest.fixture
def guarded(make_app, org):
    """The installation's default: private destinations (and http://) refused."""
    return make_app(WTF_CSRF_ENABLED=True, AUDIT_STREAM_ALLOW_PRIVATE=False)


@pytest.mark.parametrize(
    "destination",
    [
        {"type": "webhook", "url": "https://127.0.0.1/hook"},
        {"type": "webhook", "url": "https://localhost:8443/hook"},
        {"type": "syslog", "host": "10.1.2.3", "port": "514"},
        {"type": "webhook", "url": "http://siem.example.com/hook"},  # http:// too
    ],
)
def test_a_private_destination_says_it_needs_audit_stream_allow_private(
    guarded, org, db, destination
):
    client = guarded.test_client()
    login(client, org.owner)
    answer = client.post(
        "/organization/audit-streams",
        data={"csrf_token": _token(client), "name": "Inside", "format": "json", **destination},
    )
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422 and db.audit_streams.count_documents({}) == 0
    error = page.split('id="stream-error"', 1)[1].split("</p>", 1)[0]
    assert "AUDIT_STREAM_ALLOW_PRIVATE" in error
    assert _value(page, "stream-name") == "Inside"
    body = {**destination}
    if "port" in body:
        body["port"] = int(body["port"])
    api = Api(guarded.test_client()).post(
        "/api/v1/audit-streams", as_=org.owner, json={"name": "Inside", "destination": body}
    )
    assert api.status_code == 422
    assert api.get_json()["error"]["field"] == "destination"
    assert "AUDIT_STREAM_ALLOW_PRIVATE" in api.get_json()["error"]["message"]


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
