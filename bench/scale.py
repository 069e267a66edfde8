"""Benchmark: the embedded store at 10k, 100k and 1M audit records, over the API.

Fills a fresh embedded store with one organization's records (bulk, not HTTP: the
records a year of traffic leaves), serves it with gunicorn on 127.0.0.1 (one worker, as
``make run`` would), and prints per size the median and p95 of each query shape over
HTTP, an export's rate, and the worker's resident memory. Background sealing is off
during the measurement (it would compete for the two cores); ``--seal`` times sealing the
whole backlog once at the end.

Each size has a store of its own, served by its own gunicorn, and the sizes take turns
request by request (``measure``). ``--store DIR`` keeps each size's store in
``DIR/<size>`` and reuses it on the next run (filling a million records takes minutes);
without it the stores are temporary.

Usage: python -m bench.scale [--sizes 10000,100000,1000000] [--repeat 21] [--store DIR]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from bench.load import (
    _wait_ready,
    environment,
    flask,
    free_port,
    gunicorn,
    setup,
    worker_pids,
)

ACCOUNTS = [ObjectId() for _ in range(50)]
WORKSPACES = [ObjectId() for _ in range(10)]
KEYS = [ObjectId() for _ in range(20)]
START = datetime.now(UTC) - timedelta(days=390)  # within the default retention
SPAN = timedelta(days=389)
PATHS = ["pathways", "workspaces", "members", "roles", "api-keys", "audit-logs"]
RESOURCES = {"api-keys": "apiKeys", "audit-logs": "auditLogs"}


# a resource only the oldest records name (ten of the first 5,000 of a million): a search
# for it matches only old records
LEGACY = "legacy-reports"


def _legacy(index: int, total: int) -> bool:
    return index < total // 200 and index % (total // 2000 or 1) == 7


def _record(organization: ObjectId, index: int, total: int, rng: random.Random) -> dict:
    at = START + SPAN * (index / total)
    by_key = rng.random() < 0.3
    path = rng.choices(PATHS, weights=[60, 20, 8, 4, 5, 3])[0]
    path = LEGACY if _legacy(index, total) else path
    method = rng.choices(["GET", "POST", "PATCH", "DELETE"], weights=[70, 15, 10, 5])[0]
    status = rng.choices(
        [200, 201, 204, 400, 403, 404, 409, 500], weights=[70, 8, 4, 5, 3, 6, 2, 2]
    )[0]
    account = None if by_key else ACCOUNTS[min(int(rng.paretovariate(1.2)) - 1, 49)]
    return {
        "_id": ObjectId(),
        "organizationId": organization,
        "accountId": account,
        "accountEmail": None if by_key else f"user{ACCOUNTS.index(account)}@scale.example",
        "apiKeyId": rng.choice(KEYS) if by_key else None,
        "apiKeyName": "ci" if by_key else None,
        "workspaceId": rng.choice(WORKSPACES) if path == "pathways" else None,
        "authType": "apiKey" if by_key else "jwt",
        "resource": RESOURCES.get(path, path),
        "method": method,
        "path": f"/api/v1/{path}/{ObjectId()}" if method != "POST" else f"/api/v1/{path}",
        "route": f"/api/v1/{path}/<id>",
        "statusCode": status,
        "createdAt": at,
        "storedAt": at,
        "durationMs": round(rng.uniform(1, 40), 2),
        "ip": f"203.0.113.{rng.randint(1, 254)}",
        "userAgent": "scale/1.0",
        "requestId": ObjectId().binary.hex(),
        "request": {
            "query": {},
            "params": {},
            "headers": {"User-Agent": "scale/1.0"},
            "bodyType": "json" if method in ("POST", "PATCH") else "empty",
            "body": {"name": "x" * 40, "steps": [{"title": "s"}]} if method != "GET" else None,
        },
    }


def fill(env: dict, organization_id: str, start: int, end: int, total: int) -> float:
    """Insert records start..end (of a log that will hold ``total``); records/s."""
    script = f"""
import random, sys, time
from bson import ObjectId
from bench.scale import _record
from audit_app.db import Store
db = Store(None, db_name="audit_app", embedded_dir={env["EMBEDDED_STORE_DIR"]!r}).db
rng = random.Random({start})
organization = ObjectId({organization_id!r})
began = time.perf_counter()
for first in range({start}, {end}, 10000):
    db.audit_logs.insert_many(
        [_record(organization, i, {total}, rng) for i in range(first, min(first + 10000, {end}))]
    )
