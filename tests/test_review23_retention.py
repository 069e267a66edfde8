"""Review #23, retention: only an Owner lifts a legal hold, and shortening the retention
deletes nothing before a grace period (``AUDIT_RETENTION_GRACE_DAYS``, 7 by default).

Written as the people who would get around it: an Admin, a custom role and an API key that
may manage the retention, someone who can write to the database but not to the anchor.
Judged by the effect: which records the purge leaves, what the organization shows, what the
audit log says. Time moves by the retention module's clock (``retention.utcnow``), as the
sealing tests move sealing's.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit_app.audit.integrity import retention
from audit_app.config import ConfigError, load_settings
from audit_app.db import get_audit_db, get_db
from audit_app.ids import utcnow
from audit_app.organizations import service as access

from .factories import PASSWORD, Api, Person, make_org, settled
from .test_retention import DAILY, history, patch, present, run
from .test_web_session import csrf_from, login

AGES = (200, 45, 40, 10, 1)  # days; under a 30-day retention the first three go


@pytest.fixture
def app(make_app):
    return make_app(**{**DAILY, "AUDIT_RETENTION_GRACE_DAYS": 7})  # the default, as shipped


@pytest.fixture(params=["mongomock", "embedded"])
def store_app(request, make_app, tmp_path):
    """An app on each store (the embedded one gives dates back without a time zone)."""
    config = {**DAILY, "AUDIT_RETENTION_GRACE_DAYS": 7}
    if request.param == "embedded":
        config.update(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(tmp_path / "s"))
    return make_app(**config)


@pytest.fixture
def clock(monkeypatch):
    """Move the retention's clock (the purge's, the settings' and the grace's) ahead."""
    start = utcnow()

    def ahead(days: float) -> None:
        monkeypatch.setattr(retention, "utcnow", lambda: start + timedelta(days=days))

    return ahead


def shown(api, org) -> dict:
    return api.get("/api/v1/organization", as_=org.owner).get_json()


def keeper(app, org, permissions=("manageAuditRetention",)) -> Person:
    """A member whose custom role may manage the retention (and no more)."""
    owner = Api(app.test_client())
    role = owner.post(
        "/api/v1/roles",
        as_=org.owner,
        json={"name": "Keeper", "permissions": list(permissions)},
    ).get_json()
    email = "keeper@acme.example"
    with app.app_context():
        made = access.add_member_as_operator(
            org.id, email, PASSWORD, get_db().roles.find_one({"name": role["name"]})
        )
    return Person(email, PASSWORD, made["account"]["_id"], "Keeper")


# (Extra b) Only an Owner lifts a legal hold ---------------------------------------------


def test_an_admin_sets_a_hold_but_only_an_owner_lifts_it(app, api, org, db, clock):
    ids = history(app, org, AGES)
    assert patch(api, org.admin, {"auditLegalHold": True}).status_code == 200
    assert patch(api, org.owner, {"auditRetentionDays": 30}).status_code == 200
    for body in (
        {"auditLegalHold": False},
        {"auditLegalHold": False, "auditRetentionDays": 500},
        {"auditLegalHold": False, "name": "Renamed"},
    ):
        refused = patch(api, org.admin, body)
        assert refused.status_code == 403, body
        error = refused.get_json()["error"]
        assert error["field"] == "auditLegalHold" and "Owner" in error["message"], error
    after = shown(api, org)
    assert after["auditLegalHold"] is True and after["name"] == "Acme"
    assert after["auditRetentionDays"] == 400  # the 500 of the refused request: not taken
    record = db.audit_logs.find_one(
        {"organizationId": org.id, "method": "PATCH", "statusCode": 403}, sort=[("_id", -1)]
    )
    assert record["response"]["errorCode"] == "forbidden" and not record.get("changes")
    clock(8)  # past the grace of the shortening: the hold stands, the purge deletes nothing
    assert run(app, "purge")["deleted"] == 0
    assert present(app, ids) == set(AGES)
    lifted = patch(api, org.owner, {"auditLegalHold": False})
    assert lifted.status_code == 200 and lifted.get_json()["auditLegalHold"] is False


def test_a_custom_role_and_an_api_key_set_a_hold_but_do_not_lift_it(app, api, org):
    person = keeper(app, org)
    assert patch(api, person, {"auditLegalHold": True}).status_code == 200
    refused = patch(api, person, {"auditLegalHold": False})
    assert refused.status_code == 403
    assert refused.get_json()["error"]["field"] == "auditLegalHold"
    # an Admin key made by the operator holds manageAuditRetention; a key is never an Owner
    by_key = api.patch("/api/v1/organization", key=org.api_key, json={"auditLegalHold": False})
    assert by_key.status_code == 403 and by_key.get_json()["error"]["field"] == "auditLegalHold"
    assert shown(api, org)["auditLegalHold"] is True
    # a custom role that may set the retention still may, while the hold stands
    assert patch(api, person, {"auditRetentionDays": 500}).status_code == 200
    assert shown(api, org)["auditLegalHold"] is True


def test_the_settings_page_lets_only_an_owner_lift_a_hold(app, api, org):
    assert patch(api, org.admin, {"auditLegalHold": True}).status_code == 200
    admin = app.test_client()
    login(admin, org.admin)
    page = admin.get("/organization/settings").get_data(as_text=True)
    assert "Only an Owner lifts a legal hold" in page
    token = csrf_from(page)
    # the Admin saves the page with another retention: the hold stays, the change is taken
    assert 'name="auditLegalHold" value="on"' in page  # kept as it is by the page
    saved = admin.post(
        "/organization/settings",
        data={"csrf_token": token, "name": "Acme", "auditRetentionDays": "500"}
        | {"auditLegalHold": "on"},
        follow_redirects=True,
    )
    assert "Settings saved." in saved.get_data(as_text=True)
    assert (shown(api, org)["auditRetentionDays"], shown(api, org)["auditLegalHold"]) == (
        500,
        True,
    )
    # a crafted form without the hidden hold: refused, nothing changed
    form = {"csrf_token": token, "name": "Acme", "auditRetentionDays": "600"}
    answer = admin.post("/organization/settings", data=form, follow_redirects=True)
    text = answer.get_data(as_text=True)
    assert "Only an Owner lifts a legal hold" in text and "Settings saved." not in text
    form["auditLegalHold"] = ""  # an empty value is no hold either
    admin.post("/organization/settings", data=form)
    assert (shown(api, org)["auditRetentionDays"], shown(api, org)["auditLegalHold"]) == (
        500,
        True,
    )
    owner = app.test_client()
    login(owner, org.owner)
    page = owner.get("/organization/settings").get_data(as_text=True)
    assert "Only an Owner lifts a legal hold" not in page
    lifted = owner.post(
        "/organization/settings",
        data={"csrf_token": csrf_from(page), "name": "Acme", "auditRetentionDays": "500"},
        follow_redirects=True,
    )
    assert "Settings saved." in lifted.get_data(as_text=True)
    assert shown(api, org)["auditLegalHold"] is False


# (Extra c) Shortening waits for the grace; lengthening does not --------------------------


def test_shortening_deletes_nothing_until_the_grace_has_passed(store_app, clock):
    app = store_app
    org, api = make_org(app, "Acme"), Api(store_app.test_client())
    ids = history(app, org, AGES)
    answer = patch(api, org.admin, {"auditRetentionDays": 30})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["auditRetentionDays"] == 400  # still enforced
    pending = body["auditRetentionPending"]
    assert pending["days"] == 30
    effective = pending["effectiveAt"]
    assert shown(api, org)["auditRetentionPending"] == pending
    assert shown(api, org)["auditRetentionBounds"]["graceDays"] == 7
    settled(app)
    with app.app_context():
        record = get_audit_db().audit_logs.find_one({"organizationId": org.id, "method": "PATCH"})
    assert record["changes"] == [
        {
            "field": "auditRetentionPending",
            "from": None,
            "to": {"days": 30, "effectiveAt": effective},
        }
    ]
    assert run(app, "purge")["deleted"] == 0
    clock(6.9)
    assert run(app, "purge")["deleted"] == 0
    assert present(app, ids) == set(AGES)
    clock(7.01)
    after = shown(api, org)
    assert after["auditRetentionDays"] == 30 and after["auditRetentionPending"] is None
    assert run(app, "purge")["deleted"] == 3
    assert present(app, ids) == {10, 1}


def test_cancelling_in_the_grace_keeps_the_records(app, api, org, db, clock):
    ids = history(app, org, AGES)
    assert patch(api, org.admin, {"auditRetentionDays": 30}).status_code == 200
    clock(3)
    cancelled = patch(api, org.admin, {"auditRetentionDays": 400})  # back to the old value
    assert cancelled.status_code == 200
    assert cancelled.get_json()["auditRetentionPending"] is None
    record = db.audit_logs.find_one(
        {"organizationId": org.id, "method": "PATCH"}, sort=[("_id", -1)]
    )
    assert [c["field"] for c in record["changes"]] == ["auditRetentionPending"]
    assert record["changes"][0]["to"] is None
    clock(30)
    assert run(app, "purge")["deleted"] == 0
    assert present(app, ids) == set(AGES)
    assert shown(api, org)["auditRetentionDays"] == 400


def test_lengthening_takes_effect_at_once_and_ends_a_pending_shortening(app, api, org, clock):
    longer = patch(api, org.admin, {"auditRetentionDays": 500}).get_json()
    assert (longer["auditRetentionDays"], longer["auditRetentionPending"]) == (500, None)
    assert patch(api, org.admin, {"auditRetentionDays": 30}).status_code == 200
    again = patch(api, org.admin, {"auditRetentionDays": 600}).get_json()
    assert (again["auditRetentionDays"], again["auditRetentionPending"]) == (600, None)
    clock(8)
    assert shown(api, org)["auditRetentionDays"] == 600


def test_a_new_shortening_starts_the_grace_again_and_asking_twice_does_not(app, api, org, clock):
    ids = history(app, org, AGES)
    first = patch(api, org.admin, {"auditRetentionDays": 30}).get_json()["auditRetentionPending"]
    clock(2)
    same = patch(api, org.admin, {"auditRetentionDays": 30}).get_json()["auditRetentionPending"]
    assert same == first  # the same request again: the grace runs on
    clock(5)
    other = patch(api, org.admin, {"auditRetentionDays": 31}).get_json()["auditRetentionPending"]
    assert other["days"] == 31 and other["effectiveAt"] > first["effectiveAt"]
    clock(8)  # past the first grace, not the second
    assert run(app, "purge")["deleted"] == 0
    clock(12.01)
    assert run(app, "purge")["deleted"] == 3
    assert present(app, ids) == {10, 1}


def test_the_database_alone_cannot_skip_the_grace(store_app, clock):
    """Someone who can write to the database, not to the anchor, moves the pending change
    into the past, or writes the shorter retention as the current one."""
    app = store_app
    org, api = make_org(app, "Acme"), Api(store_app.test_client())
    ids = history(app, org, AGES)
    assert patch(api, org.admin, {"auditRetentionDays": 30}).status_code == 200
    organizations = None
    with app.app_context():
        organizations = get_db().organizations
        organizations.update_one(
            {"_id": org.id},
            {"$set": {"auditRetentionPending.effectiveAt": utcnow() - timedelta(days=30)}},
        )
    assert run(app, "purge")["deleted"] == 0
    with app.app_context():
        organizations.update_one(
            {"_id": org.id},
            {"$set": {"auditRetentionDays": 30, "auditRetentionPending": None}},
        )
    assert run(app, "purge")["deleted"] == 0
    assert present(app, ids) == set(AGES)
    assert shown(api, org)["auditRetentionDays"] == 400
    admin = app.test_client()
    login(admin, org.admin)
    assert "changed in the database" in admin.get("/organization/settings").get_data(as_text=True)
    clock(7.01)  # the anchored grace has passed: the anchored shortening applies
    assert run(app, "purge")["deleted"] == 3


def test_the_settings_page_shows_a_pending_shortening_and_cancels_it(app, api, org, clock):
    ids = history(app, org, AGES)
    admin = app.test_client()
    login(admin, org.admin)
    token = csrf_from(admin.get("/organization/settings").get_data(as_text=True))
    saved = admin.post(
        "/organization/settings",
        data={"csrf_token": token, "name": "Acme", "auditRetentionDays": "30", "confirm": "yes"},
        follow_redirects=True,
    ).get_data(as_text=True)
    pending = shown(api, org)["auditRetentionPending"]
    day = pending["effectiveAt"][:10]
    assert "Settings saved." in saved
    assert "30 days" in saved and day in saved and "Cancel" in saved
    assert 'value="400"' in saved  # the enforced retention, until then
    cancelled = admin.post(
        "/organization/settings",
        data={
            "csrf_token": token,
            "name": "Acme",
            "auditRetentionDays": "400",
            "cancelPending": "1",
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "cancelled" in cancelled and day not in cancelled
    assert shown(api, org)["auditRetentionPending"] is None
    clock(8)
    assert run(app, "purge")["deleted"] == 0
    assert present(app, ids) == set(AGES)


# The setting, checked at start --------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "3651"])
def test_a_bad_grace_setting_stops_the_start_naming_it(make_app, monkeypatch, tmp_path, value):
    monkeypatch.setenv("AUDIT_RETENTION_GRACE_DAYS", value)
    with pytest.raises(ConfigError, match="AUDIT_RETENTION_GRACE_DAYS"):
        settings = load_settings(tmp_path)
        make_app(AUDIT_RETENTION_GRACE_DAYS=settings["AUDIT_RETENTION_GRACE_DAYS"])


@pytest.mark.parametrize("value", [-1, True, "7", 10**9])
def test_a_bad_grace_given_to_the_app_stops_it(make_app, value):
    with pytest.raises(ConfigError, match="AUDIT_RETENTION_GRACE_DAYS"):
        make_app(AUDIT_RETENTION_GRACE_DAYS=value)


def test_the_grace_defaults_to_seven_days_and_zero_applies_a_shortening_at_once(
    make_app, monkeypatch, tmp_path
):
    monkeypatch.delenv("AUDIT_RETENTION_GRACE_DAYS", raising=False)
    assert load_settings(tmp_path)["AUDIT_RETENTION_GRACE_DAYS"] == 7
    app = make_app(**{**DAILY, "AUDIT_RETENTION_GRACE_DAYS": 0})
    org = make_org(app, "Zero")
    answer = patch(Api(app.test_client()), org.admin, {"auditRetentionDays": 30}).get_json()
    assert (answer["auditRetentionDays"], answer["auditRetentionPending"]) == (30, None)
