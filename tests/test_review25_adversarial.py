"""Review 25: adversarial tests of the journal write mode and the cursor-paged platform
lists. Each test states a defect found in review; it fails until the defect is fixed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import bson

from audit_app.audit.capture.hooks import WRITER_KEY
from audit_app.audit.capture.journal import MAGIC
from audit_app.db import get_audit_db
from audit_app.organizations import service as access

from .factories import Api, make_org


def _stored(app, **filter_) -> list[dict]:
    with app.app_context():
        return list(get_audit_db().audit_logs.find(filter_))


# Cursor-paged lists: the members' email search ------------------------------------------


def test_members_email_search_ending_in_the_last_code_point_lists_members_it_does_not_match(
    api, org
):
    """``prefix_range`` of a prefix whose last character is U+10FFFF has no upper bound
    (``{"$gte": prefix}``), so ``email=a\\U0010FFFF`` lists every member whose email sorts
    after it: owner@..., member@..., none of which starts with the text searched."""
    answer = api.get("/api/v1/members?email=a%F4%8F%BF%BF", as_=org.admin)
    assert answer.status_code == 200, answer.get_json()
    emails = [item["email"] for item in answer.get_json()["items"]]
    assert emails == [], f"the search widened to members it does not match: {emails}"


def test_members_email_search_in_capitals_finds_a_greek_address_any_case(app, api, org):
    """``email=`` is documented as 'any case', but the prefix is lowered on its own:
    'ΟΔΟΣ'.lower() is 'οδος' (a final sigma at the end of the text), while the stored
    'οδοσα@...' has a medial sigma there, so the member is never found by the capitals."""
    with app.app_context():
        access.add_member_as_operator(
            org.id, "οδοσα@acme.example", "a-long-password", org.roles["member"]
        )
    lower = api.get("/api/v1/members?email=οδοσ", as_=org.admin).get_json()
    assert [m["email"] for m in lower["items"]] == ["οδοσα@acme.example"]  # the lower case works
    upper = api.get("/api/v1/members?email=ΟΔΟΣ", as_=org.admin)
    assert upper.status_code == 200
    assert [m["email"] for m in upper.get_json()["items"]] == ["οδοσα@acme.example"]


# The journal ----------------------------------------------------------------------------


def _ascii_moment():
    """A moment whose BSON date bytes are all below 0x80 (the dates of 2021 are)."""
    millis = int(datetime(2021, 6, 1, tzinfo=UTC).timestamp() * 1000)
    millis = int.from_bytes(bytes(b & 0x7F for b in millis.to_bytes(8, "little")), "little")
    return datetime.fromtimestamp(millis / 1000, UTC)


def _ascii_entry(record: dict) -> str:
    """A journal entry (MAGIC + BSON) written as JSON text whose UTF-8 bytes are exactly the
    entry's bytes: every byte below 0x80 is a character of its own."""
    for pad in range(250):  # documents' lengths are bytes too: pad them into ASCII
        padding = {"note": "." * min(pad, 120), "more": "." * max(0, pad - 120)}
        # shaped as an entry is, a made-up MAC where the journal's would be
        data = MAGIC + b"0123456789abcdef"
        data += bson.encode({"t": _ascii_moment(), "r": {**record, **padding}})
        if all(b < 0x80 for b in data):
            return data.decode("ascii")
    raise AssertionError("no padding makes the entry ASCII")


def test_a_torn_entry_never_turns_bytes_a_client_sent_into_a_stored_record(embedded):
    """After damage, ``decode_all`` resumes at the next MAGIC anywhere in the file, also
    inside the damaged entry's own bytes: a request body that holds MAGIC followed by a BSON
    document becomes an entry of its own. A host crash that tears the tail of that request's
    entry (the largest bodies are the likeliest to be torn) turns what the client typed into
    a record that no request made, with any actor, action, path and time it chose; the
    genuine record is set aside."""
    app = embedded()
    org = make_org(app, "Acme")
    api = Api(app.test_client())
    writer = app.extensions[WRITER_KEY]
    api.token(org.admin)
    writer.fold(wait=True)  # what setting up wrote
    forged = {
        "_id": "forged-0000",  # any _id the client likes (a string here: all ASCII)
        "action": "member.roleChange",
        "accountEmail": "owner@acme.example",
        "authType": "jwt",
        "method": "PATCH",
        "path": "/api/v1/members/someone",
        "statusCode": 101,  # (an int32 whose bytes are ASCII)
        "requestId": "forged-by-a-client",
        "createdAt": _ascii_moment(),
    }
    text = _ascii_entry(forged)
    body = {"name": "p", "description": "x" * 3000 + text + "y" * 1000}
    answer = api.post("/api/v1/pathways", as_=org.admin, workspace=org.workspace["_id"], json=body)
    assert answer.status_code == 201, answer.get_json()
    # the machine crashes as the entry is written: its last bytes never reach the disk
    path = writer.journal.active_path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 500])
    result = writer.fold(wait=True)
    assert result.rejected >= 1
    assert _stored(app, requestId="forged-by-a-client") == [], (
        "a record no request made was stored from bytes a client sent"
    )


