"""Security review #23 of log streams (docs/streams.md): each test plays the attacker and is
judged by the effect (what their receiver gets, what they can read afterwards), not only by
the status code. Receivers are real servers on 127.0.0.1 (tests/streams_receivers.py)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from bson import ObjectId

from audit_app.db import get_db
from audit_app.organizations import repository as orgs
from audit_app.organizations import service as access

from .factories import PASSWORD, Api, Person
from .streams_receivers import HttpReceiver
from .test_streams import create, deliver, since_start, traffic
from .test_web_session import csrf_from, login


@pytest.fixture
def app(make_app):
    return make_app(AUDIT_STREAM_ALLOW_PRIVATE=True, AUDIT_STREAM_SETTLE_SECONDS=0)


@pytest.fixture
def own_receiver():
    """The attacker's own receiver."""
    made = HttpReceiver()
    yield made
    made.stop()


def member_with(app, org, email: str, permissions: list[str]) -> Person:
    """A member of ``org`` whose custom role holds exactly ``permissions``."""
    with app.app_context():
        role = orgs.create_role(get_db(), org.id, f"Role of {email}", permissions)
        account = access.add_member_as_operator(org.id, email, PASSWORD, role)["account"]
    return Person(email, PASSWORD, account["_id"], "custom")


def received_ids(receiver) -> list[str]:
    return [event["id"] for event in receiver.events()]


def wait_for(predicate, seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        threading.Event().wait(0.02)


# (2) manageAuditStreams without viewAuditLog ----------------------------------------------


@pytest.fixture
def streamer(app, org):
    """An insider whose role holds manageAuditStreams but not viewAuditLog."""
    return member_with(app, org, "streamer@acme.example", ["manageAuditStreams"])


def test_a_stream_manager_without_view_audit_log_cannot_backfill_the_log_to_a_receiver(
    app, api, org, db, streamer, own_receiver
):
    traffic(api, org, 2)
    assert api.get("/api/v1/audit-logs", as_=streamer).status_code == 403
    made = api.post(
        "/api/v1/audit-streams",
        as_=streamer,
        json={
            "name": "mine",
            "destination": {"type": "webhook", "url": own_receiver.url},
            "start": "2020-01-01T00:00:00Z",
        },
    )
    assert made.status_code == 403, made.get_json()
    assert "viewAuditLog" in made.get_json()["error"]["message"]
    deliver(app)
    assert own_receiver.requests == []  # the effect: nothing of the log reached them
    assert db.audit_streams.count_documents({}) == 0


def test_a_stream_manager_without_view_audit_log_cannot_redirect_or_widen_a_stream(
    app, api, org, db, streamer, receiver, own_receiver
):
    """An Admin's stream to the security team's receiver: the insider can neither point it
    at their own receiver, nor widen its filters or format, nor test it, nor resume it."""
    stream = create(
        api, org, destination={"type": "webhook", "url": receiver.url}, filters={"q": "status:5xx"}
    )
    path = f"/api/v1/audit-streams/{stream['id']}"
    attempts = [
        {"destination": {"type": "webhook", "url": own_receiver.url}},
        {"destination": {"type": "splunk", "url": own_receiver.url}, "token": "mine"},
        {"filters": {}},
        {"format": "ocsf"},
        {"paused": False},
        {"name": "renamed", "destination": {"type": "webhook", "url": own_receiver.url}},
    ]
    for body in attempts:
        answer = api.patch(path, as_=streamer, json=body)
        assert answer.status_code == 403, (body, answer.get_json())
    assert api.post(f"{path}/test", as_=streamer).status_code == 403
    traffic(api, org, 2)
    deliver(app)
    assert own_receiver.requests == []
    kept = db.audit_streams.find_one({"_id": ObjectId(stream["id"])})
    assert kept["filters"] == {"q": "status:5xx"} and kept["format"] == "json"
    assert kept["name"] == "SIEM"  # a refused change changes nothing


def test_a_stream_manager_without_view_audit_log_may_see_rename_pause_and_delete(
    app, api, org, db, streamer, receiver
):
    """Listing and reading streams shows their settings and health, never record content:
    the destination's answer (which a receiver may fill with the events it refused) is
    shown only to holders of viewAuditLog."""
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url})
    traffic(api, org, 1)
    receiver.statuses = [400]
    receiver.echo = True  # a receiver that quotes what it refused
    deliver(app)
    path = f"/api/v1/audit-streams/{stream['id']}"
    seen_by_admin = api.get(path, as_=org.admin).get_json()
    assert seen_by_admin["state"] == "failing" and "400" in seen_by_admin["lastError"]
    owed = since_start(db, org, stream)
    assert any(record_id in json.dumps(seen_by_admin) for record_id in owed)  # the echo
    listed = api.get("/api/v1/audit-streams", as_=streamer)
    shown = api.get(path, as_=streamer)
    assert listed.status_code == shown.status_code == 200
    assert shown.get_json()["state"] == "failing" and "400" in shown.get_json()["lastError"]
    for answer in (listed, shown):
        text = answer.get_data(True)
        assert not any(record_id in text for record_id in owed), text
    page = app.test_client()
    login(page, streamer)
    html = page.get("/organization/audit-streams").get_data(True)
    assert "SIEM" in html and not any(record_id in html for record_id in owed)
    assert api.patch(path, as_=streamer, json={"name": "Renamed"}).status_code == 200
    assert api.patch(path, as_=streamer, json={"paused": True}).status_code == 200
    assert api.delete(path, as_=streamer).status_code == 204


