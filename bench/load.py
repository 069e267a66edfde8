"""Load on gunicorn, with a worker killed mid-way: every answered request has its record.

Starts gunicorn (``--workers`` gthread workers) on a fresh embedded store on 127.0.0.1,
sends ``--threads`` x ``--requests`` API requests over keep-alive connections, optionally
SIGKILLs one worker half-way, stops the server, replays the spool, and checks that the
records are exactly the answered requests (by X-Request-Id): none missing, none twice.
Prints requests/s and p50/p99 latency.

Usage: python bench/load.py [--workers 3] [--threads 8] [--requests 500] [--kill-worker]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "load-test-secret-key-0123456789-0123456789-0123456789"


@dataclass
class LoadResult:
    answered: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    elapsed: float = 0.0
    killed_pid: int | None = None
    stored: list[str] = field(default_factory=list)

    @property
    def missing(self) -> set[str]:
        return set(self.answered) - set(self.stored)

    @property
    def unexplained(self) -> set[str]:
        """Records of requests the client never sent (anything but the unanswered ones)."""
        return set(self.stored) - set(self.answered) - set(self.unanswered)

    @property
    def duplicates(self) -> int:
        return len(self.stored) - len(set(self.stored))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(tmp: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "AUDIT_MONGO_URI")}
    env.update(
        SECRET_KEY=SECRET,
        EMBEDDED_STORE_DIR=f"{tmp}/store",
        AUDIT_SPOOL_DIR=f"{tmp}/spool",
        PASSWORD_HASH_PROFILE="fast",
        AUDIT_REPLAY_INTERVAL="2",
        RATELIMIT_ENABLED="false",
        PYTHONPATH=str(ROOT),
    )
    return env


def flask(env: dict, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout


def setup(env: dict) -> tuple[str, str, str]:
    """An organization, an Admin API key and one workspace, through the app's own CLI."""
    made = json.loads(
        flask(
            env,
            "create-org",
            "Load",
            "--owner-email",
            "load@load.example",
            "--owner-password",
            "loadpassword",
            "--json",
        )
    )
    key = json.loads(
        flask(
            env,
            "create-api-key",
            "--organization",
            made["organizationId"],
            "--name",
            "load",
            "--role",
            "Admin",
            "--json",
        )
    )
    script = (
        "import sys; from wsgi import app; c = app.test_client();"
        "print(c.post('/api/v1/workspaces', json={'name': 'Load'},"
        " headers={'X-API-Key': sys.argv[1]}).get_json()['id'])"
    )
    workspace = (
        subprocess.run(
            [sys.executable, "-c", script, key["key"]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return made["organizationId"], key["key"], workspace


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def gunicorn(
    env: dict, port: int, workers: int = 1, access_log: str = "/dev/null"
) -> subprocess.Popen:
    """The app under gunicorn on 127.0.0.1:``port``, as ``make run`` serves it."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--access-logfile",
            access_log,
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run(workers: int, threads: int, requests: int, kill_worker: bool) -> LoadResult:
    result = LoadResult()
    with tempfile.TemporaryDirectory() as tmp:
        env = environment(tmp)
        organization_id, key, workspace = setup(env)
        port = free_port()
        server = gunicorn({**env, "GUNICORN_THREADS": "4"}, port, workers)
        try:
            _wait_ready(port)
            lock = threading.Lock()
            done = threading.Event()
            counter = {"sent": 0}

            def client_thread(index: int) -> None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for number in range(requests):
                    headers = {
                        "X-API-Key": key,
                        "X-Request-Id": f"load-{index}-{number}",
                        "Content-Type": "application/json",
                        "X-Workspace-Id": workspace,
                    }
                    body = None
                    method, path = "GET", "/api/v1/workspaces"
                    if number % 10 == 0:  # writes go to one workspace; reads stay the same size
                        method, path = "POST", "/api/v1/pathways"
                        body = json.dumps(
                            {"name": f"p-{index}-{number}", "steps": [{"title": "s"}]}
                        )
                    started = time.perf_counter()
                    try:
                        connection.request(method, path, body=body, headers=headers)
                        answer = connection.getresponse()
                        answer.read()
                        latency = time.perf_counter() - started
                        with lock:
                            result.answered.append(answer.getheader("X-Request-Id"))
                            result.latencies.append(latency)
                            counter["sent"] += 1
                    except (OSError, http.client.HTTPException):
                        with lock:  # the worker died with it: it may or may not be recorded
                            result.failures += 1
                            result.unanswered.append(headers["X-Request-Id"])
                        connection.close()
                        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.close()

            def killer() -> None:
                while not done.is_set() and counter["sent"] < threads * requests // 2:
                    time.sleep(0.01)
                pids = worker_pids(server.pid)
                if pids and not done.is_set():
                    result.killed_pid = pids[0]
                    os.kill(pids[0], signal.SIGKILL)

            started = time.perf_counter()
            pool = [threading.Thread(target=client_thread, args=(i,)) for i in range(threads)]
            watcher = threading.Thread(target=killer) if kill_worker else None
            for thread in pool:
                thread.start()
            if watcher:
                watcher.start()
            for thread in pool:
                thread.join()
            done.set()
            if watcher:
                watcher.join()
            result.elapsed = time.perf_counter() - started
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        flask(env, "replay-spool")
        flask(env, "fold-journal")  # what no worker folded before it stopped (or was killed)
        result.stored = _stored_request_ids(env, organization_id)
    return result


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    return
            finally:
                connection.close()
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not become ready")


def _stored_request_ids(env: dict, organization_id: str) -> list[str]:
    """The request ids of the load's records (the client numbered every request)."""
    script = (
        "import json, sys; from bson import ObjectId; from audit_app.db import Store;"
        "db = Store(None, db_name='audit_app', embedded_dir=sys.argv[1]).db;"
        "docs = db.audit_logs.find({'organizationId': ObjectId(sys.argv[2])},"
        " {'requestId': 1});"
        "print(json.dumps([d['requestId'] for d in docs if d['requestId'].startswith('load-')]))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script, env["EMBEDDED_STORE_DIR"], organization_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(output.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--kill-worker", action="store_true")
    args = parser.parse_args()
    result = run(args.workers, args.threads, args.requests, args.kill_worker)
    latencies = sorted(result.latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0
    print(
        f"gunicorn {args.workers} workers x 4 threads, embedded store, "
        f"{args.threads} client threads x "
        f"{args.requests} requests{' , one worker SIGKILLed half-way' if args.kill_worker else ''}"
    )
    print(
        f"answered {len(result.answered)}  failed {result.failures}  "
        f"requests/s {len(result.answered) / result.elapsed:.1f}  "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms  p99 {p99 * 1000:.1f} ms"
    )
    print(
        f"records {len(result.stored)}  missing {len(result.missing)}  "
        f"duplicates {result.duplicates}"
        f"  records of unanswered requests {len(set(result.stored) & set(result.unanswered))}"
        + (f"  killed worker pid {result.killed_pid}" if result.killed_pid else "")
    )
    if result.missing or result.duplicates or result.unexplained:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