print(({end} - {start}) / (time.perf_counter() - began))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def _get(port: int, key: str, path: str) -> tuple[float, dict | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    connection.request("GET", path, headers={"X-API-Key": key})
    answer = connection.getresponse()
    body = answer.read()
    elapsed = time.perf_counter() - started
    connection.close()
    if answer.status != 200:
        raise RuntimeError(f"{path}: {answer.status} {body[:300]!r}")
    return elapsed, json.loads(body) if body.startswith(b"{") else None


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def shapes(port: int, key: str) -> dict[str, str]:
    base = "/api/v1/audit-logs?limit=50"
    first = _get(port, key, base)[1]
    day = (START + SPAN / 2).date().isoformat()
    return {
        "first page": base,
        "next page": f"{base}&cursor={first['nextCursor']}",
        "account": f"{base}&accountId={ACCOUNTS[20]}",
        "workspace": f"{base}&workspaceId={WORKSPACES[3]}",
        "API key": f"{base}&apiKeyId={KEYS[5]}",
        "status 5xx": f"{base}&statusCode=5xx",
        "method DELETE": f"{base}&method=DELETE",
        "auth apiKey": f"{base}&authType=apiKey",
        "date range": f"{base}&from={day}T00:00:00Z&to={day}T23:59:59Z",
        "path search": f"{base}&q=roles",
        "path, old only": f"{base}&q={LEGACY}",
        "path, nothing": f"{base}&q=no-such-path-anywhere",
        "path:/ start": f"{base}&q=path:/api/v1/roles/",
        "path:/ old": f"{base}&q=path:/api/v1/{LEGACY}/",
        "id search": f"{base}&q={ACCOUNTS[20]}",
    }


def measure(servers: dict[int, tuple[int, str]], repeat: int) -> dict[int, dict]:
    """Median and p95 of each shape at each size (``servers``: size -> port, key).

    The sizes take turns request by request, so that each sees the same machine: on two
    shared cores, measuring one size and then the other compared two different moments
    of the other processes' load as much as two sizes.
    """
    paths = {size: shapes(port, key) for size, (port, key) in servers.items()}
    times: dict[int, dict[str, list[float]]] = {size: {} for size in servers}
    for name in paths[next(iter(servers))]:
        for size, (port, key) in servers.items():
            _get(port, key, paths[size][name])  # warm
        for _ in range(repeat):
            for size, (port, key) in servers.items():
                took = _get(port, key, paths[size][name])[0] * 1000
                times[size].setdefault(name, []).append(took)
    figures: dict[int, dict] = {}
    for size, by_name in times.items():
        figures[size] = {}
        for name, taken in by_name.items():
            taken.sort()
            figures[size][name] = (statistics.median(taken), taken[int(0.95 * (len(taken) - 1))])
    return figures


def export_rate(port: int, key: str) -> tuple[float, int]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    connection.request("GET", "/api/v1/audit-logs/export?format=ndjson", headers={"X-API-Key": key})
    answer = connection.getresponse()
    lines = 0
    while chunk := answer.read(1 << 20):
        lines += chunk.count(b"\n")
    connection.close()
    return lines / (time.perf_counter() - started), lines


def _env(folder: str) -> dict:
    env = environment(folder)
    env.update(AUDIT_SEAL_IN_BACKGROUND="false", AUDIT_REPLAY_INTERVAL="30")
    return env


def _kept_store(folder: str, size: int, total: int) -> tuple[dict, str, str]:
    """A store of ``size`` records (of a log of ``total``) under ``folder``: made and
    filled once, then reused as it is (the records of earlier runs' requests included)."""
    env = _env(folder)
    noted = f"{folder}/bench.json"
    if os.path.exists(noted):
        with open(noted) as kept:
            state = json.load(kept)
        if state["size"] == size and state["total"] == total:
            print(f"reusing {folder} ({size:,} records)", flush=True)
            return env, state["organization"], state["key"]
        raise SystemExit(f"{folder} holds another fill ({state}); remove it or pick another folder")
    os.makedirs(folder, exist_ok=True)
    organization_id, key, _ = setup(env)
    rate = fill(env, organization_id, 0, size, total)
    print(f"filled {folder} to {size:,} records ({rate:,.0f} records/s)", flush=True)
    with open(noted, "w") as kept:
        json.dump({"size": size, "total": total, "organization": organization_id, "key": key}, kept)
    return env, organization_id, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--seal", action="store_true", help="time sealing the backlog at the end")
    parser.add_argument("--store", help="keep each size's store under this folder, and reuse it")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        stores = {
            size: _kept_store(f"{args.store or tmp}/{size}", size, sizes[-1]) for size in sizes
        }
        servers, workers, running = {}, {}, []
        try:
            for size, (env, _, key) in stores.items():
                port = free_port()
                running.append(gunicorn(env, port))
                _wait_ready(port)
                [workers[size]] = worker_pids(running[-1].pid)
                servers[size] = (port, key)
            results = measure(servers, args.repeat)
            for size, (port, key) in servers.items():
                legacy = sum(_legacy(i, sizes[-1]) for i in range(min(size, sizes[-1] // 200)))
                found = _get(port, key, f"/api/v1/audit-logs?limit=50&q={LEGACY}")[1]
                assert found is not None and len(found["items"]) == legacy, "an old one is missing"
            rss = {size: _rss_mb(worker) for size, worker in workers.items()}
            exported = {
                size: export_rate(port, key) if not args.no_export else (0.0, 0)
                for size, (port, key) in servers.items()
            }
            peak = {size: _rss_mb(worker) for size, worker in workers.items()}
        finally:
            for server in running:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
        print(f"\nmedian / p95 ms over HTTP, {args.repeat} runs each, the sizes taking turns")
        print(f"  {'shape':<14}" + "".join(f"{size:>18,}" for size in sizes))
        for name in results[sizes[0]]:
            cells = "".join(
                f"{results[size][name][0]:10.1f} /{results[size][name][1]:6.1f}" for size in sizes
            )
            print(f"  {name:<14}{cells}")
        print("  worker RSS    " + "".join(f"{rss[s]:12.0f} MB{'':3}" for s in sizes))
        for size, (rate, rows) in exported.items():
            if rows:
                print(f"  export NDJSON at {size:,}: {rows:,} rows at {rate:,.0f} rows/s")
                print(f"  worker RSS after the export {peak[size]:.0f} MB")
        if len(sizes) > 1:
            small, large = sizes[0], sizes[-1]
            print(f"\ngrowth {small:,} -> {large:,} records (median ratio)")
            for name in results[small]:
                print(f"  {name:<14} {results[large][name][0] / results[small][name][0]:6.2f}x")
        if args.seal:
            env, organization_id, _ = stores[sizes[-1]]
            began = time.perf_counter()
            flask(env, "seal", "--organization", organization_id)
            print(f"\nsealing the whole backlog: {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
