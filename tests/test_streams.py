"""Log streams to SIEMs, tried against real receivers on 127.0.0.1 (docs/streams.md):
steady delivery exactly as filtered, a receiver down then back (nothing skipped), two
deliverers (one at a time), backfill, health, secrets, private addresses, the formats."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from audit_app.audit.actions import label
from audit_app.db import get_db
from audit_app.streams import delivery
from audit_app.streams.formats import cef, ocsf

from .factories import Api, audit_record, make_org
from .streams_receivers import HttpReceiver, SyslogReceiver
from .test_web_session import csrf_from, login


@pytest.fixture
def app(make_app):
    return make_app(AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)


def create(api, org, **body):
    body.setdefault("name", "SIEM")
    answer = api.post("/api/v1/audit-streams", as_=org.admin, json=body)
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def deliver(app, holder="test-deliverer"):
    """One tick of a deliverer, with every stream due now (no waiting out a backoff)."""
    with app.app_context():
        get_db().audit_streams.update_many({}, {"$set": {"nextAttemptAt": datetime.now(UTC)}})
    return delivery.deliver_due(app, holder)


def ids_in(db, org, query=None) -> set[str]:
    return {str(r["_id"]) for r in db.audit_logs.find({"organizationId": org.id, **(query or {})})}


def since_start(db, org, stream, query=None) -> list[str]:
    """The ids a stream owes, in stored order: its organization's records stored since its
    start (matching ``query``)."""
    start = db.audit_streams.find_one({"_id": ObjectId(stream["id"])})["start"]
    found = db.audit_logs.find(
        {"organizationId": org.id, "storedAt": {"$gte": start}, **(query or {})}
    ).sort([("storedAt", 1), ("_id", 1)])
    return [str(r["_id"]) for r in found]


def traffic(api, org, n=6):
    """Requests that leave records: reads, a creation, refusals (403, 404)."""
    for i in range(n):
        api.get("/api/v1/workspaces", as_=org.admin)
        api.post("/api/v1/workspaces", as_=org.member, json={"name": f"nope {i}"})
        api.get(f"/api/v1/workspaces/{ObjectId()}", as_=org.admin)


def test_a_webhook_gets_every_record_as_filtered_signed(app, api, org, db, receiver):
    stream = create(
        api,
        org,
        destination={"type": "webhook", "url": receiver.url + "/hook"},
        filters={"q": "status:4xx"},
    )
    receiver.secret = stream["secret"]
    assert stream["secret"].startswith("whsec_")
    traffic(api, org)
    deliver(app)
    events = receiver.events()
    assert receiver.requests and all(receiver.verify(r) for r in receiver.requests)
    expected = since_start(db, org, stream, {"statusCode": {"$gte": 400, "$lt": 500}})
    assert [e["id"] for e in events] == expected  # every 4xx, in stored order, once
    assert len(expected) == 12  # 6 refused + 6 unknown workspaces
    tampered = dict(receiver.requests[0], body=receiver.requests[0]["body"] + b" ")
    assert not receiver.verify(tampered)  # the recipe catches a changed body
    health = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin).get_json()
    assert health["state"] == "active" and health["delivered"] == 12 and health["failed"] == 0
    assert health["lagSeconds"] == 0 and health["lastDeliveredAt"] and health["lastError"] is None


def test_a_receiver_down_for_a_while_gets_everything_once_it_is_back(app, api, org, db, receiver):
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url})
    receiver.secret = stream["secret"]
    traffic(api, org, 3)
    receiver.statuses = [503, 500, 200]  # down for two tries, then back
    deliver(app)
    failing = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin).get_json()
    assert failing["state"] == "failing" and "503" in failing["lastError"]
    assert failing["delivered"] == 0 and failing["failed"] > 0 and failing["lagSeconds"] >= 0
    page = login_page(app, org)
    assert "Log stream SIEM is failing" in page.get("/organization/audit-logs").get_data(True)
    deliver(app)  # 500: still down
    traffic(api, org, 2)  # meanwhile, more happens
    deliver(app)  # back: everything from the cursor on
    owed = since_start(db, org, stream)
    refused = [
        [json.loads(line)["id"] for line in r["body"].decode().splitlines()]
        for r in receiver.requests[:2]
    ]
    acknowledged = [
        json.loads(line)["id"]
        for r in receiver.requests[2:]
        for line in r["body"].decode().splitlines()
    ]
    assert acknowledged == owed[: len(acknowledged)]  # in stored order, nothing skipped
    assert len(acknowledged) >= len(owed) - 2  # (the last ticks' own records come next time)
    # duplicates only where a batch was retried: each try resent from the same cursor
    assert refused[0] == refused[1][: len(refused[0])] == acknowledged[: len(refused[0])]
    assert refused[1] == acknowledged[: len(refused[1])]
    back = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin).get_json()
    assert back["state"] == "active" and back["lastError"] is None
    assert back["delivered"] == len(acknowledged)


def login_page(app, org):
    client = app.test_client()
    login(client, org.admin)
    return client


def test_nothing_is_skipped_by_a_record_stored_behind_the_cursor_in_flight(
    app, api, org, db, receiver
):
    """A record whose write is still in flight in another process when the deliverer reads:
    the settle delay keeps the cursor behind it, so it is delivered on the next tick."""
    app.config["AUDIT_STREAM_SETTLE_SECONDS"] = 5
    start = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url}, start=start)
    receiver.secret = stream["secret"]
    now = datetime.now(UTC)
    early = audit_record(
        org.id, created_at=now - timedelta(seconds=30), storedAt=now - timedelta(seconds=30)
    )
    late = audit_record(
        org.id, created_at=now - timedelta(seconds=2), storedAt=now - timedelta(seconds=2)
    )
    db.audit_logs.insert_one(early)
    deliver(app)  # reads up to now - 5 s: `early`, not the requests of a second ago
    db.audit_logs.insert_one(late)  # committed late, with a storedAt before the read
    app.config["AUDIT_STREAM_SETTLE_SECONDS"] = 0
    deliver(app)
    got = [e["id"] for e in receiver.events()]
    assert str(early["_id"]) in got and str(late["_id"]) in got


def test_two_deliverers_deliver_each_record_once(app, make_app, mongo, api, org, db, receiver):
    """Two app processes on one store: the lease lets one deliver a stream at a time."""
    other = make_app(AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url})
    receiver.secret = stream["secret"]
    traffic(api, org, 4)
    receiver.hang = 0.3  # long enough for the two to overlap
    with app.app_context():
        get_db().audit_streams.update_many({}, {"$set": {"nextAttemptAt": datetime.now(UTC)}})
    threads = [
        threading.Thread(target=delivery.deliver_due, args=(a, name))
        for a, name in ((app, "host-a:1"), (other, "host-b:2"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    got = [e["id"] for e in receiver.events()]
    assert len(receiver.requests) == 1 and got == since_start(db, org, stream)


def test_a_stream_can_start_in_the_past_to_backfill(app, api, org, db, receiver):
    old = [
        audit_record(
            org.id,
            created_at=datetime(2026, 11, 1, tzinfo=UTC),
            storedAt=datetime(2026, 11, 1, h, tzinfo=UTC),
        )
        for h in range(3)
    ]
    db.audit_logs.insert_many(old)
    stream = create(
        api, org, destination={"type": "webhook", "url": receiver.url}, start="2026-11-01T01:00:00Z"
    )
    receiver.secret = stream["secret"]
    deliver(app)
    got = [e["id"] for e in receiver.events()]
    assert got[:2] == [str(old[1]["_id"]), str(old[2]["_id"])]  # from the start, in order
    assert str(old[0]["_id"]) not in got


def test_splunk_hec_gets_events_with_its_token(app, api, org, db):
    hec = HttpReceiver()
    try:
        stream = create(
            api,
            org,
            destination={"type": "splunk", "url": hec.url + "/services/collector/event"},
            token="hec-0123-secret-token",
            format="ocsf",
            filters={"q": "method:POST"},
        )
        assert "secret" not in stream or stream["secret"] is None  # a given token is never shown
        traffic(api, org, 2)
        deliver(app)
        [request] = hec.requests
        assert request["headers"]["Authorization"] == "Splunk hec-0123-secret-token"
        events = hec.events()
        assert events and all(e["event"]["class_uid"] == 6003 for e in events)
        uids = [e["event"]["metadata"]["uid"] for e in events]
        assert uids == since_start(db, org, stream, {"method": "POST"})
        assert all(isinstance(e["time"], float) for e in events)
    finally:
        hec.stop()


def test_syslog_gets_rfc5424_frames_in_cef(app, api, org, db):
    syslog = SyslogReceiver()
    try:
        create(
            api,
            org,
            destination={"type": "syslog", "host": "127.0.0.1", "port": syslog.port},
            format="cef",
        )
        traffic(api, org, 1)
        deliver(app)
        for _ in range(100):  # the server thread parses what arrived
            if len(syslog.messages) >= 3:
                break
            threading.Event().wait(0.02)
        assert len(syslog.messages) == len(ids_in(db, org)) - 1  # all but the stream's creation?
    finally:
        syslog.stop()
    first = syslog.messages[0]
    assert first["length"] and first["app"] == "organization-audit-log"
    assert first["pri"] in ("110", "108")  # facility 13 (log audit), info or warning
    assert first["msg"].startswith("CEF:0|Organization Audit Log|Organization Audit Log|1.0|")
    failed = [m for m in syslog.messages if "outcome=403" in m["msg"]]
    assert failed and all(m["pri"] == "108" for m in failed)


# Health, safety, and the API's rules ----------------------------------------------------------


def test_secrets_are_shown_once_and_stored_encrypted(app, api, org, db, receiver):
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url})
    secret = stream["secret"]
    shown = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin).get_json()
    listed = api.get("/api/v1/audit-streams", as_=org.admin).get_json()
    assert "secret" not in shown and shown["secretSet"] is True
    assert secret not in json.dumps(listed) and secret not in json.dumps(shown)
    hec = create(
        api,
        org,
        name="HEC",
        token="hec-token-never-shown",
        destination={"type": "splunk", "url": receiver.url},
    )
    everything = json.dumps(list(db.audit_streams.find({})), default=str)
    everything += json.dumps(list(db.audit_logs.find({})), default=str)
    assert secret not in everything and "hec-token-never-shown" not in everything
    assert "hec-token-never-shown" not in json.dumps(hec)
    rotated = api.patch(
        f"/api/v1/audit-streams/{stream['id']}", as_=org.admin, json={"rotateSecret": True}
    ).get_json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    record = db.audit_logs.find_one({"action": "auditStream.update"})
    [change] = [c for c in record["changes"] if c["field"] == "secret"]
    assert change["from"] == change["to"] == "[REDACTED]"  # a new secret: a change, masked
    assert rotated["secret"] not in json.dumps(record, default=str)


def test_every_change_to_a_stream_is_recorded_with_its_changes(app, api, org, db, receiver):
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url})
    api.patch(
        f"/api/v1/audit-streams/{stream['id']}",
        as_=org.admin,
        json={"name": "Renamed", "paused": True, "filters": {"q": "status:5xx"}},
    )
    record = db.audit_logs.find_one({"action": "auditStream.update"})
    changes = {c["field"]: (c["from"], c["to"]) for c in record["changes"]}
    assert changes["name"] == ("SIEM", "Renamed") and changes["state"] == ("active", "paused")
    assert changes["filters"] == ({}, {"q": "status:5xx"})
    paused = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin).get_json()
    assert paused["state"] == "paused"
    api.delete(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin)
    deleted = db.audit_logs.find_one({"action": "auditStream.delete"})
    assert {c["field"] for c in deleted["changes"]} >= {"name", "destination", "format"}
    assert label("auditStream.create") == "Audit stream created"


PRIVATE = [
    "http://127.0.0.1:9/hook",
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://10.1.2.3/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/hook",
    "https://user:pw@example.com/hook",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_destinations_are_refused_unless_allowed(make_app, org, url):
    app = make_app(AUDIT_STREAM_ALLOW_PRIVATE=False)
    answer = Api(app.test_client()).post(
        "/api/v1/audit-streams",
        as_=org.admin,
        json={"name": "x", "destination": {"type": "webhook", "url": url}},
    )
    assert answer.status_code in (400, 422), answer.get_json()
    assert answer.get_json()["error"]["field"] == "destination"
    syslog = Api(app.test_client()).post(
        "/api/v1/audit-streams",
        as_=org.admin,
        json={"name": "x", "destination": {"type": "syslog", "host": "127.0.0.1", "port": 514}},
    )
    assert syslog.status_code == 422


def test_only_stream_managers_of_the_organization_reach_streams(
    app, api, org, other_org, db, receiver
):
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url})
    assert api.get("/api/v1/audit-streams", as_=org.member).status_code == 403
    assert api.get(f"/api/v1/audit-streams/{stream['id']}", as_=other_org.admin).status_code == 404
    assert (
        api.delete(f"/api/v1/audit-streams/{stream['id']}", as_=other_org.admin).status_code == 404
    )
    with app.app_context():
        from audit_app.api_keys import repository as keys

        _bound, secret = keys.create_api_key(
            get_db(),
            org.id,
            name="bound",
            role_id=org.roles["admin"]["_id"],
            workspace_id=org.workspace["_id"],
            created_by=None,
        )
    assert api.get("/api/v1/audit-streams", key=secret).status_code == 403
    assert api.get("/api/v1/audit-streams", key=org.api_key).status_code == 200  # an Admin key


def test_the_test_event_says_whether_it_arrived(app, api, org, receiver):
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url})
    receiver.secret = stream["secret"]
    ok = api.post(f"/api/v1/audit-streams/{stream['id']}/test", as_=org.admin).get_json()
    assert ok == {"delivered": True, "error": None, "errorCode": None}
    assert receiver.verify(receiver.requests[-1])
    assert receiver.events()[-1]["action"] == "auditStream.test"
    receiver.statuses = [500]
    failed = api.post(f"/api/v1/audit-streams/{stream['id']}/test", as_=org.admin).get_json()
    assert failed["delivered"] is False and "500" in failed["error"]


def test_the_streams_page_creates_shows_and_pauses(app, org, receiver):
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    login(client, org.admin)
    page = client.get("/organization/audit-streams")
    assert page.status_code == 200 and "No streams yet." in page.get_data(True)
    made = client.post(
        "/organization/audit-streams",
        data={
            "csrf_token": csrf_from(page.get_data(True)),
            "name": "Webhook",
            "type": "webhook",
            "url": receiver.url,
            "format": "json",
            "q": "status:4xx",
        },
    )
    html = made.get_data(True)
    assert made.status_code == 201 and "whsec_" in html and "active" in html
    assert "whsec_" not in client.get("/organization/audit-streams").get_data(True)


# The formats ----------------------------------------------------------------------------------

# OCSF 1.x: the base event's required attributes, and API Activity's (class 6003)
OCSF_REQUIRED = {
    "activity_id",
    "category_uid",
    "class_uid",
    "metadata",
    "severity_id",
    "time",
    "type_uid",
    "actor",
    "api",
    "src_endpoint",
}


@pytest.mark.parametrize("status", [200, 201, 403, 500])
@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE", "OPTIONS"])
def test_ocsf_events_carry_every_required_attribute(org, status, method):
    record = audit_record(
        org.id,
        method=method,
        statusCode=status,
        action="pathway.update",
        storedAt=datetime.now(UTC),
        credentialId="jwt_abcdefgh",
        response={"errorCode": "forbidden", "errorMessage": "no"}
        if status >= 400
        else {"id": str(ObjectId())}
        if status == 201
        else {},
    )
    event = ocsf(record)
    assert set(event) >= OCSF_REQUIRED
    assert event["class_uid"] == 6003 and event["category_uid"] == 6
    assert event["type_uid"] == 600300 + event["activity_id"]
    assert event["activity_id"] == {"GET": 2, "POST": 1, "PATCH": 3, "DELETE": 4}.get(method, 99)
    assert isinstance(event["time"], int) and event["severity_id"] in (1, 2, 3)
    assert (
        event["metadata"]["version"].startswith("1.")
        and event["metadata"]["product"]["vendor_name"]
    )
    assert event["api"]["operation"] == "pathway.update" and event["src_endpoint"]["ip"]
    assert event["actor"] and event["status_id"] == (1 if status < 400 else 2)
    json.dumps(event)  # plain JSON


def test_cef_escapes_what_would_break_its_fields(org):
    record = audit_record(org.id, path="/a|b=c\\d\nx", accountEmail="a=b@x.example")
    line = cef(record)
    assert line.count("\n") == 0 and "request=/a|b\\=c\\\\d\\nx" in line
    assert "suser=a\\=b@x.example" in line


def test_the_export_speaks_ocsf(app, api, org, db):
    traffic(api, org, 1)
    answer = api.get("/api/v1/audit-logs/export", as_=org.admin, query_string={"format": "ocsf"})
    assert answer.status_code == 200 and answer.mimetype == "application/x-ndjson"
    assert ".ocsf.ndjson" in answer.headers["Content-Disposition"]
    events = [json.loads(line) for line in answer.get_data(True).splitlines()]
    assert events and all(set(e) >= OCSF_REQUIRED for e in events)


def test_an_organization_made_before_streams_gets_the_permission_once(make_app, mongo):
    app = make_app()
    org = make_org(app, "Early")
    with app.app_context():
        db = get_db()
        db.roles.update_many(
            {"organizationId": org.id}, {"$pull": {"permissions": "manageAuditStreams"}}
        )
        db.app_upgrades.delete_many({})
    make_app()  # the next start grants it to the built-in Owner and Admin roles
    with app.app_context():
        roles = {
            r["key"]: r["permissions"] for r in get_db().roles.find({"organizationId": org.id})
        }
        assert "manageAuditStreams" in roles["owner"] and "manageAuditStreams" in roles["admin"]
        assert "manageAuditStreams" not in roles["member"]
        get_db().roles.update_one(
            {"organizationId": org.id, "key": "admin"},
            {"$pull": {"permissions": "manageAuditStreams"}},
        )
    make_app()  # an Admin role trimmed afterwards stays trimmed
    with app.app_context():
        admin = get_db().roles.find_one({"organizationId": org.id, "key": "admin"})
        assert "manageAuditStreams" not in admin["permissions"]


def test_a_hanging_destination_holds_up_no_request(make_app, org, monkeypatch):
    """Delivery runs on its own background lane: while it waits on a destination that does
    not answer, requests are served (their latency is measured in bench/streams.py)."""
    monkeypatch.setattr("audit_app.streams.destinations.READ_TIMEOUT", 4.0)
    app = make_app(
        AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0, AUDIT_STREAM_INTERVAL=1
    )
    hanging = HttpReceiver()
    hanging.hang = 3.0
    try:
        api = Api(app.test_client())
        stream = create(api, org, destination={"type": "webhook", "url": hanging.url})
        runner = app.extensions["audit_app.background"]
        runner.ensure_started()
        for _ in range(200):  # until the deliverer is inside its call to the destination
            if _in_flight(hanging):
                break
            threading.Event().wait(0.02)
        assert _in_flight(hanging)  # the deliverer waits on the destination...
        answered = api.get("/api/v1/workspaces", as_=org.admin)
        assert answered.status_code == 200
        assert _in_flight(hanging) and not hanging.requests  # ...and still does: no wait here
        runner.stop(timeout=10)
        assert api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin).status_code == 200
    finally:
        hanging.stop()


def _in_flight(receiver) -> bool:
    return receiver.in_flight > 0