def test_the_streams_page_refuses_the_same_to_a_manager_without_view_audit_log(
    app, api, org, db, streamer, receiver, own_receiver
):
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url})
    api.patch(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin, json={"paused": True})
    client = app.test_client()
    login(client, streamer)
    token = csrf_from(client.get("/organization/audit-streams").get_data(True))
    made = client.post(
        "/organization/audit-streams",
        data={"csrf_token": token, "name": "mine", "type": "webhook", "url": own_receiver.url},
    )
    assert made.status_code in (302, 303, 403)
    resumed = client.post(
        f"/organization/audit-streams/{stream['id']}/pause",
        data={"csrf_token": token, "paused": "false"},
    )
    tested = client.post(
        f"/organization/audit-streams/{stream['id']}/test", data={"csrf_token": token}
    )
    assert resumed.status_code in (302, 303, 403) and tested.status_code in (302, 303, 403)
    deliver(app)
    assert own_receiver.requests == [] and receiver.requests == []
    assert db.audit_streams.count_documents({}) == 1
    assert db.audit_streams.find_one({})["state"] == "paused"
    page = client.get("/organization/audit-streams").get_data(True)
    assert "viewAuditLog" in page  # the refusal is said on the page


def test_an_api_key_of_a_stream_manager_role_gets_no_more(app, api, org, own_receiver):
    with app.app_context():
        from audit_app.api_keys import repository as keys

        role = orgs.create_role(get_db(), org.id, "Streams only", ["manageAuditStreams"])
        _key, secret = keys.create_api_key(
            get_db(),
            org.id,
            name="streams",
            role_id=role["_id"],
            workspace_id=None,
            created_by=None,
        )
    made = api.post(
        "/api/v1/audit-streams",
        key=secret,
        json={
            "name": "mine",
            "destination": {"type": "webhook", "url": own_receiver.url},
            "start": "2020-01-01T00:00:00Z",
        },
    )
    assert made.status_code == 403
    deliver(app)
    assert own_receiver.requests == []


# (6) A stream delivers only while whoever last set its destination may read the log -------


def admin2(app, org) -> Person:
    with app.app_context():
        account = access.add_member_as_operator(
            org.id, "admin2@acme.example", PASSWORD, org.roles["admin"]
        )["account"]
    return Person("admin2@acme.example", PASSWORD, account["_id"], "admin")


def _removed(app, api, org, who, role):
    assert api.delete(f"/api/v1/members/{who.account_id}", as_=org.owner).status_code == 204


def _demoted(app, api, org, who, role):
    answer = api.patch(
        f"/api/v1/members/{who.account_id}",
        as_=org.owner,
        json={"roleId": str(org.roles["member"]["_id"])},
    )
    assert answer.status_code == 200, answer.get_json()


def _role_loses_view_audit_log(app, api, org, who, role):
    answer = api.patch(
        f"/api/v1/roles/{role['_id']}", as_=org.owner, json={"permissions": ["manageAuditStreams"]}
    )
    assert answer.status_code == 200, answer.get_json()


def _role_loses_manage_streams(app, api, org, who, role):
    answer = api.patch(
        f"/api/v1/roles/{role['_id']}", as_=org.owner, json={"permissions": ["viewAuditLog"]}
    )
    assert answer.status_code == 200, answer.get_json()


