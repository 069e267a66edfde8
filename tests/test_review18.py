"""Review 18: the activity counts kept at write time (#18) and the retention / legal-hold
fixes, as their attackers. Each test fails on the code as reviewed and passes once the
defect it names is fixed; judged by effect (what the chart says against the records, what
``verify`` says, which status comes back, whether a request answers at all).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect, NetworkTimeout

from audit_app.audit.capture.hooks import WRITER_KEY
from audit_app.audit.integrity import retention
from audit_app.db import get_audit_db, get_db

from .factories import Api, audit_record, make_org
from .test_retention import DAILY, NOW, aged, history, patch, present, run, verify

REVIEW = {**DAILY, "AUDIT_SEAL_IN_BACKGROUND": False}
PAST_DAY = datetime(2026, 11, 20, tzinfo=UTC)


def histogram(api, person, **params):
    answer = api.get("/api/v1/audit-logs/histogram", as_=person, query_string=params)
    return answer.status_code, answer.get_json()


def records_on(app, org, start, end) -> int:
    with app.app_context():
        return get_audit_db().audit_logs.count_documents(
            {"organizationId": org.id, "createdAt": {"$gte": start, "$lte": end}}
        )


# A. The activity counts ------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"interval": "day", "to": "9999-12-31"},
        {"interval": "hour", "to": "9999-12-31T23:00:00Z"},
        {"interval": "day", "from": "9999-12-25", "to": "9999-12-31"},
    ],
)
def test_a_range_ending_at_the_last_representable_day_is_not_a_500(app, api, org, params):
    """``to=9999-12-31`` passes validation; building the buckets steps one past the last
    one (``moment += step``) and overflows: a 500 from the API, and the audit log page
    (whose chart only catches ApiError) is a 500 too."""
    from .test_web_session import login

    status, found = histogram(api, org.admin, **params)
    assert status < 500, found
    client = app.test_client()
    login(client, org.admin)
    page = client.get("/organization/audit-logs", query_string={"to": params["to"][:10]})
    assert page.status_code < 500


def test_a_failing_counts_store_does_not_fail_the_chart_or_the_audit_log_page(
    app, api, org, monkeypatch
):
    """The histogram flushes the process's tally on the request path, unguarded: when the
    counts cannot be written (the counters' majority write fails, a disk error on the
    embedded store) the histogram is a 503 and the whole audit log page with it, although
    the records themselves read fine and the chart could be answered from them."""
    import mongomock

    from .test_web_session import login

    real = mongomock.collection.Collection.update_one

    def counters_down(self, *args, **kwargs):
        if self.name == "audit_counters":
            raise AutoReconnect("the counters' write could not reach a majority")
        return real(self, *args, **kwargs)

    api.get("/api/v1/audit-logs", as_=org.admin)  # a stored record: something to flush
    monkeypatch.setattr(mongomock.collection.Collection, "update_one", counters_down)
    status, found = histogram(api, org.admin, interval="day")
    assert status == 200, found
    client = app.test_client()
    login(client, org.admin)
    assert client.get("/organization/audit-logs").status_code == 200


def test_a_flush_that_fails_part_way_does_not_count_twice():
    """A flush sends one ``$inc`` per organization and day; when one fails after others
    were applied (a loop on mongomock and the embedded store; an unordered bulk, or a
    write concern error after the primary applied it, on MongoDB), the whole tally is put
    back and the applied increments are sent again: the chart then counts more requests
    than were made, for good."""
    from audit_app.audit.store.counters import HourlyTally

    class Store:
        def __init__(self, fail_on: int | None = None):
            self.docs: dict = {}
            self.calls = 0
            self.fail_on = fail_on

        def update_one(self, key, change, upsert):
            self.calls += 1
            if self.calls == self.fail_on:
                raise AutoReconnect("connection reset")
            doc = self.docs.setdefault((key["organizationId"], key["day"]), Counter())
            for path, count in change["$inc"].items():
                doc[path] += count

    org = ObjectId()
    tally = HourlyTally()
    for day in range(3):  # one request on each of three days: three increments
        tally.add(
            {"organizationId": org, "createdAt": PAST_DAY + timedelta(days=day), "statusCode": 200}
        )
    store = Store(fail_on=2)
    assert tally.flush({"audit_counters": store}) == 1  # the failure is logged, not raised
    store.fail_on = None
    tally.flush({"audit_counters": store})
    assert [doc["count"] for doc in store.docs.values()] == [1, 1, 1]


def test_a_record_stored_by_a_write_that_timed_out_is_still_counted(make_app, monkeypatch):
    """A write that the server applied but whose answer came too late (client timeout,
    write concern error) is spooled; the replay then meets a duplicate key and the record
    is never added to the tally. The chart, answered from the counts, says ``partial:
    false`` yet counts fewer requests than the log holds."""
    from audit_app.audit.capture import writer as writer_module

    app = make_app(AUDIT_HISTOGRAM_MAX_RECORDS=100)
    org = make_org(app, "Busy")
    api = Api(app.test_client())
    real_insert = writer_module.insert_record
    late = {"n": 0}

    def stored_then_timed_out(db, record, write_concern):
        real_insert(db, record, write_concern)
        if late["n"] == 0:
            late["n"] += 1
            raise NetworkTimeout("the answer did not come in time")

    monkeypatch.setattr(writer_module, "insert_record", stored_then_timed_out)
    writer = app.extensions[WRITER_KEY]
    with app.app_context():
        for minute in range(150):
            writer._skip_store_until = 0.0
            writer.write(audit_record(org.id, created_at=PAST_DAY + timedelta(minutes=minute)))
        writer.replay()
    monkeypatch.setattr(writer_module, "insert_record", real_insert)
    end = PAST_DAY + timedelta(days=1) - timedelta(milliseconds=1)
    assert records_on(app, org, PAST_DAY, end) == 150
    status, found = histogram(
        api, org.admin, interval="day", **{"from": "2026-11-20", "to": "2026-11-20"}
    )
    assert status == 200, found
    total = sum(b["count"] for b in found["buckets"])
    assert total == 150 or found["partial"], (total, found["source"], found["partial"])


def test_a_range_before_counting_began_is_not_emptied_by_the_counts(make_app):
    """An organization older than counting, a busy range before counting began: the walk
    stops at the cap (partial), then the code swaps in the counts, which are all zeros
    there. The chart of last month shows nothing at all, where the walk had counted the
    newest 100 requests exactly."""
    app = make_app(AUDIT_HISTOGRAM_MAX_RECORDS=100)
    org = make_org(app, "Old")
    api = Api(app.test_client())
    began = NOW - timedelta(days=3)
    with app.app_context():
        get_db().app_upgrades.update_one({"_id": "counters-since"}, {"$set": {"at": began}})
        get_db().organizations.update_one(
            {"_id": org.id}, {"$set": {"createdAt": began - timedelta(days=60)}}
        )
        start = NOW - timedelta(days=10)
        get_audit_db().audit_logs.insert_many(
            [audit_record(org.id, created_at=start + timedelta(minutes=i)) for i in range(150)]
        )
    status, found = histogram(
        api,
        org.admin,
        interval="day",
        **{
            "from": (NOW - timedelta(days=12)).isoformat(),
            "to": (NOW - timedelta(days=8)).isoformat(),
        },
    )
    assert status == 200, found
    assert found["partial"] is True
    assert sum(b["count"] for b in found["buckets"]) >= 100, found["source"]


def test_the_chart_answers_while_a_majority_cannot_acknowledge_the_counts(tmp_path):
    """On MongoDB the counts go with ``w: "majority"``, no ``wtimeout``, no client timeout,
    and the histogram flushes them on the request path. With a majority unreachable (a
    PSA replica set with its secondary down, where records written with the configured
    concern still go through in bounded time), the flush waits for ever: the chart, and
    the audit log page above which it is drawn, never answer. (The same flush is on the
    background lane that replays the spool and seals.) Here the server never answers the
    counters' update; the request must still answer, in bounded time."""
    from audit_app.auth.tokens import issue_token
    from audit_app.db import stores

    from .wire import ScriptedServer, app_on, member_documents

    class MajorityDown(ScriptedServer):
        def __init__(self):
            super().__init__()
            self.held = []
            real = self.mock.receives

            def receives(*args, **kwargs):
                while True:
                    request = real(*args, **kwargs)
                    if next(iter(request.doc)) == "update" and request.doc["update"] == (
                        "audit_counters"
                    ):
                        self.held.append(request)  # never acknowledged
                        continue
                    return request

            self.mock.receives = receives

    server = MajorityDown().start()
    try:
        documents, organization_id = member_documents(["viewAuditLog"])
        server.documents.update(documents)
        server.documents["app_upgrades"] = [{"_id": "counters-since", "at": datetime(2020, 1, 1)}]
        app = app_on(server.uri, tmp_path)
        with app.app_context():
            token = issue_token(documents["accounts"][0], organization_id).token
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/audit-logs", headers=headers).status_code == 200  # counted
        answers = []
        thread = threading.Thread(
            target=lambda: answers.append(
                client.get("/api/v1/audit-logs/histogram", headers=headers).status_code
            ),
            daemon=True,
        )
        started = time.monotonic()
        thread.start()
        thread.join(timeout=12)
        assert server.held, "the counts were not flushed on the request path"
        assert not thread.is_alive(), (
            f"no answer after {time.monotonic() - started:.0f}s: the request waits for the counts"
        )
        assert answers == [200]
    finally:
        server.stop()
        for store in set(stores(app).values()):
            store.close()


