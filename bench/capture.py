"""Benchmark: what auditing costs a request, and how fast the writer stores records.

Prints, measured side by side in one run on the same build and store:
- requests/s of the API with auditing on and off (alternating rounds, so drift in the
  machine's speed hits both sides alike), and their ratio (goal: >= 0.9);
- records/s that the audit writer sustains on the embedded store and on mongomock;
- the insert cost of each index the search bar's qualifiers walk (requestId, credential,
  ip, action), each alone and all together, against the table without them.

- the same ratio for concurrent clients against gunicorn (``--concurrent``, default 8).

Usage: python -m bench.capture [--requests N] [--rounds R] [--records M] [--concurrent C]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import mongomock

from audit_app import create_app
from audit_app.audit.capture import WRITER_KEY
from audit_app.audit.repository import ensure_audit_indexes
from audit_app.audit.spool import Spool
from audit_app.audit.writer import AuditWriter
from audit_app.db import Store, get_db
from audit_app.ids import utcnow

SECRET = "bench-secret-key-0123456789-0123456789-0123456789"


def build(store_dir: str, spool_dir: str, audited: bool):
    return create_app(
        {
            "SECRET_KEY": SECRET,
            "MONGO_URI": None,
            "EMBEDDED_STORE_DIR": store_dir,
            "AUDIT_SPOOL_DIR": spool_dir,
            "AUDIT_ENABLED": audited,
            "AUDIT_REPLAY_INTERVAL": 0,
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


def run_requests(app, key: str, workspace: str, count: int) -> float:
    """Requests per second for a mix of reads and writes through the whole stack."""
    client = app.test_client()
    headers = {"X-API-Key": key, "X-Workspace-Id": workspace, "User-Agent": "bench/1.0"}
    started = time.perf_counter()
    for index in range(count):
        if index % 5 == 0:
            answer = client.post(
                "/api/v1/pathways",
                headers=headers,
                json={"name": f"p{index}", "steps": [{"title": "s"}], "secret": {"token": "x"}}
                if index % 10 == 0
                else {"name": f"p{index}", "steps": [{"title": "s"}]},
            )
        else:
            answer = client.get("/api/v1/workspaces", headers=headers)
        assert answer.status_code < 500
    return count / (time.perf_counter() - started)


def writer_rate(store: Store, spool_dir: str, count: int, indexes=None) -> float:
    from bson import ObjectId

    if indexes is None:
        ensure_audit_indexes(store.db)  # as in production
    else:
        for keys, options in indexes:
            store.db.audit_logs.create_index(keys, **options)
    writer = AuditWriter(store, Spool(spool_dir), timeout_ms=2000)
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
                "request": {"body": {"name": "x" * 200}, "query": {}, "params": {}, "headers": {}},
            }
        )
    assert writer.stats["spooled"] == 0
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=2000, help="records for the writer rate")
    parser.add_argument(
        "--concurrent", type=int, default=8, help="clients for the gunicorn ratio (0: skip)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store_dir, spool_dir = f"{tmp}/store", f"{tmp}/spool"
        apps = {"on": build(store_dir, spool_dir, True), "off": build(store_dir, spool_dir, False)}
        key, workspace = seed(apps["on"])
        for app in apps.values():  # warm up both
            run_requests(app, key, workspace, 20)
        rates: dict[str, list[float]] = {"on": [], "off": []}
        for round_index in range(args.rounds):
            order = ("on", "off") if round_index % 2 == 0 else ("off", "on")
            for name in order:
                rates[name].append(run_requests(apps[name], key, workspace, args.requests))
        on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
        assert apps["on"].extensions[WRITER_KEY].stats["spooled"] == 0
        print(
            f"API requests/s, embedded store, {args.rounds} rounds x {args.requests} "
            f"(median): audit on {on:8.1f}   audit off {off:8.1f}   ratio on/off {on / off:.3f}"
        )
        embedded = Store(None, db_name="bench_writer", embedded_dir=store_dir)
        mocked = Store(
            None,
            db_name="bench_writer",
            embedded_dir=store_dir,
            client=mongomock.MongoClient(tz_aware=True),
        )
        rate_embedded = writer_rate(embedded, spool_dir, args.records)
        rate_mock = writer_rate(mocked, spool_dir, args.records)
        print(
            f"Audit writer records/s ({args.records} records): embedded {rate_embedded:8.1f}   "
            f"mongomock {rate_mock:8.1f}   ratio embedded/mongomock "
            f"{rate_embedded / rate_mock:.3f}"
        )
        index_cost(store_dir, spool_dir, args.records)
    if args.concurrent:
        concurrent_ratio(args.concurrent, args.rounds)


def concurrent_ratio(clients: int, rounds: int, requests: int = 150) -> None:
    """The same mix from ``clients`` threads against gunicorn, audit on and off."""
    import http.client
    import json
    import signal
    import threading

    from bench.load import _wait_ready, environment, free_port, gunicorn, setup

    with tempfile.TemporaryDirectory() as tmp:
        env = environment(tmp)
        env.update(AUDIT_SEAL_IN_BACKGROUND="false")
        _, key, workspace = setup(env)
        servers, ports = {}, {}
        for name, audited in (("on", "true"), ("off", "false")):
            ports[name] = free_port()
            servers[name] = gunicorn(
                {**env, "AUDIT_ENABLED": audited, "GUNICORN_THREADS": "4"}, ports[name], 2
            )
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
                        if index % 5 == 0:
                            body = json.dumps({"name": f"p{index}", "steps": [{"title": "s"}]})
                            connection.request("POST", "/api/v1/pathways", body, headers)
                        else:
                            connection.request("GET", "/api/v1/workspaces", headers=headers)
                        answer = connection.getresponse()
                        answer.read()
                        assert answer.status < 500, answer.status
                    connection.close()

                threads = [threading.Thread(target=client) for _ in range(clients)]
                started = time.perf_counter()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                return clients * requests / (time.perf_counter() - started)

            for name in ports:
                load(ports[name])  # warm up
            rates: dict[str, list[float]] = {"on": [], "off": []}
            for round_index in range(rounds):
                order = ("on", "off") if round_index % 2 == 0 else ("off", "on")
                for name in order:
                    rates[name].append(load(ports[name]))
        finally:
            for server in servers.values():
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
        on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
        print(
            f"API requests/s, gunicorn (2 workers x 4 threads), {clients} concurrent clients, "
            f"{rounds} rounds (median): audit on {on:8.1f}   audit off {off:8.1f}   "
            f"ratio on/off {on / off:.3f}"
        )


def index_cost(store_dir: str, spool_dir: str, count: int) -> None:
    """Insert rate into the embedded store's table without the search-bar indexes, with
    each one alone, and with all of them (alternating rounds, median of three)."""
    from bson import ObjectId

    from audit_app.audit.embedded import SQL_INDEXES, AuditLogCollection, AuditTable

    searched = ["org_requestid_newest", "org_credential_newest", "org_ip_newest"]
    searched.append("org_action_newest")
    variants = {"without": set(searched), **{f"+{n}": set(searched) - {n} for n in searched}}
    variants["all"] = set()
    rates: dict[str, list[float]] = {name: [] for name in variants}
    org = ObjectId()
    for round_index in range(3):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in order:
            table = AuditTable(f"{store_dir}/index-cost-{name}-{round_index}.sqlite3")
            for dropped in sorted(variants[name]):  # fixed names from SQL_INDEXES
                assert dropped in SQL_INDEXES
                table.writer().execute(f"DROP INDEX {dropped}")
            collection = AuditLogCollection(table)
            started = time.perf_counter()
            for index in range(count):
                collection.insert_one(
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
                        "createdAt": utcnow(),
                        "storedAt": utcnow(),
                        "ip": f"198.51.{index % 256}.{index % 200}",
                        "requestId": ObjectId().binary.hex(),
                        "request": {"body": {"name": "x" * 200}},
                    }
                )
            rates[name].append(count / (time.perf_counter() - started))
            table.close()
    base = statistics.median(rates["without"])
    print(f"Index cost on insert, embedded store ({count} records, median of 3 rounds):")
    for name, measured in rates.items():
        rate = statistics.median(measured)
        print(f"  {name:24} {rate:8.1f} records/s   ratio to without {rate / base:.3f}")


if __name__ == "__main__":
    main()
