"""Each organization's audit retention and legal hold (#17): the API, the settings page, the
purge on both stores, and verification that tells retention from tampering.

Written as the people who would get around it: a member, an admin whose custom role lacks
the permission, a workspace-bound key, someone who can write to the database but not to
the anchor's folder. Judged by the effect: which records are still there afterwards, and
what ``verify`` says.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from audit_app.audit.integrity.anchor import Anchor
from audit_app.db import get_audit_db, get_db

from .factories import Api, audit_record, make_org

NOW = datetime.now(UTC).replace(microsecond=0)


# one sealed window a day (a year is 365 windows), and a shorter retention applies at once:
# these tests are about the purge; the grace before it has its own, test_review23_retention.py
DAILY = {"AUDIT_SEAL_INTERVAL": 1440, "AUDIT_RETENTION_GRACE_DAYS": 0}


@pytest.fixture
def app(make_app):
    return make_app(**DAILY)


@pytest.fixture(params=["mongomock", "embedded"])
def store_app(request, make_app, tmp_path):
    """An app on each store."""
    if request.param == "embedded":
        return make_app(
            MONGO_CLIENT=None,
            MONGO_URI=None,
            EMBEDDED_STORE_DIR=str(tmp_path / "store"),
            **DAILY,
        )
    return make_app(**DAILY)


def aged(org_id, days: float, **fields):
    """A record received and stored ``days`` ago (its id made then, as the app makes it)."""
    moment = NOW - timedelta(days=days)
    record_id = ObjectId(ObjectId.from_datetime(moment).binary[:4] + os.urandom(8))
    return audit_record(org_id, _id=record_id, created_at=moment, storedAt=moment, **fields)


def history(app, org, days=(200, 45, 40, 10, 1)) -> dict[float, ObjectId]:
    """Records of an organization made ``days`` ago, and the organization as old."""
    records = {age: aged(org.id, age, path=f"/api/v1/aged/{age}") for age in days}
    with app.app_context():
        get_audit_db().audit_logs.insert_many(list(records.values()))
        get_db().organizations.update_one(
            {"_id": org.id}, {"$set": {"createdAt": NOW - timedelta(days=max(days) + 1)}}
        )
    return {age: record["_id"] for age, record in records.items()}


def counted_hour(app, org, days: float) -> datetime:
    """The activity count of the day ``days`` ago, as the writer keeps it."""
    day = (NOW - timedelta(days=days)).replace(hour=0, minute=0, second=0)
    with app.app_context():
        get_audit_db().audit_counters.insert_one(
            {"organizationId": org.id, "day": day, "count": 1, "statusClasses": {"2xx": 1}}
        )
    return day


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def present(app, ids) -> set:
    with app.app_context():
        audit = get_audit_db().audit_logs
        return {age for age, record_id in ids.items() if audit.find_one({"_id": record_id})}


def run(app, *args) -> dict:
    result = app.test_cli_runner().invoke(args=[*args, "--json"])
    assert result.exit_code in (0, 1), result.output
    return {"exit": result.exit_code, **json.loads(result.output)}


def verify(app, org) -> dict:
    return run(app, "verify", "--organization", str(org.id))


def patch(api, who, body, **kw):
    return api.patch("/api/v1/organization", json=body, **({"as_": who} if who else {}), **kw)


# The API ----------------------------------------------------------------------------------


def test_the_organization_shows_its_retention_and_an_admin_changes_it(app, api, org, db):
    shown = api.get("/api/v1/organization", as_=org.member).get_json()
    assert shown["auditRetentionDays"] == 400 and shown["auditLegalHold"] is False
    assert shown["auditRetentionBounds"] == {"minDays": 30, "maxDays": 3650, "graceDays": 0}
    answer = patch(api, org.admin, {"auditRetentionDays": 90, "auditLegalHold": True})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["auditRetentionDays"] == 90 and answer.get_json()["auditLegalHold"]
    again = api.get("/api/v1/organization", as_=org.owner).get_json()
    assert (again["auditRetentionDays"], again["auditLegalHold"]) == (90, True)
    record = db.audit_logs.find_one({"organizationId": org.id, "method": "PATCH"})
    assert record["action"] == "organization.update"
    assert record["changes"] == [
        {"field": "auditLegalHold", "from": False, "to": True},
        {"field": "auditRetentionDays", "from": 400, "to": 90},
    ] or sorted(record["changes"], key=lambda c: c["field"]) == [
        {"field": "auditLegalHold", "from": False, "to": True},
        {"field": "auditRetentionDays", "from": 400, "to": 90},
    ]
    # one field at a time keeps the other (only an Owner lifts a hold: test_review23_retention)
    assert patch(api, org.owner, {"auditLegalHold": False}).get_json()["auditRetentionDays"] == 90


@pytest.mark.parametrize(
    "body, field",
    [
        ({"auditRetentionDays": 29}, "auditRetentionDays"),
        ({"auditRetentionDays": 3651}, "auditRetentionDays"),
        ({"auditRetentionDays": 0}, "auditRetentionDays"),
        ({"auditRetentionDays": -5}, "auditRetentionDays"),
        ({"auditRetentionDays": "90"}, "auditRetentionDays"),
        ({"auditRetentionDays": 90.5}, "auditRetentionDays"),
        ({"auditRetentionDays": True}, "auditRetentionDays"),
        ({"auditRetentionDays": None}, "auditRetentionDays"),
        ({"auditRetentionDays": 10**30}, "auditRetentionDays"),
        ({"auditLegalHold": "true"}, "auditLegalHold"),
        ({"auditLegalHold": 1}, "auditLegalHold"),
        ({"auditLegalHold": None}, "auditLegalHold"),
        ({"auditRetentionDays": 90, "auditLegalHold": "no"}, "auditLegalHold"),
        ({}, "name"),
    ],
)
def test_a_bad_value_is_a_400_naming_the_field_and_changes_nothing(app, api, org, body, field):
    answer = patch(api, org.admin, body)
    assert answer.status_code == 400, answer.get_json()
    error = answer.get_json()["error"]
    assert error["field"] == field
    if field == "auditRetentionDays" and body[field] is not None:
        assert "30 to 3650" in error["message"]
    shown = api.get("/api/v1/organization", as_=org.admin).get_json()
    assert (shown["auditRetentionDays"], shown["auditLegalHold"]) == (400, False)
    with app.app_context():
        assert Anchor(app.config["AUDIT_ANCHOR_DIR"]).retention(org.id).settings is None


def test_who_may_change_the_retention(app, api, org, bound_key):
    """A member, a custom role with manageOrganization only, a workspace-bound key: refused;
    a custom role with manageAuditRetention only changes the retention, not the name."""
    from .test_access_control import _person

    renamer = api.post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "Renamer", "permissions": ["manageOrganization"]},
    ).get_json()
    keeper = api.post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "Records keeper", "permissions": ["manageAuditRetention"]},
    ).get_json()
    renamer_person = _person(app, org, "renamer", renamer)
    keeper_person = _person(app, org, "keeper", keeper)
    assert patch(api, org.member, {"auditLegalHold": True}).status_code == 403
    refused = patch(api, renamer_person, {"auditRetentionDays": 60})
    assert (
        refused.status_code == 403 and refused.get_json()["error"]["field"] == "auditRetentionDays"
    )
    assert patch(api, renamer_person, {"name": "Renamed"}).status_code == 200
    assert patch(api, None, {"auditLegalHold": True}, key=bound_key).status_code == 403
    assert patch(api, keeper_person, {"name": "Mine now"}).status_code == 403
    # refused as a whole: the name in the same request is not changed either
    assert patch(api, keeper_person, {"name": "X", "auditRetentionDays": 60}).status_code == 403
    shown = api.get("/api/v1/organization", as_=org.owner).get_json()
    assert (shown["name"], shown["auditRetentionDays"], shown["auditLegalHold"]) == (
        "Renamed",
        400,
        False,
    )
    assert patch(api, keeper_person, {"auditRetentionDays": 60}).status_code == 200
    assert patch(api, None, {"auditLegalHold": True}, key=org.api_key).status_code == 200
    shown = api.get("/api/v1/organization", as_=org.owner).get_json()
    assert (shown["auditRetentionDays"], shown["auditLegalHold"]) == (60, True)


def test_an_anchor_that_cannot_be_written_is_a_503_and_nothing_changes(make_app, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the anchor's folder should be")
    app = make_app(AUDIT_ANCHOR_DIR=str(blocked / "anchor"))
    org = make_org(app, "Blocked")
    api = Api(app.test_client())
    answer = patch(api, org.admin, {"auditRetentionDays": 30})
    assert answer.status_code == 503 and answer.get_json()["error"]["field"] == "auditRetentionDays"
    with app.app_context():
        assert "auditRetentionDays" not in get_db().organizations.find_one({"_id": org.id})
    assert patch(api, org.admin, {"name": "Still renamable"}).status_code == 200


def test_the_installation_refuses_bounds_that_exclude_its_default(make_app):
    from audit_app.config import ConfigError

    with pytest.raises(ConfigError, match="AUDIT_RETENTION_MIN_DAYS"):
        make_app(AUDIT_RETENTION_MIN_DAYS=500)
    app = make_app(AUDIT_RETENTION_MIN_DAYS=7, AUDIT_RETENTION_MAX_DAYS=90, AUDIT_RETENTION_DAYS=60)
    org = make_org(app, "Bounded")
    api = Api(app.test_client())
    assert patch(api, org.admin, {"auditRetentionDays": 7}).status_code == 200
    refused = patch(api, org.admin, {"auditRetentionDays": 91}).get_json()["error"]
    assert "7 to 90" in refused["message"]


# The purge --------------------------------------------------------------------------------


def test_each_organization_keeps_its_own_retention_and_verify_still_passes(store_app):
    app = store_app
    short, default = make_org(app, "Short"), make_org(app, "Default")
    api = Api(app.test_client())
    short_ids, default_ids = history(app, short), history(app, default)
    counted = {age: counted_hour(app, short, age) for age in (45, 10)}
    assert run(app, "seal")["exit"] == 0
    assert patch(api, short.admin, {"auditRetentionDays": 30}).status_code == 200
    purged = run(app, "purge")
    by_org = {o["organizationId"]: o for o in purged["organizations"]}
    assert by_org[str(short.id)]["deleted"] == 3 and by_org[str(default.id)]["deleted"] == 0
    assert present(app, short_ids) == {10, 1}
    assert present(app, default_ids) == {200, 45, 40, 10, 1}
    with app.app_context():  # the activity chart's counts of the purged hours go too
        left = {c["day"] for c in get_audit_db().audit_counters.find({"organizationId": short.id})}
    # (today's requests of this test may be counted too, when the background flush runs)
    assert {_aware(hour) for hour in left if _aware(hour) < NOW - timedelta(days=1)} == {
        counted[10]
    }
    for org in (short, default):
        report = verify(app, org)
        assert report["exit"] == 0 and report["ok"], report
    # the deletion is in the organization's own log, by whom and how many
    with app.app_context():
        noted = get_audit_db().audit_logs.find_one(
            {"organizationId": short.id, "action": "auditLog.purge"}
        )
    assert noted["authType"] == "cli" and noted["request"]["deleted"] == 3
    assert noted["request"]["params"] == {"by": "command"}
    # a longer retention afterwards does not make the purged records read as deleted
    assert patch(api, short.admin, {"auditRetentionDays": 400}).status_code == 200
    assert verify(app, short)["ok"]
    assert run(app, "purge")["deleted"] == 0


def test_a_legal_hold_stops_the_purge_and_lifting_it_resumes_it(store_app):
    app = store_app
    org = make_org(app, "Held")
    api = Api(app.test_client())
    ids = history(app, org)
    assert (
        patch(api, org.admin, {"auditRetentionDays": 30, "auditLegalHold": True}).status_code == 200
    )
    answer = run(app, "purge")
    assert answer["deleted"] == 0 and answer["organizations"][0]["legalHold"] is True
    assert present(app, ids) == {200, 45, 40, 10, 1}
    assert patch(api, org.owner, {"auditLegalHold": False}).status_code == 200  # an Owner's
    assert run(app, "purge")["deleted"] == 3
    assert present(app, ids) == {10, 1}


def test_the_purge_takes_one_batch_at_a_time_and_rechecks_the_hold(app, api, org, monkeypatch):
    """A hold answered between two batches: the next batch deletes nothing."""
    from audit_app.audit.integrity import retention

    monkeypatch.setattr(retention, "BATCH", 2)
    ids = history(app, org, days=(50, 49, 48, 47, 46, 45))
    assert patch(api, org.admin, {"auditRetentionDays": 30}).status_code == 200
    real_delete = retention.delete_records
    batches = []

    def delete_then_hold(db, organization_id, batch):
        batches.append(list(batch))
        deleted = real_delete(db, organization_id, batch)
        if len(batches) == 1:  # the admin's hold lands between the first and second batch
            with app.app_context():
                retention.anchor_settings(
                    retention._anchor(app), organization_id, retention.Retention(30, True)
                )
        return deleted

    monkeypatch.setattr(retention, "delete_records", delete_then_hold)
    assert run(app, "purge")["deleted"] == 2
    assert len(present(app, ids)) == 4 and len(batches) == 1


# Someone who can write to the database, not to the anchor --------------------------------


def test_editing_the_settings_in_the_database_cannot_shorten_retention_or_lift_a_hold(
    store_app,
):
    app = store_app
    held, plain = make_org(app, "Held"), make_org(app, "Plain")
    api = Api(app.test_client())
    held_ids, plain_ids = history(app, held), history(app, plain)
    assert patch(api, held.admin, {"auditLegalHold": True}).status_code == 200
    with app.app_context():
        organizations = get_db().organizations
        organizations.update_one(
            {"_id": held.id}, {"$set": {"auditLegalHold": False, "auditRetentionDays": 30}}
        )
        # never set through the app: the database alone cannot go below the default
        organizations.update_one({"_id": plain.id}, {"$set": {"auditRetentionDays": 30}})
    run(app, "purge")
    assert present(app, held_ids) == {200, 45, 40, 10, 1}
    assert present(app, plain_ids) == {200, 45, 40, 10, 1}  # the default (400 days) stands
    # what is enforced is what the API and the page show, with the edit called out
    shown = api.get("/api/v1/organization", as_=held.admin).get_json()
    assert (shown["auditRetentionDays"], shown["auditLegalHold"]) == (400, True)
    from .test_web_session import login

    client = app.test_client()
    login(client, held.owner)
    page = client.get("/organization/settings").get_data(as_text=True)
    assert "changed in the database, outside the app" in page


def test_deleting_held_records_in_the_database_is_tampering_not_retention(store_app):
    app = store_app
    org = make_org(app, "Evidence")
    api = Api(app.test_client())
    ids = history(app, org, days=(60, 40, 10))
    assert run(app, "seal")["exit"] == 0
    assert (
        patch(api, org.admin, {"auditRetentionDays": 30, "auditLegalHold": True}).status_code == 200
    )
    run(app, "purge")
    assert verify(app, org)["ok"]
    with app.app_context():
        get_audit_db().audit_logs.delete_one({"_id": ids[40]})
    report = verify(app, org)
    assert report["exit"] == 1 and not report["ok"]
    assert str(ids[40]) in json.dumps(report)


def test_a_deletion_above_the_anchored_bound_is_still_tampering(app, api, org):
    """The bound excuses only what is below it: a record younger than the retention,
    deleted by hand after a purge, is reported."""
    ids = history(app, org, days=(60, 40, 10))
    assert run(app, "seal")["exit"] == 0
    assert patch(api, org.admin, {"auditRetentionDays": 30}).status_code == 200
    run(app, "purge")
    assert present(app, ids) == {10} and verify(app, org)["ok"]
    with app.app_context():
        get_audit_db().audit_logs.delete_one({"_id": ids[10]})
    assert not verify(app, org)["ok"]


# The settings page --------------------------------------------------------------------------


def test_the_settings_page_changes_retention_and_hold_and_refuses_bad_input(app, org, db):
    from .test_web_session import csrf_from as csrf_of
    from .test_web_session import login

    client = app.test_client()
    login(client, org.admin)
    page = client.get("/organization/settings")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'name="auditRetentionDays"' in text and "From 30 to 3650 days" in text
    token = csrf_of(text)
    form = {"csrf_token": token, "name": "Acme", "auditRetentionDays": "90", "auditLegalHold": "on"}
    form["confirm"] = "yes"  # a shortening asks first (test_confirmations.py)
    saved = client.post("/organization/settings", data=form, follow_redirects=True)
    assert "Settings saved." in saved.get_data(as_text=True)
    shown = Api(app.test_client()).get("/api/v1/organization", as_=org.admin).get_json()
    assert (shown["auditRetentionDays"], shown["auditLegalHold"]) == (90, True)
    record = db.audit_logs.find_one(
        {"organizationId": org.id, "path": "/organization/settings", "method": "POST"}
    )
    assert record["action"] == "organization.update"
    assert {c["field"] for c in record["changes"]} == {"auditRetentionDays", "auditLegalHold"}
    for bad in ("9", "ninety", "1e3", "٣٠"):
        refused = client.post(
            "/organization/settings",
            data={**form, "auditRetentionDays": bad},
            follow_redirects=True,
        ).get_data(as_text=True)
        assert "whole number of days from 30 to 3650" in refused, bad
    shown = Api(app.test_client()).get("/api/v1/organization", as_=org.admin).get_json()
    assert shown["auditRetentionDays"] == 90


def test_a_member_sees_the_settings_but_cannot_change_them(app, org):
    from .test_web_session import csrf_from as csrf_of
    from .test_web_session import login

    client = app.test_client()
    login(client, org.member)
    text = client.get("/organization/settings").get_data(as_text=True)
    assert "needs the manageAuditRetention permission" in text and "Save settings" not in text
    form = {"csrf_token": csrf_of(text), "auditRetentionDays": "30", "auditLegalHold": "on"}
    answer = client.post("/organization/settings", data=form, follow_redirects=True)
    assert "needs the manageAuditRetention permission" in answer.get_data(as_text=True)
    shown = Api(app.test_client()).get("/api/v1/organization", as_=org.admin).get_json()
    assert (shown["auditRetentionDays"], shown["auditLegalHold"]) == (400, False)