@pytest.mark.parametrize(
    "change",
    [_removed, _demoted, _role_loses_view_audit_log, _role_loses_manage_streams],
    ids=["removed", "demoted-to-member", "role-loses-viewAuditLog", "role-loses-manage"],
)
def test_a_stream_stops_delivering_when_whoever_set_its_destination_may_no_longer_read(
    app, api, org, db, change
):
    """Admin2 streams to a receiver of theirs; once Admin2 may no longer read the log
    (removed, demoted, their role edited), new records no longer reach that receiver: the
    stream pauses and says why, until someone who holds both resumes it."""
    with app.app_context():
        role = orgs.create_role(
            get_db(), org.id, "Stream admins", ["manageAuditStreams", "viewAuditLog"]
        )
        account = access.add_member_as_operator(org.id, "admin2@acme.example", PASSWORD, role)
    insider = Person("admin2@acme.example", PASSWORD, account["account"]["_id"], "custom")
    theirs = HttpReceiver()
    try:
        made = api.post(
            "/api/v1/audit-streams",
            as_=insider,
            json={"name": "Admin2's", "destination": {"type": "webhook", "url": theirs.url}},
        )
        assert made.status_code == 201
        stream = made.get_json()
        assert stream["destinationSetBy"]["accountId"] == str(insider.account_id)
        traffic(api, org, 1)
        deliver(app)
        before = len(theirs.events())
        assert before > 0  # delivering while Admin2 may read the log
        change(app, api, org, insider, role)
        traffic(api, org, 2)
        deliver(app)
        deliver(app)
        assert len(theirs.events()) == before  # the effect: nothing more reached them
        health = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.owner).get_json()
        assert health["state"] == "paused" and health["pausedReason"], health
        assert health["lastError"] == health["pausedReason"]
        assert "admin2@acme.example" in health["pausedReason"]
        # the Owner, who holds both, resumes it: they now answer for its destination
        resumed = api.patch(
            f"/api/v1/audit-streams/{stream['id']}", as_=org.owner, json={"paused": False}
        )
        assert resumed.status_code == 200 and resumed.get_json()["state"] == "active"
        assert resumed.get_json()["destinationSetBy"]["accountId"] == str(org.owner.account_id)
        assert resumed.get_json()["pausedReason"] is None
        record = db.audit_logs.find_one(
            {"action": "auditStream.update", "accountId": org.owner.account_id}
        )
        assert {"field": "state", "from": "paused", "to": "active"}.items() <= {
            k: v for c in record["changes"] if c["field"] == "state" for k, v in c.items()
        }.items()
        deliver(app)
        got = [e["id"] for e in theirs.events()]
        owed = since_start(db, org, stream)
        assert got[before:] == owed[before : len(got)] and len(got) > before  # nothing skipped
    finally:
        theirs.stop()


@pytest.mark.parametrize("change", ["revoked", "creator-removed", "key-role-loses-view"])
def test_a_stream_set_by_an_api_key_stops_when_the_key_may_no_longer_read(
    app, api, org, db, change
):
    insider = admin2(app, org)
    with app.app_context():
        role = orgs.create_role(
            get_db(), org.id, "Key streams", ["manageAuditStreams", "viewAuditLog"]
        )
    key = api.post(
        "/api/v1/api-keys", as_=insider, json={"name": "siem", "roleId": str(role["_id"])}
    ).get_json()
    theirs = HttpReceiver()
    try:
        made = api.post(
            "/api/v1/audit-streams",
            key=key["key"],
            json={"name": "by key", "destination": {"type": "webhook", "url": theirs.url}},
        )
        assert made.status_code == 201, made.get_json()
        stream = made.get_json()
        assert stream["destinationSetBy"] == {
            "accountId": str(insider.account_id),
            "apiKeyId": key["id"],
            "at": stream["destinationSetBy"]["at"],
        }
        traffic(api, org, 1)
        deliver(app)
        before = len(theirs.events())
        assert before > 0
        if change == "revoked":
            assert api.delete(f"/api/v1/api-keys/{key['id']}", as_=org.owner).status_code in (
                200,
                204,
            )
        elif change == "creator-removed":
            _removed(app, api, org, insider, None)
        else:
            api.patch(
                f"/api/v1/roles/{role['_id']}",
                as_=org.owner,
                json={"permissions": ["manageAuditStreams"]},
            )
        traffic(api, org, 2)
        deliver(app)
        assert len(theirs.events()) == before
        health = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.owner).get_json()
        assert health["state"] == "paused" and "API key" in health["pausedReason"]
    finally:
        theirs.stop()


def test_whoever_changes_the_destination_answers_for_it(app, api, org, db, receiver):
    """A destination changed by another member is theirs from then on: the creator's
    departure no longer pauses it, the changer's does."""
    insider = admin2(app, org)
    made = api.post(
        "/api/v1/audit-streams",
        as_=insider,
        json={"name": "s", "destination": {"type": "webhook", "url": receiver.url + "/a"}},
    ).get_json()
    changed = api.patch(
        f"/api/v1/audit-streams/{made['id']}",
        as_=org.admin,
        json={"destination": {"type": "webhook", "url": receiver.url + "/b"}},
    ).get_json()
    assert changed["destinationSetBy"]["accountId"] == str(org.admin.account_id)
    renamed = api.patch(
        f"/api/v1/audit-streams/{made['id']}", as_=insider, json={"name": "renamed"}
    ).get_json()
    assert renamed["destinationSetBy"]["accountId"] == str(org.admin.account_id)  # a name only
    _removed(app, api, org, insider, None)
    traffic(api, org, 1)
    deliver(app)
    shown = api.get(f"/api/v1/audit-streams/{made['id']}", as_=org.owner).get_json()
    assert shown["state"] == "active" and receiver.requests