# B. Retention and legal hold: someone who can write the database, not the anchor ----------


def _purge_one_batch(app, api, org, monkeypatch, ages=(50, 49, 48, 47, 46, 45, 10)):
    """A retention shortened to 30 days over a large backlog: the purge anchors its bound,
    then deletes a tick's budget (here one batch of 2) and leaves the rest for later."""
    ids = history(app, org, days=ages)
    assert run(app, "seal")["exit"] == 0
    assert patch(api, org.admin, {"auditRetentionDays": 30}).status_code == 200
    monkeypatch.setattr(retention, "BATCH", 2)
    monkeypatch.setattr(retention, "MAX_BATCHES_PER_ORGANIZATION", 1)
    purged = run(app, "purge")
    assert purged["deleted"] == 2 and purged["organizations"][0]["more"] is True
    assert present(app, ids) == {48, 47, 46, 45, 10}
    assert verify(app, org)["ok"]
    return ids


def test_a_record_the_purge_has_not_reached_yet_cannot_be_edited_unseen(make_app, monkeypatch):
    """Windows that end below the anchored purge bound are marked ``expired`` as a whole and
    their records not read at all; while a large purge is still under way (50,000 records
    a tick), the records below the bound are still in the log, listed and exported, and
    can be rewritten in the database without ``verify`` noticing."""
    app = make_app(**REVIEW)
    org = make_org(app, "Backlog")
    api = Api(app.test_client())
    ids = _purge_one_batch(app, api, org, monkeypatch)
    with app.app_context():
        changed = get_audit_db().audit_logs.update_one(
            {"_id": ids[45]}, {"$set": {"statusCode": 200, "ip": "198.51.100.7"}}
        )
        assert changed.modified_count == 1
    report = verify(app, org)
    assert not report["ok"], "a record still in the log was rewritten, and verify passes"


