"""Benchmark: what auditing costs a request, and how fast the audit writer stores records.

Prints, measured side by side in one run on the same build and store, in alternating
rounds (so drift in the machine's speed hits every side alike), medians:

- requests/s of a cheap authenticated ``GET /api/v1/workspaces/<id>`` (an API key) with
  auditing off, on in the journal write mode (the embedded store's default: the request
  appends its record to a local file, a background writer folds it into the store in
  batches) and on in the sync mode (the request commits its record), and the ratios to
  off (goal: >= 0.95): in-process with one client, then against gunicorn (2 workers x 4
  threads) with one client and with ``--concurrent`` clients (default 8). ``--shape mix``
  sends the earlier mix instead (80% ``GET /api/v1/workspaces``, 20% ``POST`` pathways);
- the CPU time of the whole process per request in-process (the background writer's
  share included): what a saturated machine runs out of;
- records/s that the audit writer sustains on the embedded store and on mongomock, one
  record at a time (the sync mode) and folded in batches (the journal mode);
- with ``--index-cost``: the insert cost of each index the search bar's qualifiers walk
  (requestId, credential, ip, action), each alone and all together, against the table
  without them; and of what a search by target walks (``targets.id``, 1-2 targets a
  record): on the embedded store the side table ``audit_targets`` with and without its
  index ``org_target_newest``, alone and beside every other index; on mongomock the writer
  with and without the index.

Usage: python -m bench.capture [--requests N] [--rounds R] [--records M] [--concurrent C]
       [--shape get|mix] [--index-cost]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from typing import Any

import mongomock

from audit_app import create_app
from audit_app.audit.capture.hooks import WRITER_KEY, store_journaled
from audit_app.audit.capture.journal import Journal
from audit_app.audit.capture.spool import Spool
from audit_app.audit.capture.writer import AuditWriter
from audit_app.audit.store.repository import ensure_audit_indexes
from audit_app.db import Store, get_db
from audit_app.ids import utcnow

SECRET = "bench-secret-key-0123456789-0123456789-0123456789"
GOAL = 0.95  # audited / unaudited throughput (issue #25)
MODES = {"off": None, "journal": "journal", "sync": "sync"}  # side: AUDIT_WRITE_MODE


def build(store_dir: str, spool_dir: str, audited: bool, mode: str | None = None):
    return create_app(
        {
            "SECRET_KEY": SECRET,
            "MONGO_URI": None,
            "EMBEDDED_STORE_DIR": store_dir,
            "AUDIT_SPOOL_DIR": spool_dir,
            "AUDIT_JOURNAL_DIR": f"{spool_dir}/journal",
            "AUDIT_ENABLED": audited,
            "AUDIT_WRITE_MODE": mode,
            "AUDIT_REPLAY_INTERVAL": 0,
            "AUDIT_SEAL_IN_BACKGROUND": False,
            "PASSWORD_HASH_PROFILE": "fast",
            "INSTANCE_PATH": spool_dir,
        }
    )


def seed(app) -> tuple[str, str]:
    from audit_app.api_keys import repository as api_keys
    from audit_app.organizations import service as access
    from audit_app.workspaces import repository as workspaces

    with app.app_context():
        db = get_db()
        made = access.create_organization("Bench", "bench@bench.example", "benchpassword")
        workspace = workspaces.create_workspace(db, made["organization"]["_id"], "Bench ws")
        _, key = api_keys.create_api_key(
            db,
            made["organization"]["_id"],
            name="bench",
            role_id=made["roles"]["admin"]["_id"],
            workspace_id=None,
            created_by=None,
        )
    return key, str(workspace["_id"])


def request_of(shape: str, index: int, workspace: str) -> tuple[str, str, dict | None]:
    """The ``index``-th request of a shape: method, path, JSON body."""
    if shape == "get":
        return "GET", f"/api/v1/workspaces/{workspace}", None
    if index % 5 == 0:
        body: dict[str, Any] = {"name": f"p{index}", "steps": [{"title": "s"}]}
        if index % 10 == 0:
            body["secret"] = {"token": "x"}
        return "POST", "/api/v1/pathways", body
    return "GET", "/api/v1/workspaces", None


def run_requests(app, key: str, workspace: str, count: int, shape: str = "get") -> float:
    """Requests per second through the whole stack, one client, in-process."""
    client = app.test_client()
    headers = {"X-API-Key": key, "X-Workspace-Id": workspace, "User-Agent": "bench/1.0"}
    started = time.perf_counter()
    for index in range(count):
        method, path, body = request_of(shape, index, workspace)
        answer = client.open(path, method=method, headers=headers, json=body)
        assert answer.status_code < 500
    # the round's records stored within the round (the journal's fold would otherwise run
    # in the next round, another side's, of this same process)
    store_journaled(app)
    return count / (time.perf_counter() - started)


def in_process(args, store_dir: str, spool_dir: str) -> None:
    """One client, in-process: requests/s and the process's CPU time per request."""
    apps = {
        name: build(store_dir, spool_dir, mode is not None, mode) for name, mode in MODES.items()
    }
    key, workspace = seed(apps["journal"])
    for app in apps.values():  # warm up each (and start each one's background writer)
        run_requests(app, key, workspace, 30, args.shape)
    rates: dict[str, list[float]] = {name: [] for name in apps}
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    for round_index in range(args.rounds):
        order = list(apps) if round_index % 2 == 0 else list(reversed(apps))
        for name in order:
            gc.collect()
            started = time.process_time()
            rates[name].append(run_requests(apps[name], key, workspace, args.requests, args.shape))
            cpu[name].append((time.process_time() - started) / args.requests * 1e6)
    for name in ("journal", "sync"):
        writer = apps[name].extensions[WRITER_KEY]
        writer.fold(wait=True)
        assert writer.stats["spooled"] == 0 and writer.mode == name
    off, off_cpu = statistics.median(rates["off"]), statistics.median(cpu["off"])
    print(
        f"{args.shape!r} requests, embedded store, in-process, one client, {args.rounds} rounds "
        f"x {args.requests} (median):"
    )
    for name in apps:
        rate, used = statistics.median(rates[name]), statistics.median(cpu[name])
        print(
            f"  audit {name:8} {rate:8.1f} req/s  ratio to off {rate / off:.3f}{_goal(rate / off)}"
            f"  |  CPU {used:7.1f} µs/request  ratio to off {off_cpu / used:.3f}"
        )


