"""Each process's background runner: named tasks, each on its own interval."""

from __future__ import annotations

import time

from audit_app.background import EXTENSION_KEY, BackgroundRunner


def test_no_replay_interval_stops_the_replay_only(make_app, tmp_path):
    """AUDIT_REPLAY_INTERVAL=0 ("replay only by command") once also stopped sealing and the
    embedded store's retention purge, which ran on the replay thread."""
    app = make_app(
        MONGO_CLIENT=None,
        MONGO_URI=None,
        EMBEDDED_STORE_DIR=str(tmp_path / "store"),
        AUDIT_REPLAY_INTERVAL=0,
        AUDIT_SEAL_IN_BACKGROUND=True,
        AUDIT_STREAM_INTERVAL=5,
        AUDIT_PURGE_INTERVAL=3600,
    )
    runner = app.extensions[EXTENSION_KEY]
    assert set(runner.tasks) == {"counts", "purge", "seal", "streams", "fold"}
    assert runner.tasks["streams"].lane == "streams"  # a slow SIEM holds up nothing else
    # the journal's fold neither (the embedded store's write mode): records wait at most
    # one interval, whatever a seal or a purge takes
    assert runner.tasks["fold"].lane == "journal"
    assert runner.tasks["fold"].interval == 0.2
    client = app.test_client()
    client.get("/healthz")  # the first request starts the process's runner
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(t.runs for t in runner.tasks.values()):
        time.sleep(0.05)
    status = client.get("/readyz").get_json()["checks"]["background"]
    assert status["seal"]["runs"] >= 1 and status["seal"]["lastError"] is None
    assert status["purge"]["runs"] >= 1
    assert status["streams"]["runs"] >= 1 and status["streams"]["lastError"] is None
    assert status["fold"]["runs"] >= 1 and status["fold"]["lastError"] is None
    runner.stop()


def test_every_task_runs_on_its_own_interval_and_a_failure_stops_no_other():
    runner = BackgroundRunner()
    ran: list[str] = []

    def broken():
        ran.append("broken")
        raise RuntimeError("store down")

    runner.add("often", 0.05, lambda: ran.append("often"))
    runner.add("broken", 0.05, broken)
    runner.add("rarely", 3600, lambda: ran.append("rarely"))
    runner.run_due()
    time.sleep(0.06)
    wait = runner.run_due()
    assert ran.count("often") == 2 and ran.count("broken") == 2 and ran.count("rarely") == 1
    assert 0 <= wait <= 0.05
    status = runner.status()
    assert status["broken"]["lastError"] == "RuntimeError: store down"
    assert status["often"]["lastError"] is None and status["rarely"]["runs"] == 1


def test_the_runner_thread_runs_tasks_and_stops_cleanly():
    runner = BackgroundRunner(longest_sleep=0.05)
    ran: list[int] = []
    runner.add("tick", 0.02, lambda: ran.append(1))
    runner.ensure_started()
    runner.ensure_started()  # once per process
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(ran) < 3:
        time.sleep(0.01)
    runner.stop()
    count = len(ran)
    time.sleep(0.1)
    assert count >= 3 and len(ran) == count


def test_readyz_names_a_failing_task_by_kind_only(make_app):
    """/readyz answers anyone: an error message may name hosts or paths, so only its kind."""
    app = make_app()
    runner = app.extensions[EXTENSION_KEY]

    def failing():
        raise OSError("cannot write /srv/secret-place/x")

    runner.add("probe", 3600, failing)
    runner.run_due()
    checks = app.test_client().get("/readyz").get_json()["checks"]
    assert checks["background"]["probe"]["lastError"] == "OSError"
    assert "secret-place" not in str(checks)