def test_records_held_before_the_purge_reached_them_cannot_be_deleted_unseen(make_app, monkeypatch):
    """A hold set while the purge is part-way: the remaining records below the anchored
    bound are kept (rightly), yet deleting them in the database reads as retention."""
    app = make_app(**REVIEW)
    org = make_org(app, "Litigation")
    api = Api(app.test_client())
    ids = _purge_one_batch(app, api, org, monkeypatch)
    assert patch(api, org.admin, {"auditLegalHold": True}).status_code == 200
    assert run(app, "purge")["deleted"] == 0
    with app.app_context():
        assert get_audit_db().audit_logs.delete_one({"_id": ids[46]}).deleted_count == 1
    report = verify(app, org)
    assert not report["ok"], "a held record was deleted in the database, and verify passes"


def test_a_record_forged_into_a_purged_window_of_a_held_log_is_reported(make_app):
    """After a purge, a hold. Someone who can write the database inserts a record with an
    old ``storedAt`` (inside a window below the purge bound) and yesterday's
    ``createdAt``: it shows in yesterday's log, the held organization is never purged
    again, and ``verify`` does not look into ``expired`` windows: forged evidence, OK."""
    app = make_app(**REVIEW)
    org = make_org(app, "Evidence")
    api = Api(app.test_client())
    history(app, org, days=(60, 40, 10))
    assert run(app, "seal")["exit"] == 0
    assert patch(api, org.admin, {"auditRetentionDays": 30}).status_code == 200
    assert run(app, "purge")["deleted"] == 2
    assert patch(api, org.admin, {"auditLegalHold": True}).status_code == 200
    assert verify(app, org)["ok"]
    forged = aged(org.id, 45, path="/api/v1/forged")
    forged["createdAt"] = NOW - timedelta(days=1)
    with app.app_context():
        get_audit_db().audit_logs.insert_one(forged)
    listed = api.get("/api/v1/audit-logs", as_=org.admin, query_string={"path": "/api/v1/forged"})
    assert listed.get_json()["items"], "the forged record is in the organization's log"
    report = verify(app, org)
    assert not report["ok"], "a record inserted after sealing passes verify"