def test_a_reader_sees_its_own_answered_request_when_another_worker_folds_while_skipping_the_store(
    embedded,
):
    """Two workers share one journal. Worker A had one store write fail (a lock wait past
    5 s): it skips the store for 5 s, and its background fold, meanwhile, moves every record
    in the shared journal (B's too) to the spool without replaying it. Worker B answered a
    request, then reads the log: nothing waits in the journal any more, so B's read folds
    nothing and its own answered request is missing (until a replay, up to
    AUDIT_REPLAY_INTERVAL = 30 s later). In the sync mode B would have stored it itself."""
    worker_a = embedded()
    worker_b = embedded()
    org = make_org(worker_b, "Acme")
    api_b = Api(worker_b.test_client())
    api_b.token(org.admin)
    writer_a = worker_a.extensions[WRITER_KEY]
    writer_b = worker_b.extensions[WRITER_KEY]
    writer_b.fold(wait=True)
    assert writer_a.journal.directory == writer_b.journal.directory  # one store, one journal
    created = api_b.post("/api/v1/workspaces", as_=org.admin, json={"name": "Answered"})
    assert created.status_code == 201
    request_id = created.headers["X-Request-Id"]
    # A's state after one failed write (writer.write sets it so): the store skipped for 5 s
    writer_a._skip_store_until = time.monotonic() + 5
    with worker_a.app_context():
        folded = writer_a.fold_in_background()
    assert folded.errors == []
    page = api_b.get("/api/v1/audit-logs?q=path:/api/v1/workspaces&limit=200", as_=org.admin)
    assert page.status_code == 200
    seen = [item["requestId"] for item in page.get_json()["items"]]
    assert request_id in seen, "B's reader did not see the request B answered before it"


def test_a_reader_waits_for_the_late_records_a_fold_in_progress_sends_through_the_spool(
    embedded, monkeypatch
):
    """A record left in the journal over 60 s (its worker was killed) goes through the spool
    and is replayed by the fold that found it, after that fold released the journal's lock.
    A reader in another worker that waited for 'the fold in progress' gets the lock, finds
    nothing pending and reads the store while the replay is still running: the record of a
    request answered long before the read is missing from it."""
    import threading

    worker_a = embedded()
    worker_b = embedded()
    org = make_org(worker_b, "Acme")
    api_b = Api(worker_b.test_client())
    api_b.token(org.admin)
    writer_a = worker_a.extensions[WRITER_KEY]
    writer_b = worker_b.extensions[WRITER_KEY]
    writer_b.fold(wait=True)
    # a request answered by a worker that was then killed, two minutes ago
    answered = api_b.post("/api/v1/workspaces", as_=org.admin, json={"name": "Left behind"})
    assert answered.status_code == 201
    request_id = answered.headers["X-Request-Id"]
    journal = writer_b.journal
    from audit_app.audit.capture.journal import decode_all, encode

    entries, _ = decode_all(journal.active_path.read_bytes(), journal.key)
    journal.active_path.write_bytes(
        b"".join(
            encode(e.record, journal.key, e.handed_off - timedelta(minutes=2)) for e in entries
        )
    )
    # A's replay takes a moment (a fsync'd ledger line per record, a busy store)
    replaying = threading.Event()
    go_on = threading.Event()
    real_replay = writer_a.replay

    def slow_replay():
        replaying.set()
        go_on.wait(10)
        return real_replay()

    monkeypatch.setattr(writer_a, "replay", slow_replay)

    def fold_a():
        with worker_a.app_context():
            writer_a.fold_in_background()

    folder = threading.Thread(target=fold_a)
    folder.start()
    try:
        assert replaying.wait(10)
        page = api_b.get("/api/v1/audit-logs?q=path:/api/v1/workspaces", as_=org.admin)
        seen = [item["requestId"] for item in page.get_json()["items"]]
    finally:
        go_on.set()
        folder.join()
    assert request_id in seen, "the reader read before the fold in progress had stored it"
