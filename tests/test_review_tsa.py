"""Review of the RFC 3161 timestamps and of the commands' sealer lease: what a database
writer, a hostile timestamp authority or an operator's setting could do."""

from __future__ import annotations

import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from audit_app.audit.integrity import merkle, sealing, timestamps
from audit_app.config import ConfigError
from audit_app.db import get_audit_db

from .factories import Api, make_org
from .test_timestamps import fast, proof_file, stamped, tsa, verifier  # noqa: F401
from .test_verifiable_log import SEALING, some_records

GRANTED_WITHOUT_TOKEN = bytes.fromhex("30053003020100")  # status granted, no token
UNKNOWN_STATUS = bytes.fromhex("30053003020106")  # status 6: not a PKIStatus


class Hostile:
    """A timestamp authority that answers ``body`` (or drips its headers)."""

    def __init__(self) -> None:
        self.body = GRANTED_WITHOUT_TOKEN
        self.drip_headers = 0.0  # seconds of headers sent a byte at a time
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    if hostile.drip_headers:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        self.wfile.flush()
                        until = time.monotonic() + hostile.drip_headers
                        while time.monotonic() < until:
                            self.wfile.write(b"a")
                            self.wfile.flush()
                            time.sleep(0.1)
                        self.wfile.write(b"\r\nContent-Length: 0\r\n\r\n")
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "application/timestamp-reply")
                    self.send_header("Content-Length", str(len(hostile.body)))
                    self.end_headers()
                    self.wfile.write(hostile.body)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tsr"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    authority = Hostile()
    yield authority
    authority.close()


@pytest.mark.parametrize(
    "body", [GRANTED_WITHOUT_TOKEN, UNKNOWN_STATUS], ids=["no-token", "status-6"]
)
def test_an_authority_answering_an_odd_status_never_stops_the_seal(make_app, hostile, body):
    """A TSA answers 'granted' without a token, or a status RFC 3161 does not define: the
    library raises ValueError, not TimestampError. The seal must go on, unstamped, for every
    organization, as for any other wrong answer."""
    hostile.body = body
    app = make_app(**SEALING, AUDIT_TSA_URL=hostile.url)
    api = Api(app.test_client())
    orgs = [make_org(app, f"Odd{i}") for i in range(2)]
    for org in orgs:
        some_records(api, api.token(org.owner))
    with app.app_context():
        from audit_app.audit.capture.hooks import store_journaled

        store_journaled()
    written = sealing.seal_now(app, up_to_now=True)
    assert all(isinstance(written[str(org.id)], int) for org in orgs), written
    with app.app_context():
        made = list(get_audit_db()[merkle.CHECKPOINTS].find({}))
    assert len(made) >= 2 and not any("timestamp" in doc for doc in made)


@pytest.mark.parametrize(
    "body", [GRANTED_WITHOUT_TOKEN, UNKNOWN_STATUS], ids=["no-token", "status-6"]
)
def test_a_database_writer_s_odd_token_never_crashes_the_offline_verifier(
    stamped,  # noqa: F811
    tsa,  # noqa: F811
    tmp_path,
    body,
):
    """The proof's token comes from the database: one that decodes but has an odd status,
    or is granted with no token, ends in 'TIMESTAMP NOT VERIFIED' (exit 1), not a traceback."""
    app, org, api, token = stamped
    some_records(api, token)
    from .test_verifiable_log import seal

    seal(app, org)
    with app.app_context():
        get_audit_db()[merkle.CHECKPOINTS].update_many(
            {"organizationId": org.id},
            {"$set": {"timestamp.token": base64.b64encode(body).decode()}},
        )
    path, proof = proof_file(api, token, tmp_path)
    done = verifier(path, proof["publicKey"], "--tsa-root", tsa.root_pem)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1 and "TIMESTAMP NOT VERIFIED" in done.stdout, done.stdout


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/tsr", "http://127.0.0.1:port/tsr"])
def test_a_tsa_url_with_a_bad_port_is_refused_at_start(make_app, url):
    """Accepted at start, such a URL raised at the first seal: urllib's error (OverflowError,
    or InvalidURL whose warning then read the port again, ValueError) escaped the seal."""
    with pytest.raises(ConfigError, match="AUDIT_TSA_URL"):
        make_app(**SEALING, AUDIT_TSA_URL=url)


def test_an_authority_dripping_its_headers_never_holds_the_sealer_past_the_timeout(hostile):
    """The deadline was checked only while reading the body: an authority that sends its
    status line and then a header byte every 0.1 s (never idle for a whole socket timeout)
    held the sealer, lease and all, as long as it liked (64 KiB a header, 100 headers)."""
    hostile.drip_headers = 5.0
    authority = timestamps.authority_from_settings(hostile.url, None)
    assert authority is not None
    started = time.monotonic()
    assert authority.stamp("a checkpoint") is None
    assert time.monotonic() - started < timestamps.TIMEOUT + 1.5


def test_a_command_keeps_the_sealer_s_lease_for_as_long_as_it_seals(make_app, monkeypatch):
    """``flask seal`` took the lease for COMMAND_LEASE_SECONDS and never renewed it: a seal
    longer than that (a backlog, a slow timestamp authority: up to TIMEOUT a checkpoint)
    let the background sealer take the lease and seal and verify alongside the command."""
    app = make_app(**SEALING)
    monkeypatch.setattr(sealing, "COMMAND_LEASE_SECONDS", 1)
    with app.app_context(), sealing.sealing_alone(app):
        time.sleep(2.5)  # the command still sealing
        assert not sealing.acquire_lease("sealer", "the background task", 60, app)
    with app.app_context():
        assert sealing.acquire_lease("sealer", "the background task", 60, app)  # let go


def test_the_background_sealer_keeps_its_lease_for_as_long_as_it_seals(make_app, monkeypatch):
    """The background task took the lease for twice its interval and never renewed it: a
    pass longer than that (many organizations, a slow timestamp authority at up to TIMEOUT
    a checkpoint) let a command or another process seal and verify alongside it."""
    import threading

    app = make_app(**SEALING)
    monkeypatch.setattr(sealing, "background_lease_seconds", lambda config: 1.0)
    sealing_started = threading.Event()

    def slow_seal(app, **kwargs):
        sealing_started.set()
        time.sleep(2.5)  # longer than the lease
        return {}

    monkeypatch.setattr(sealing, "seal_now", slow_seal)
    pass_ = threading.Thread(target=sealing.seal_and_verify, args=(app, "the background task"))
    pass_.start()
    assert sealing_started.wait(10)
    time.sleep(1.8)  # past the lease's first length
    with app.app_context():
        assert not sealing.acquire_lease("sealer", "a command", 60, app)
    pass_.join(10)
    with app.app_context():
        assert sealing.acquire_lease("sealer", "a command", 60, app)  # let go at the end
