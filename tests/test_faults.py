"""Faults on the write path: a store that is down, one that is slow, recovery, exactly once."""

import json
import socket
import threading
import time

import pytest

from audit_app.audit.capture.hooks import WRITER_KEY

from .factories import Api


@pytest.fixture
def blackhole():
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a hung MongoDB."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"mongodb://127.0.0.1:{server.getsockname()[1]}/audit_app?directConnection=true"
    stop.set()
    thread.join(timeout=2)
    for connection in held:
        connection.close()
    server.close()


def test_a_hung_audit_store_costs_a_bounded_wait_and_loses_nothing(make_app, org, blackhole, mongo):
    app = make_app(AUDIT_MONGO_URI=blackhole, AUDIT_WRITE_TIMEOUT_MS=400)
    api = Api(app.test_client())
    token = api.token(org.owner)
    timings, answers = [], []
    for _ in range(5):
        started = time.monotonic()
        answers.append(api.get("/api/v1/organization", token=token))
        timings.append(time.monotonic() - started)
    assert all(a.status_code == 200 for a in answers)
    assert max(timings) < 10  # bounded: no request waits for a hung server indefinitely
    writer = app.extensions[WRITER_KEY]
    assert writer.stats["spooled"] == 6 and writer.stats["stored"] == 0
    # the store comes back: replay into it (same spool directory), twice
    recovered = make_app(AUDIT_MONGO_URI="mongomock://localhost/audit_app")
    first = recovered.test_cli_runner().invoke(args=["replay-spool", "--json"])
    second = recovered.test_cli_runner().invoke(args=["replay-spool", "--json"])
    assert json.loads(first.output)["stored"] == 6 and json.loads(second.output)["stored"] == 0


def test_down_then_up_during_traffic_stores_every_record_once(make_app, org, mongo):
    from .fakes import FlakyClient

    flaky = FlakyClient(mongo)
    app = make_app(AUDIT_MONGO_CLIENT=flaky)
    api = Api(app.test_client())
    token = api.token(org.owner)
    answered = []
    for index in range(30):
        flaky.down = 10 <= index < 20
        if index == 20:
            app.extensions[WRITER_KEY]._skip_store_until = 0  # recovered: next write retries
        answer = api.get("/api/v1/workspaces", token=token)
        assert answer.status_code == 200
        answered.append(answer.headers["X-Request-Id"])
    app.extensions[WRITER_KEY].replay()
    stored = [
        r["requestId"] for r in mongo["audit_app"].audit_logs.find({"path": "/api/v1/workspaces"})
    ]
    assert sorted(stored) == sorted(answered)