def _legacy(db, org, receiver, **fields):
    """A stream as an earlier version stored it: no destinationSetBy."""
    now = datetime.now(UTC)
    stream = {
        "_id": ObjectId(),
        "organizationId": org.id,
        "name": "legacy",
        "destination": {"type": "webhook", "url": receiver.url},
        "format": "json",
        "filters": {},
        "state": "active",
        "start": now,
        "secret": None,
        "cursor": None,
        "lease": None,
        "health": {"delivered": 0, "failed": 0, "attempts": 0, "pendingSince": now},
        "nextAttemptAt": now,
        "createdAt": now,
        "updatedAt": now,
        **fields,
    }
    db.audit_streams.insert_one(stream)
    return stream


@pytest.mark.parametrize(
    "case,delivers",
    [
        ("creator-holds-both-never-changed", True),
        ("creator-holds-both-changed-since", False),
        ("creator-lacks-view", False),
        ("no-creator", False),
    ],
)
def test_a_stream_from_before_is_kept_only_where_its_creator_set_its_destination(
    app, api, org, db, receiver, case, delivers
):
    """No record of who set the destination: the creator answers for it only if the
    stream was never changed (before this review anyone holding manageAuditStreams could
    have changed it); otherwise it pauses until someone who holds both resumes it."""
    now = datetime.now(UTC)
    fields: dict = {"createdBy": org.admin.account_id}
    if case == "creator-holds-both-changed-since":
        fields["updatedAt"] = now.replace(year=now.year + 1)
    elif case == "creator-lacks-view":
        fields["createdBy"] = org.member.account_id
    elif case == "no-creator":
        fields.pop("createdBy")
    stream = _legacy(db, org, receiver, **fields)
    traffic(api, org, 1)
    deliver(app)
    shown = api.get(f"/api/v1/audit-streams/{stream['_id']}", as_=org.owner).get_json()
    assert bool(receiver.requests) == delivers, shown
    assert shown["state"] == ("active" if delivers else "paused"), shown
    if not delivers:
        assert shown["pausedReason"]
        resumed = api.patch(
            f"/api/v1/audit-streams/{stream['_id']}", as_=org.owner, json={"paused": False}
        )
        assert resumed.status_code == 200
        deliver(app)
        assert receiver.requests


# (4) One client cannot stall a stream with records too large for the receiver ---------------

MB = 1024 * 1024


@pytest.fixture
def nginx():
    """A receiver with nginx's default client_max_body_size: 413 above 1 MB."""
    made = HttpReceiver()
    made.max_body = MB
    yield made
    made.stop()


def padded_login_attempts(app, org, n=24):
    """Unauthenticated token requests naming a member, each with 64 KB of padding: each is
    recorded in the member's organization (the 429s of the rate limit too)."""
    anonymous = app.test_client()
    statuses = set()
    for _ in range(n):
        answer = anonymous.post(
            "/api/v1/auth/token",
            json={"email": org.member.email, "password": "wrong", "padding": "x" * 65536},
        )
        statuses.add(answer.status_code)
    return statuses


def test_padded_login_attempts_cannot_stall_a_stream(app, api, org, db, nginx):
    stream = create(api, org, destination={"type": "webhook", "url": nginx.url})
    assert 429 in padded_login_attempts(app, org)
    padded = list(
        db.audit_logs.find(
            {
                "organizationId": org.id,
                "path": "/api/v1/auth/token",
                "accountEmail": org.member.email,
            }
        )
    )
    assert len(padded) == 24 and all(len(json.dumps(r, default=str)) > 65000 for r in padded)
    api.get("/api/v1/workspaces", as_=org.admin)  # what happens next
    deliver(app)
    deliver(app)
    owed = since_start(db, org, stream)
    got = received_ids(nginx)
    assert len(owed) > 24 and got[: len(owed)] == owed  # all of it, later records too
    assert nginx.too_large == [] and all(len(r["body"]) <= MB for r in nginx.requests)
    health = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin).get_json()
    assert health["state"] == "active" and health["lastError"] is None


def test_a_batch_the_receiver_refuses_as_too_large_is_split_and_delivered(app, api, org, db, nginx):
    """Configured above what the receiver takes: a 413 halves the batch until it fits."""
    app.config["AUDIT_STREAM_MAX_BATCH_BYTES"] = 8 * MB
    stream = create(api, org, destination={"type": "webhook", "url": nginx.url})
    padded_login_attempts(app, org)
    api.get("/api/v1/workspaces", as_=org.admin)
    deliver(app)
    owed = since_start(db, org, stream)
    got = received_ids(nginx)
    assert nginx.too_large  # the receiver did refuse the first try
    assert got[: len(owed)] == owed and len(set(got)) == len(got)  # each once, in order
    health = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin).get_json()
    assert health["state"] == "active" and health["truncated"] == 0