def test_an_upgrade_whose_ttl_index_kept_another_retention_does_not_read_as_tampering(
    make_app, tmp_path
):
    """The earlier version kept a TTL index on ``createdAt`` (and one on the chunks'
    ``windowEnd``) at ``AUDIT_RETENTION_DAYS``; when collMod was refused it kept its old
    seconds and said so in the log. The legacy bound is taken from the setting at the first
    start, not from the TTL index that did the deleting: an installation whose index said
    90 days, started with 400, reports every record and chunk the TTL index removed
    between 400 and 90 days as deleted."""
    from audit_app.audit.store.repository import TTL_INDEX

    app = make_app(**REVIEW)  # stands in for the earlier version: records, seals, anchor
    org = make_org(app, "Upgraded")
    history(app, org, days=(200, 100, 45, 10))
    assert run(app, "seal")["exit"] == 0
    anchor_dir = tmp_path / "instance" / "audit-anchor"
    (anchor_dir / "retention-legacy.json").unlink()  # the earlier version wrote none
    cutoff = NOW - timedelta(days=90)
    with app.app_context():
        audit = get_audit_db()
        audit.audit_logs.create_index(
            [("createdAt", 1)], name=TTL_INDEX, expireAfterSeconds=90 * 86400
        )
        # what its TTL monitor removed (mongomock's emulated TTL index does the same)
        audit.audit_logs.delete_many({"createdAt": {"$lt": cutoff}})
        kept = {"organizationId": org.id, "action": {"$ne": "auditLog.checkpointed"}}
        assert audit.audit_logs.count_documents(kept) == 2  # 45, 10 (and the seal's checkpoint)
        audit.audit_digest_chunks.delete_many({"windowEnd": {"$lt": cutoff}})
    upgraded = make_app(**REVIEW)  # AUDIT_RETENTION_DAYS: 400
    report = verify(upgraded, org)
    failed = [w for w in report.get("details", []) if w.get("status") == "failed"]
    assert report["ok"], failed[:2]