def _goal(ratio: float) -> str:
    return "  (goal >= 0.95: met)" if ratio >= GOAL else "  (goal >= 0.95: missed)"


def targets_of(index: int) -> list[dict]:
    """What a benchmark record acted on: one target, every other record two (a member
    and its role, say), as requests that change something name them."""
    from bson import ObjectId

    targets = [{"type": "pathway", "id": ObjectId(), "name": f"pathway {index}"}]
    if index % 2:
        targets.append({"type": "role", "id": ObjectId(), "name": None})
    return targets


def writer_rate(
    store: Store, spool_dir: str, count: int, indexes=None, journal: bool = False
) -> float:
    """Records/s from the first write to the last record stored (``journal``: handed off
    to the journal, then folded in batches, as the background writer does)."""
    from bson import ObjectId

    if indexes is None:
        ensure_audit_indexes(store.db)  # as in production
    else:
        for keys, options in indexes:
            store.db.audit_logs.create_index(keys, **options)
    writer = AuditWriter(
        store,
        Spool(spool_dir),
        timeout_ms=2000,
        journal=Journal(f"{spool_dir}/journal") if journal else None,
    )
    org = ObjectId()
    started = time.perf_counter()
    for index in range(count):
        writer.write(
            {
                "_id": ObjectId(),
                "organizationId": org,
                "accountId": ObjectId(),
                "authType": "jwt",
                "resource": "pathways",
                "method": "GET",
                "path": f"/api/v1/pathways/{index}",
                "route": "/api/v1/pathways/<pathwayId>",
                "statusCode": 200,
                "createdAt": utcnow(),
                "durationMs": 1.0,
                "requestId": str(index),
                "targets": targets_of(index),
                "request": {"body": {"name": "x" * 200}, "query": {}, "params": {}, "headers": {}},
            }
        )
        if journal and index % 40 == 39:  # what the background writer finds every 200 ms
            writer.fold()
    writer.fold()
    assert writer.stats["spooled"] == 0
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--records", type=int, default=2000, help="records for the writer rate")
    parser.add_argument(
        "--concurrent", type=int, default=8, help="clients for the gunicorn ratio (0: skip)"
    )
    parser.add_argument("--shape", choices=("get", "mix"), default="get")
    parser.add_argument("--index-cost", action="store_true", help="also the indexes' cost")
    parser.add_argument(
        "--path-index-only",
        action="store_true",
        help="only the path index's cost on insert (path_index_cost)",
    )
    args = parser.parse_args()
    if args.path_index_only:
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(f"{tmp}/store")
            path_index_cost(f"{tmp}/store", args.records, args.rounds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        store_dir, spool_dir = f"{tmp}/store", f"{tmp}/spool"
        in_process(args, store_dir, spool_dir)
        embedded = Store(None, db_name="bench_writer", embedded_dir=store_dir)
        mocked = Store(
            None,
            db_name="bench_writer",
            embedded_dir=store_dir,
            client=mongomock.MongoClient(tz_aware=True),
        )
        print(f"Audit writer records/s ({args.records} records, median of 3):")
        for label, store in (("embedded", embedded), ("mongomock", mocked)):
            sync = statistics.median(
                writer_rate(store, f"{spool_dir}/w", args.records) for _ in range(3)
            )
            folded = statistics.median(
                writer_rate(store, f"{spool_dir}/w", args.records, journal=True) for _ in range(3)
            )
            print(
                f"  {label:9} one at a time (sync) {sync:8.1f}   folded in batches (journal) "
                f"{folded:8.1f}   ratio {folded / sync:.2f}"
            )
        if args.index_cost:
            index_cost(store_dir, spool_dir, args.records)
            path_index_cost(store_dir, args.records, args.rounds)
            target_index_cost_mongomock(store_dir, spool_dir, args.records)
    gunicorn_ratio(1, args.rounds, args.requests, args.shape)
    if args.concurrent:
        gunicorn_ratio(args.concurrent, args.rounds, max(args.requests // 2, 50), args.shape)


def gunicorn_ratio(clients: int, rounds: int, requests: int, shape: str) -> None:
    """The same requests from ``clients`` threads against gunicorn (2 workers x 4
    threads), audit off, journal and sync, each its own server on the same store."""
    import http.client
    import json
    import signal
    import threading

    from bench.load import _wait_ready, environment, free_port, gunicorn, setup

    with tempfile.TemporaryDirectory() as tmp:
        env = environment(tmp)
        env.update(AUDIT_SEAL_IN_BACKGROUND="false", AUDIT_JOURNAL_DIR=f"{tmp}/journal")
        _, key, workspace = setup(env)
        servers, ports = {}, {}
        for name, mode in MODES.items():
            ports[name] = free_port()
            settings = {"AUDIT_ENABLED": "false"} if mode is None else {"AUDIT_WRITE_MODE": mode}
            servers[name] = gunicorn({**env, **settings, "GUNICORN_THREADS": "4"}, ports[name], 2)
        try:
            for port in ports.values():
                _wait_ready(port)

            def load(port: int) -> float:
                def client() -> None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    headers = {
                        "X-API-Key": key,
                        "X-Workspace-Id": workspace,
                        "Content-Type": "application/json",
                    }
                    for index in range(requests):
                        method, path, body = request_of(shape, index, workspace)
                        payload = json.dumps(body) if body is not None else None
                        connection.request(method, path, payload, headers)
                        answer = connection.getresponse()
                        answer.read()
                        assert answer.status < 500, answer.status
                    connection.close()

                def settle() -> None:
                    """One read of the log, on every side: the journal's records of the
                    round are stored within it (a read folds what waits first)."""
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    connection.request(
                        "GET", "/api/v1/audit-logs?limit=1", headers={"X-API-Key": key}
                    )
                    connection.getresponse().read()
                    connection.close()

                threads = [threading.Thread(target=client) for _ in range(clients)]
                started = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                settle()
                return clients * requests / (time.perf_counter() - started)

            for name in ports:
                load(ports[name])  # warm up
            rates: dict[str, list[float]] = {name: [] for name in ports}
            for round_index in range(rounds):
                order = list(ports) if round_index % 2 == 0 else list(reversed(ports))
                for name in order:
                    rates[name].append(load(ports[name]))
        finally:
            for server in servers.values():
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
        off = statistics.median(rates["off"])
        print(
            f"{shape!r} requests, gunicorn (2 workers x 4 threads), {clients} "
            f"client{'s' if clients > 1 else ''}, {rounds} rounds x {requests} a client (median):"
        )
        for name in ports:
            rate = statistics.median(rates[name])
            print(
                f"  audit {name:8} {rate:8.1f} req/s  ratio to off {rate / off:.3f}"
                + _goal(rate / off)
            )


def path_index_cost(store_dir: str, count: int, rounds: int = 5) -> None:
    """Insert rate into the embedded store's table with and without the path search's
    trigram index (``audit_paths``, kept by triggers: dropped for "without"), a record a
    transaction (``insert_one``, today's writer) and in batches of 100 (``insert_many``, the
    batched writer to come); alternating rounds, medians, wall clock and CPU per record."""
    from bson import ObjectId

    from audit_app.audit.store.embedded import PATHS_SCHEMA, AuditLogCollection, AuditTable

    triggers = [s.split()[5] for s in PATHS_SCHEMA if s.startswith("CREATE TRIGGER")]
    variants = {
        (index, batch): f"{'with' if index else 'without'} the path index, "
        f"{'batches of 100' if batch else 'one a transaction'}"
        for batch in (False, True)
        for index in (False, True)
    }
    rates: dict[tuple[bool, bool], list[float]] = {v: [] for v in variants}
    cpu: dict[tuple[bool, bool], list[float]] = {v: [] for v in variants}
    org = ObjectId()
    for round_index in range(rounds):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for number, (index, batch) in enumerate(order):
            table = AuditTable(f"{store_dir}/path-cost-{round_index}-{number}.sqlite3")
            if not index:
                for name in triggers:  # fixed names from PATHS_SCHEMA
                    table.writer().execute(f"DROP TRIGGER {name}")
            collection = AuditLogCollection(table)
            records: list[dict[str, Any]] = [
                {
                    "_id": ObjectId(),
                    "organizationId": org,
                    "accountId": ObjectId(),
                    "authType": "jwt",
                    "credentialId": f"jwt_{ObjectId()}",
                    "action": ("pathway.view", "pathway.update", "member.list")[i % 3],
                    "resource": "pathways",
                    "method": "GET",
                    "path": f"/api/v1/pathways/{ObjectId()}",  # 42 characters, 40 trigrams
                    "statusCode": 200,
                    "ip": f"198.51.{i % 256}.{i % 200}",
                    "requestId": ObjectId().binary.hex(),
                    "request": {"body": {"name": "x" * 200}},
                }
                for i in range(count)
            ]
            gc.collect()
            started, started_cpu = time.perf_counter(), time.process_time()
            for first in range(0, count, 100 if batch else 1):
                chunk = records[first : first + (100 if batch else 1)]
                for record in chunk:
                    record["createdAt"] = record["storedAt"] = utcnow()
                if batch:
                    collection.insert_many(chunk)
                else:
                    collection.insert_one(chunk[0])
            rates[(index, batch)].append(count / (time.perf_counter() - started))
            cpu[(index, batch)].append((time.process_time() - started_cpu) / count * 1e6)
            table.close()
    print(f"Path index cost on insert, embedded store ({count} records, median of {rounds}):")
    for (index, batch), name in variants.items():
        rate, used = (
            statistics.median(rates[(index, batch)]),
            statistics.median(cpu[(index, batch)]),
        )
        base = statistics.median(rates[(False, batch)])
        base_cpu = statistics.median(cpu[(False, batch)])
        print(
            f"  {name:45} {rate:8.1f} records/s  to without {rate / base:.3f}  |  "
            f"CPU {used:6.1f} µs/record  (+{used - base_cpu:5.1f})"
        )


def index_cost(store_dir: str, spool_dir: str, count: int) -> None:
    """Insert rate into the embedded store's table without the search-bar indexes, with
    each one alone, and with all of them; and the same for what a target search walks
    (five alternating rounds, median). Each is given as records/s (wall clock) and as the
    process's CPU time per record, which the other work of a shared machine disturbs less.

    Every record names 1-2 targets. A variant without the target rows stores them under
    ``tArgets`` (same length, so the same BSON bytes; ``targets.id`` then names nothing
    and no side rows are written): that is an insert as it was before ``audit_targets``.
    """
    from bson import ObjectId

    from audit_app.audit.store.embedded import (
        SQL_INDEXES,
        TARGET_INDEX,
        AuditLogCollection,
        AuditTable,
    )

    searched = ["org_requestid_newest", "org_credential_newest", "org_ip_newest"]
    searched.append("org_action_newest")
    everything = {*searched, TARGET_INDEX}
    # name: (indexes dropped, whether the records' targets get their side rows)
    variants: dict[str, tuple[set[str], bool]] = {
        "without": (everything, False),
        **{f"+{n}": (everything - {n}, False) for n in searched},
        "+audit_targets, no index": (everything, True),
        f"+audit_targets+{TARGET_INDEX}": (set(searched), True),
        "all but the targets (#23)": ({TARGET_INDEX}, False),
        "all (what ships)": (set(), True),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}  # µs of CPU a record
    org = ObjectId()
    for round_index in range(5):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for number, name in enumerate(order):
            dropped, with_targets = variants[name]
            table = AuditTable(f"{store_dir}/index-cost-{round_index}-{number}.sqlite3")
            for index_name in sorted(dropped):  # fixed names from SQL_INDEXES
                assert index_name in SQL_INDEXES
                table.writer().execute(f"DROP INDEX {index_name}")
            collection = AuditLogCollection(table)
            records: list[dict[str, Any]] = [
                {
                    "_id": ObjectId(),
                    "organizationId": org,
                    "accountId": ObjectId(),
                    "authType": "jwt",
                    "credentialId": f"jwt_{ObjectId()}",
                    "action": ("pathway.view", "pathway.update", "member.list")[index % 3],
                    "resource": "pathways",
                    "method": "GET",
                    "path": f"/api/v1/pathways/{index}",
                    "statusCode": 200,
                    "ip": f"198.51.{index % 256}.{index % 200}",
                    "requestId": ObjectId().binary.hex(),
                    ("targets" if with_targets else "tArgets"): targets_of(index),
                    "request": {"body": {"name": "x" * 200}},
                }
                for index in range(count)
            ]
            gc.collect()  # the garbage of the variant before is not this one's cost
            started, started_cpu = time.perf_counter(), time.process_time()
            for record in records:
                record["createdAt"] = record["storedAt"] = utcnow()
                collection.insert_one(record)
            rates[name].append(count / (time.perf_counter() - started))
            cpu[name].append((time.process_time() - started_cpu) / count * 1e6)
            side_rows = table.writer().execute("SELECT count(*) FROM audit_targets").fetchone()
            assert (side_rows[0] > 0) == with_targets
            table.close()
    base = statistics.median(rates["without"])
    before = statistics.median(rates["all but the targets (#23)"])
    base_cpu = statistics.median(cpu["without"])
    before_cpu = statistics.median(cpu["all but the targets (#23)"])
    print(
        f"Index cost on insert, embedded store ({count} records with 1-2 targets each, "
        "median of 5 rounds; ratios of rates, so < 1 is slower):"
    )
    for name, measured in rates.items():
        rate, used = statistics.median(measured), statistics.median(cpu[name])
        print(
            f"  {name:34} {rate:7.1f} records/s  to without {rate / base:.3f}  "
            f"to all but the targets {rate / before:.3f}  |  CPU {used:6.1f} µs/record  "
            f"to without {base_cpu / used:.3f}  to all but the targets {before_cpu / used:.3f}"
        )


def target_index_cost_mongomock(store_dir: str, spool_dir: str, count: int) -> None:
    """The audit writer on mongomock with the production indexes, with and without
    ``org_target_newest`` (four alternating rounds, so each goes first as often; median).
    mongomock keeps no
    B-tree for an index that is not unique: this is its bookkeeping only, not MongoDB's
    cost, which is one index key per distinct target id (measure with TEST_MONGO_URI)."""
    from audit_app.audit.store.embedded import TARGET_INDEX
    from audit_app.audit.store.repository import INDEXES

    without = [(keys, options) for keys, options in INDEXES if options["name"] != TARGET_INDEX]
    variants = {"without org_target_newest": without, "with (what ships)": list(INDEXES)}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(4):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in order:
            store = Store(
                None,
                db_name=f"bench_target_{round_index}",
                embedded_dir=store_dir,
                client=mongomock.MongoClient(tz_aware=True),
            )
            gc.collect()
            rates[name].append(writer_rate(store, spool_dir, count, variants[name]))
            store.close()
    print(f"Target index on mongomock, audit writer ({count} records, median of 4 rounds):")
    base = statistics.median(rates["without org_target_newest"])
    for name, measured in rates.items():
        rate = statistics.median(measured)
        print(f"  {name:40} {rate:8.1f} records/s   ratio to without {rate / base:.3f}")


if __name__ == "__main__":
    main()