def huge_record(org, **fields):
    """A record larger than any batch (a body limit raised by the installation, or a record
    written by an earlier version): a 1.5 MB path and a 1.5 MB body."""
    from .factories import audit_record

    now = datetime.now(UTC)
    return audit_record(
        org.id,
        path="/api/v1/" + "p" * (3 * MB // 2),
        userAgent="u" * 5000,
        request={
            "query": {},
            "params": {},
            "headers": {},
            "bodyType": "text",
            "bodySize": 3 * MB // 2,
            "body": "y" * (3 * MB // 2),
        },
        storedAt=now,
        created_at=now,
        **fields,
    )


def _truncated_marker(event: dict, fmt: str) -> bool:
    if fmt == "ocsf":
        return event["unmapped"]["truncated"] is True and event["unmapped"]["originalBytes"] > MB
    return event["truncated"] is True and event["originalBytes"] > MB


@pytest.mark.parametrize("fmt", ["json", "ocsf"])
@pytest.mark.parametrize("kind", ["webhook", "splunk"])
@pytest.mark.parametrize("cap", [None, 8 * MB], ids=["default-cap", "cap-above-receiver"])
def test_one_record_too_large_for_any_batch_is_delivered_truncated_and_the_rest_follows(
    app, api, org, db, nginx, kind, fmt, cap
):
    if cap:
        app.config["AUDIT_STREAM_MAX_BATCH_BYTES"] = cap
    url = nginx.url + ("/services/collector/event" if kind == "splunk" else "/hook")
    body = {"destination": {"type": kind, "url": url}, "format": fmt}
    if kind == "splunk":
        body["token"] = "hec-token"
    stream = create(api, org, **body)
    big = huge_record(org)
    db.audit_logs.insert_one(big)
    api.get("/api/v1/workspaces", as_=org.admin)  # a record after it
    deliver(app)
    deliver(app)
    events = nginx.events()
    if kind == "splunk":
        events = [e["event"] for e in events]
    ids = [e["metadata"]["uid"] if fmt == "ocsf" else e["id"] for e in events]
    owed = since_start(db, org, stream)
    assert str(big["_id"]) in owed and ids[: len(owed)] == owed  # nothing blocked or skipped
    [shrunk] = [e for e, i in zip(events, ids, strict=True) if i == str(big["_id"])]
    assert _truncated_marker(shrunk, fmt)
    assert all(len(r["body"]) <= MB for r in nginx.requests)
    health = api.get(f"/api/v1/audit-streams/{stream['id']}", as_=org.admin).get_json()
    assert health["state"] == "active" and health["truncated"] == 1
    assert health["lastTruncatedId"] == str(big["_id"])


@pytest.mark.parametrize("fmt", ["json", "cef"])
def test_a_record_too_large_for_a_syslog_batch_is_delivered_truncated(app, api, org, db, fmt):
    from .streams_receivers import SyslogReceiver

    syslog = SyslogReceiver()
    try:
        stream = create(
            api,
            org,
            destination={"type": "syslog", "host": "127.0.0.1", "port": syslog.port},
            format=fmt,
        )
        big = huge_record(org)
        db.audit_logs.insert_one(big)
        api.get("/api/v1/workspaces", as_=org.admin)
        deliver(app)
        owed = since_start(db, org, stream)
        wait_for(lambda: len(syslog.messages) >= len(owed))
    finally:
        syslog.stop()
    assert len(syslog.messages) >= len(owed)
    assert all(m["length"] for m in syslog.messages)
    [shrunk] = [m for m in syslog.messages if str(big["_id"]) in m["msg"]]
    assert len(shrunk["msg"].encode()) < 512 * 1024
    if fmt == "json":
        assert _truncated_marker(json.loads(shrunk["msg"]), fmt)
    else:
        assert "cs5Label=truncatedFromBytes" in shrunk["msg"]
        assert f"externalId={big['_id']}" in shrunk["msg"]


# (8) The private-destination guard and IPv6 forms that embed an IPv4 address ----------------


def _teredo(server: str, client: str) -> str:
    """A Teredo address (2001::/32): the server's IPv4, then the client's, obfuscated."""
    import ipaddress

    s = int(ipaddress.IPv4Address(server))
    c = int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    value = (0x20010000 << 96) | (s << 64) | (0x8000 << 48) | (0x1234 << 32) | c
    return str(ipaddress.IPv6Address(value))


REFUSED_HOSTS = [
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215): never global
    "64:ff9b:1::5db8:d822",
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::a9fe:a9fe",
    "::5db8:d822",  # IPv4-compatible is deprecated whatever it embeds
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:93.184.216.34",  # IPv4-mapped: not globally reachable as such
    "::ffff:0:7f00:1",  # IPv4-translated
    "::ffff:0:a9fe:a9fe",
    _teredo("93.184.216.34", "10.0.0.1"),  # Teredo: a private client
    _teredo("93.184.216.34", "169.254.169.254"),
    _teredo("10.0.0.1", "93.184.216.34"),  # Teredo: a private server
    "192.0.0.192",  # IETF protocol assignments: Python 3.11 calls it global
    "192.0.0.8",
    "192.0.0.170",
    "0.0.0.0",
    "0.1.2.3",
    "100.64.0.1",
    "127.0.0.1",
    "169.254.169.254",
    "172.16.0.1",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "100::1",
    "2001:2::1",
    "2001:10::1",
    "2001:db8::1",
    "3fff::1",
    "5f00::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
    "4000::1",  # outside 2000::/3: not allocated for global unicast
]
ACCEPTED_HOSTS = [
    "93.184.216.34",
    "8.8.8.8",
    "192.0.0.9",  # PCP anycast: the registry marks it globally reachable
    "192.31.196.1",  # AS112: globally reachable
    "2606:4700::1111",
    "64:ff9b::5db8:d822",  # NAT64 of a public address
    "2002:5db8:d822::1",  # 6to4 of a public address
    _teredo("93.184.216.34", "8.8.8.8"),
    "2001:4:112::1",  # AS112-v6: globally reachable
]


def _url(host: str) -> str:
    return f"https://[{host}]/hook" if ":" in host else f"https://{host}/hook"


@pytest.fixture
def guarded(make_app):
    return Api(make_app(AUDIT_STREAM_ALLOW_PRIVATE=False).test_client())


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_a_destination_on_a_special_purpose_address_is_refused(guarded, org, host):
    for destination in (
        {"type": "webhook", "url": _url(host)},
        {"type": "syslog", "host": host, "port": 6514},
    ):
        answer = guarded.post(
            "/api/v1/audit-streams", as_=org.admin, json={"name": "x", "destination": destination}
        )
        assert answer.status_code == 422, (destination, answer.get_json())
        assert answer.get_json()["error"]["field"] == "destination"


@pytest.mark.parametrize("host", ACCEPTED_HOSTS)
def test_a_destination_on_a_globally_reachable_address_is_accepted(guarded, org, host):
    answer = guarded.post(
        "/api/v1/audit-streams",
        as_=org.admin,
        json={"name": "x", "destination": {"type": "webhook", "url": _url(host)}},
    )
    assert answer.status_code == 201, answer.get_json()


def test_a_name_that_later_resolves_to_an_embedded_private_address_gets_nothing(
    make_app, org, monkeypatch
):
    """Checked again at connect time, on the resolved address: a name that resolves to a
    public address when the stream is made and to NAT64 of the metadata service later."""
    import socket

    answers = {"now": ("93.184.216.34", socket.AF_INET)}
    connected = []
    real_getaddrinfo, real_connection = socket.getaddrinfo, socket.create_connection

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "siem.example.com":
            address, family = answers["now"]
            return [(family, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    import urllib3.util.connection as urllib3_connection

    real_urllib3_connection = urllib3_connection.create_connection

    def create_connection(address, *args, **kwargs):
        connected.append(address)
        return real_connection(address, *args, **kwargs)

    def urllib3_create_connection(address, *args, **kwargs):
        connected.append(address)
        return real_urllib3_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(urllib3_connection, "create_connection", urllib3_create_connection)
    app = make_app(AUDIT_STREAM_ALLOW_PRIVATE=False, AUDIT_STREAM_SETTLE_SECONDS=0)
    api = Api(app.test_client())
    made = {}
    for kind, destination in (
        ("webhook", {"type": "webhook", "url": "https://siem.example.com/hook"}),
        ("syslog", {"type": "syslog", "host": "siem.example.com", "port": 6514}),
    ):
        answer = api.post(
            "/api/v1/audit-streams", as_=org.admin, json={"name": kind, "destination": destination}
        )
        assert answer.status_code == 201, answer.get_json()
        made[kind] = answer.get_json()["id"]
    answers["now"] = ("64:ff9b::a9fe:a9fe", socket.AF_INET6)
    traffic(api, org, 1)
    deliver(app)
    for kind, stream_id in made.items():
        tested = api.post(f"/api/v1/audit-streams/{stream_id}/test", as_=org.admin).get_json()
        assert tested["delivered"] is False and "not a public address" in tested["error"]
        health = api.get(f"/api/v1/audit-streams/{stream_id}", as_=org.admin).get_json()
        assert health["state"] == "failing" and "not a public address" in health["lastError"]
    assert connected == []  # nothing ever connected to it


# (10) Control characters reach no receiver raw ----------------------------------------------

NASTY_PATH = (
    "/api/v1/x%00nul%1B[2Jesc%07bel%C2%85nel%E2%80%A8ls%E2%80%A9ps%7Fdel%C2%9Bcsi"
    "%0D%0Acrlf%09tab%1Cfs"
)
RAW_PATH = (
    "/api/v1/x\x00nul\x1b[2Jesc\x07bel\x85nel\u2028ls\u2029ps\x7fdel\x9bcsi\r\ncrlf\ttab\x1cfs"
)
NASTY_AGENT = "agent\x1b[31m\x07\x7f\x85\u2028end"


def controls(text: str) -> list[str]:
    """Every C0, DEL, C1 and line or paragraph separator character in ``text``."""
    return [c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029"]


def nasty_request(api, org) -> None:
    answer = api.get(NASTY_PATH, as_=org.admin, headers={"User-Agent": NASTY_AGENT})
    assert answer.status_code == 404


@pytest.mark.parametrize("fmt", ["json", "ocsf"])
@pytest.mark.parametrize("kind", ["webhook", "splunk"])
def test_control_characters_reach_an_http_receiver_escaped_and_intact(
    app, api, org, receiver, kind, fmt
):
    url = receiver.url + ("/services/collector/event" if kind == "splunk" else "/hook")
    body = {"destination": {"type": kind, "url": url}, "format": fmt}
    if kind == "splunk":
        body["token"] = "hec-token"
    create(api, org, **body)
    nasty_request(api, org)
    deliver(app)
    assert receiver.requests
    for request in receiver.requests:
        text = request["body"].decode("utf-8")
        lines = text.split("\n")  # NDJSON's own line breaks, nothing else
        assert not any(controls(line) for line in lines), [controls(line) for line in lines]
        if kind == "webhook":
            assert text.splitlines() == [line for line in lines if line]  # no other break
    events = receiver.events()
    if kind == "splunk":
        events = [e["event"] for e in events]
    paths = [e["http_request"]["url"]["path"] if fmt == "ocsf" else e["path"] for e in events]
    agents = [e["http_request"]["user_agent"] if fmt == "ocsf" else e["userAgent"] for e in events]
    assert RAW_PATH in paths and NASTY_AGENT in agents  # escaped on the wire, intact in JSON


@pytest.mark.parametrize("fmt", ["cef", "json"])
def test_control_characters_reach_a_syslog_receiver_escaped(app, api, org, fmt):
    from .streams_receivers import SyslogReceiver

    syslog = SyslogReceiver()
    try:
        create(
            api,
            org,
            destination={"type": "syslog", "host": "127.0.0.1", "port": syslog.port},
            format=fmt,
        )
        nasty_request(api, org)
        deliver(app)
        wait_for(lambda: any("2Jesc" in m["msg"] for m in syslog.messages))
    finally:
        syslog.stop()
    [nasty] = [m for m in syslog.messages if "2Jesc" in m["msg"]]
    for message in syslog.messages:
        assert not controls(message["raw"].decode("utf-8")), message["raw"]
    if fmt == "json":
        event = json.loads(nasty["msg"])
        assert event["path"] == RAW_PATH and event["userAgent"] == NASTY_AGENT
    else:
        # CEF has escapes for \\ = \n \r only: the others are shown as the text \uXXXX (its
        # backslash escaped, as CEF wants)
        msg = nasty["msg"]
        assert "request=/api/v1/x\\\\u0000nul\\\\u001b[2Jesc\\\\u0007bel\\\\u0085nel" in msg
        assert "\\\\u2028ls\\\\u2029ps\\\\u007fdel\\\\u009bcsi\\ncrlf\\\\u0009tab" in msg
        assert "requestClientApplication=agent\\\\u001b[31m\\\\u0007" in msg


def test_cef_header_fields_escape_control_characters_too(org):
    from audit_app.streams.formats import cef

    from .factories import audit_record

    line = cef(audit_record(org.id, action="x\x1b\x00|y\u2028z"))
    assert not controls(line)
    assert "|x\\\\u001b\\\\u0000\\|y\\\\u2028z|" in line


# (Extra) A destination URL's secrets are masked wherever it is shown ------------------------

URL_SECRETS = ("T0SECRET1", "B0SECRET2", "XXSECRET3XX", "SIGSECRET4", "TOKSECRET5", "KEYSECRET6")
SECRET_PATH = (
    "/services/T0SECRET1/B0SECRET2/XXSECRET3XX?sig=SIGSECRET4&token=TOKSECRET5&key=KEYSECRET6"
)
MASKED_PATH = "/services/****/****/****?sig=****&token=****&key=****"


def leaked(text: str) -> list[str]:
    return [secret for secret in URL_SECRETS if secret in text]


def test_a_destination_urls_secrets_are_masked_everywhere_but_on_the_wire(
    app, api, org, db, receiver
):
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url + SECRET_PATH})
    path = f"/api/v1/audit-streams/{stream['id']}"
    assert stream["destination"]["url"] == receiver.url + MASKED_PATH
    shown = api.get(path, as_=org.admin)
    listed = api.get("/api/v1/audit-streams", as_=org.admin)
    assert not leaked(json.dumps(stream) + shown.get_data(True) + listed.get_data(True))
    client = app.test_client()
    login(client, org.admin)
    html = client.get("/organization/audit-streams").get_data(True)
    assert MASKED_PATH.replace("&", "&amp;") in html and not leaked(html)
    # what the stream's owner gets: the whole URL, on the wire only
    traffic(api, org, 1)
    deliver(app)
    assert receiver.requests and receiver.requests[0]["path"] == SECRET_PATH
    # what GET shows can be sent back as is: the destination stays the same
    again = api.patch(path, as_=org.admin, json={"destination": shown.get_json()["destination"]})
    assert again.status_code == 200, again.get_json()
    receiver.requests.clear()
    traffic(api, org, 1)
    deliver(app)
    assert receiver.requests and receiver.requests[0]["path"] == SECRET_PATH
    # a new secret part: a change the record shows, masked
    moved = api.patch(
        path,
        as_=org.admin,
        json={"destination": {"type": "webhook", "url": receiver.url + SECRET_PATH + "X"}},
    )
    assert moved.status_code == 200
    record = db.audit_logs.find({"action": "auditStream.update"}).sort("createdAt", -1)[0]
    assert [c for c in record["changes"] if c["field"] == "destination"]
    # nothing of the secrets in the log (bodies and changes) nor at rest
    everything = json.dumps(list(db.audit_logs.find({})), default=str)
    assert not leaked(everything)
    assert not leaked(json.dumps(list(db.audit_streams.find({})), default=str))
    as_the_log_shows_it = api.get(
        "/api/v1/audit-logs", as_=org.owner, query_string={"q": "action:auditStream.*"}
    ).get_data(True)
    assert "auditStream.create" in as_the_log_shows_it and not leaked(as_the_log_shows_it)
    for item in api.get(
        "/api/v1/audit-logs", as_=org.owner, query_string={"q": "action:auditStream.*"}
    ).get_json()["items"]:
        detail = api.get(f"/api/v1/audit-logs/{item['id']}", as_=org.owner).get_data(True)
        assert not leaked(detail)


def test_a_refused_or_page_made_destination_keeps_its_secrets_out_of_the_log(
    make_app, app, org, db, receiver
):
    guarded = Api(make_app(AUDIT_STREAM_ALLOW_PRIVATE=False).test_client())
    refused = guarded.post(
        "/api/v1/audit-streams",
        as_=org.admin,
        json={
            "name": "x",
            "destination": {"type": "webhook", "url": "https://10.0.0.1" + SECRET_PATH},
        },
    )
    assert refused.status_code == 422
    client = app.test_client()
    login(client, org.admin)
    token = csrf_from(client.get("/organization/audit-streams").get_data(True))
    made = client.post(
        "/organization/audit-streams",
        data={
            "csrf_token": token,
            "name": "page",
            "type": "webhook",
            "url": receiver.url + SECRET_PATH,
        },
    )
    assert made.status_code == 201 and not leaked(made.get_data(True))
    records = list(db.audit_logs.find({"action": "auditStream.create"}))
    assert len(records) == 2 and not leaked(json.dumps(records, default=str))


# The same classes elsewhere in streams ---------------------------------------------------


def test_what_counts_or_dates_matched_records_is_for_view_audit_log_only(
    app, api, org, streamer, receiver
):
    """A filtered stream's counters and last delivery time say when records it matches
    happen (``actor:ceo@...``): a manager without viewAuditLog sees its settings, state and
    errors, not those."""
    stream = create(
        api, org, destination={"type": "webhook", "url": receiver.url}, filters={"q": "method:GET"}
    )
    traffic(api, org, 2)
    deliver(app)
    path = f"/api/v1/audit-streams/{stream['id']}"
    full = api.get(path, as_=org.admin).get_json()
    assert full["delivered"] > 0 and full["lastDeliveredAt"]
    seen = api.get(path, as_=streamer).get_json()
    assert seen["state"] == "active" and seen["lagSeconds"] == 0
    for name in ("delivered", "failed", "truncated", "lastDeliveredAt", "lastTruncatedId"):
        assert seen[name] is None and seen["health"][name] is None, name
    listed = api.get("/api/v1/audit-streams", as_=streamer).get_json()["items"]
    assert listed[0]["delivered"] is None


def test_a_manager_without_view_audit_log_cannot_take_over_the_signing_secret(
    app, api, org, streamer, receiver
):
    """A new signing secret would let them sign events of their own for the security
    team's receiver: rotating it needs viewAuditLog too."""
    stream = create(api, org, destination={"type": "webhook", "url": receiver.url})
    rotated = api.patch(
        f"/api/v1/audit-streams/{stream['id']}", as_=streamer, json={"rotateSecret": True}
    )
    assert rotated.status_code == 403 and "secret" not in (rotated.get_json() or {})
    receiver.secret = stream["secret"]
    assert api.post(f"/api/v1/audit-streams/{stream['id']}/test", as_=org.admin).get_json()[
        "delivered"
    ]
    assert receiver.verify(receiver.requests[-1])  # the team's secret still signs


def test_the_page_bounds_a_destination_as_the_api_does(app, org, db):
    """The page builds the service's input itself: a 100 KB URL or host is refused by the
    service (2000 and 255 characters), as the API's schema refuses it."""
    client = app.test_client()
    login(client, org.admin)
    token = csrf_from(client.get("/organization/audit-streams").get_data(True))
    for form in (
        {"type": "webhook", "url": "http://127.0.0.1/" + "a" * 100_000},
        {"type": "syslog", "host": "h" * 100_000, "port": "514"},
    ):
        client.post(
            "/organization/audit-streams", data={"csrf_token": token, "name": "long", **form}
        )
    assert db.audit_streams.count_documents({}) == 0
