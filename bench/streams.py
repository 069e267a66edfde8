"""Benchmark: what a log stream whose destination hangs costs the API's requests.

Two apps on one embedded store, both with their background runner on: one organization
has no stream; the other streams to a webhook that never answers in time (every delivery
waits out the read timeout). Alternating rounds of the same requests against both; prints
the median latency of each and their ratio (goal: 1.0 within noise: delivery runs on its
own thread, never in a request).

Usage: python -m bench.streams [--requests N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

from audit_app import create_app
from audit_app.streams import destinations

from .capture import SECRET, seed


class Hanging(BaseHTTPRequestHandler):
    def do_POST(self):
        time.sleep(30)

    def log_message(self, *args):
        return


def build(store_dir: str, spool_dir: str):
    return create_app(
        {
            "SECRET_KEY": SECRET,
            "MONGO_URI": None,
            "EMBEDDED_STORE_DIR": store_dir,
            "AUDIT_SPOOL_DIR": spool_dir,
            "AUDIT_REPLAY_INTERVAL": 0,
            "AUDIT_SEAL_IN_BACKGROUND": False,
            "AUDIT_STREAM_INTERVAL": 1,
            "AUDIT_STREAM_SETTLE_SECONDS": 0,
            "AUDIT_STREAM_ALLOW_PRIVATE": True,
            "PASSWORD_HASH_PROFILE": "fast",
            "INSTANCE_PATH": spool_dir,
        }
    )


def latencies(app, key: str, count: int) -> list[float]:
    client = app.test_client()
    measured = []
    for _ in range(count):
        started = time.perf_counter()
        answer = client.get("/api/v1/workspaces", headers={"X-API-Key": key})
        measured.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    destinations.READ_TIMEOUT = 2.0  # every delivery waits 2 s, then fails and retries
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    with tempfile.TemporaryDirectory() as tmp:
        quiet = build(f"{tmp}/quiet", f"{tmp}/quiet-spool")
        streaming = build(f"{tmp}/streaming", f"{tmp}/streaming-spool")
        keys = {"quiet": seed(quiet)[0], "streaming": seed(streaming)[0]}
        client = streaming.test_client()
        made = client.post(
            "/api/v1/audit-streams",
            headers={"X-API-Key": keys["streaming"]},
            json={"name": "hangs", "destination": {"type": "webhook", "url": url}},
        )
        assert made.status_code == 201, made.get_json()
        apps = {"quiet": quiet, "streaming": streaming}
        for app in apps.values():
            app.extensions["audit_app.background"].ensure_started()
            latencies(app, keys["quiet" if app is quiet else "streaming"], 20)  # warm up
        measured: dict[str, list[float]] = {"quiet": [], "streaming": []}
        for round_index in range(args.rounds):
            order = ("quiet", "streaming") if round_index % 2 == 0 else ("streaming", "quiet")
            for name in order:
                measured[name] += latencies(apps[name], keys[name], args.requests)
        quiet_ms = statistics.median(measured["quiet"])
        streaming_ms = statistics.median(measured["streaming"])
        health = client.get("/api/v1/audit-streams", headers={"X-API-Key": keys["streaming"]})
        state = health.get_json()["items"][0]
        print(
            f"API latency, {args.rounds} rounds x {args.requests} (median): no stream "
            f"{quiet_ms:.2f} ms   stream to a hanging destination {streaming_ms:.2f} ms   "
            f"ratio {streaming_ms / quiet_ms:.3f}   (stream state {state['state']}, "
            f"failed deliveries {state['failed']})"
        )
        for app in apps.values():
            app.extensions["audit_app.background"].stop(timeout=5)
    server.shutdown()


if __name__ == "__main__":
    main()
