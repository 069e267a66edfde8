"""Sessions and tokens that end when they should: logout, password change, removal.

Also the last-Owner invariant under real concurrency, the one email rule, the shared login
counter and the operator's CLI for existing accounts.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from audit_app.auth.principal import Principal
from audit_app.db import Store
from audit_app.errors import ApiError
from audit_app.organizations import service as access
from audit_app.organizations.permissions import PERMISSIONS

from .conftest import TEST_SECRET
from .factories import PASSWORD, make_org
from .test_web_session import csrf_from, login

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def web(make_app):
    return make_app(WTF_CSRF_ENABLED=True)


def _logout(client):
    page = client.get("/").get_data(as_text=True)
    return client.post("/logout", data={"csrf_token": csrf_from(page)})


def test_a_cookie_saved_before_logout_no_longer_opens_the_pages(web, org):
    client = web.test_client()
    login(client, org.owner)
    stolen = client.get_cookie("session").value
    assert client.get("/organization/members").status_code == 200
    answer = _logout(client)
    assert answer.status_code == 302
    assert "You are signed out." in client.get(answer.headers["Location"]).get_data(as_text=True)
    thief = web.test_client()
    thief.set_cookie("session", stolen)
    refused = thief.get("/organization/members")
    assert refused.status_code == 302 and "/login" in refused.headers["Location"]
    assert "Your session ended; sign in to continue" in thief.get(
        refused.headers["Location"]
    ).get_data(as_text=True)


def test_a_password_change_ends_every_other_session_and_token(web, api, org):
    mine, other = web.test_client(), web.test_client()
    login(mine, org.admin)
    login(other, org.admin)
    old_token = api.token(org.admin)
    page = mine.get("/account/password").get_data(as_text=True)
    wrong = mine.post(
        "/account/password",
        data={
            "csrf_token": csrf_from(page),
            "currentPassword": "not it",
            "newPassword": "brand new pw",
            "confirmPassword": "brand new pw",
        },
    )
    assert wrong.status_code == 400
    changed = mine.post(
        "/account/password",
        data={
            "csrf_token": csrf_from(page),
            "currentPassword": PASSWORD,
            "newPassword": "brand new pw",
            "confirmPassword": "brand new pw",
        },
    )
    assert changed.status_code == 302
    assert mine.get("/organization/members").status_code == 200  # this browser stays in
    assert other.get("/organization/members").status_code == 302
    assert api.get("/api/v1/members", token=old_token).status_code == 401
    fresh = api.client.post(
        "/api/v1/auth/token", json={"email": org.admin.email, "password": "brand new pw"}
    )
    assert fresh.status_code == 200
    assert api.get("/api/v1/members", token=fresh.get_json()["token"]).status_code == 200


def test_a_removed_members_jwt_and_sessions_stop_working(web, api, org):
    browser = web.test_client()
    login(browser, org.admin)
    token = api.token(org.admin)
    assert api.delete(f"/api/v1/members/{org.admin.account_id}", as_=org.owner).status_code == 204
    assert api.get("/api/v1/members", token=token).status_code == 401
    assert browser.get("/organization/members").status_code == 302


@pytest.mark.slow
def test_logout_in_one_process_ends_the_session_in_another(make_app, tmp_path):
    """Two app processes on one embedded store: the session ends in both."""
    config = {
        "TESTING": True,
        "SECRET_KEY": TEST_SECRET,
        "MONGO_URI": None,
        "EMBEDDED_STORE_DIR": str(tmp_path / "store"),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
        "AUDIT_REPLAY_INTERVAL": 0,
        "PASSWORD_HASH_PROFILE": "fast",
        "RATELIMIT_STORAGE_URI": "memory://",
        "WTF_CSRF_ENABLED": False,
    }
    app = make_app(**{**config, "MONGO_CLIENT": None})
    org = make_org(app, "Twoproc")
    client = app.test_client()
    login(client, org.owner, token="unused")
    assert client.get("/organization/members").status_code == 200
    script = (
        "import json, sys\n"
        "from audit_app import create_app\n"
        "app = create_app(json.loads(sys.argv[1]))\n"
        "c = app.test_client()\n"
        "c.set_cookie('session', sys.argv[2])\n"
        "codes = [c.get('/organization/members').status_code, c.post('/logout').status_code]\n"
        "print(json.dumps(codes))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MONGO_URI"}
    other = subprocess.run(
        [sys.executable, "-c", script, json.dumps(config), client.get_cookie("session").value],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(other.stdout.strip().splitlines()[-1]) == [200, 302]
    assert client.get("/organization/members").status_code == 302


# The last Owner, raced ------------------------------------------------------------------


def _owner(org_id, account_id, owner_role_id) -> Principal:
    return Principal(
        auth_type="jwt",
        organization_id=org_id,
        account_id=account_id,
        role_id=owner_role_id,
        role_key="owner",
        permissions=frozenset(PERMISSIONS),
    )


def _race_owners(app, rounds: int, monkeypatch) -> list[int]:
    """Two Owners demote each other; neither changes a membership before both decided.

    The hook holds each racer just before it writes the membership, so an implementation
    that checks "another Owner remains" and then writes lets both through.
    """
    org = make_org(app, "Race")
    write = access.orgs.set_member_role
    both_decided = threading.Barrier(2)

    def decide_then_write(*args, **kwargs):
        if threading.current_thread().name.startswith("racer"):
            # the other racer may be refused before writing: then there is nothing to wait for
            with contextlib.suppress(threading.BrokenBarrierError):
                both_decided.wait(timeout=0.5)
        return write(*args, **kwargs)

    monkeypatch.setattr(access.orgs, "set_member_role", decide_then_write)
    owner_role, member_role = org.roles["owner"], org.roles["member"]
    with app.app_context():
        second = access.add_member_as_operator(org.id, "second@race.example", PASSWORD, owner_role)
    first_id, second_id = org.owner.account_id, second["account"]["_id"]
    results = []
    for _ in range(rounds):
        barrier = threading.Barrier(2)
        outcomes = []

        def demote(actor_id, target_id):
            with app.app_context():
                barrier.wait(timeout=10)
                try:
                    access.change_member_role(
                        _owner(org.id, actor_id, owner_role["_id"]), target_id, member_role["_id"]
                    )
                    outcomes.append("ok")
                except ApiError as error:
                    outcomes.append(error.status)

        both_decided.reset()
        threads = [
            threading.Thread(target=demote, args=(first_id, second_id), name="racer-1"),
            threading.Thread(target=demote, args=(second_id, first_id), name="racer-2"),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        with app.app_context():
            db = access.get_db()
            owners = db.memberships.count_documents(
                {"organizationId": org.id, "roleId": owner_role["_id"]}
            )
            results.append(owners)
            assert outcomes.count("ok") == 1 and owners == 1, (outcomes, owners)
            demoted = (
                second_id
                if access.orgs.find_membership(db, org.id, first_id)["roleId"] == owner_role["_id"]
                else first_id
            )
            remaining = first_id if demoted == second_id else second_id
            access.change_member_role(
                _owner(org.id, remaining, owner_role["_id"]), demoted, owner_role["_id"]
            )
    return results


def test_two_owners_demoting_each_other_leave_one_owner_as_on_mongodb(app, monkeypatch):
    """On MongoDB nothing is held (``Store.exclusive``): the conditional update alone."""
    monkeypatch.setattr(Store, "exclusive", lambda self, name: contextlib.nullcontext())
    assert _race_owners(app, 6, monkeypatch) == [1] * 6


@pytest.mark.slow
def test_two_owners_demoting_each_other_leave_one_owner_on_the_embedded_store(
    make_app, tmp_path, monkeypatch
):
    app = make_app(MONGO_CLIENT=None, MONGO_URI=None, EMBEDDED_STORE_DIR=str(tmp_path / "store"))
    assert _race_owners(app, 6, monkeypatch) == [1] * 6


@pytest.mark.slow
def test_exclusive_sections_hold_across_processes_on_the_embedded_store(tmp_path):
    """The primitive the owners guard runs in: read-then-write increments lose nothing."""
    script = (
        "import os, sys, time\n"
        "from audit_app.db import Store\n"
        "store = Store(None, db_name='t', embedded_dir=sys.argv[1])\n"
        "store.db.counters.find_one({})\n"
        "deadline = time.monotonic() + 60\n"
        "while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "for _ in range(100):\n"
        "    with store.exclusive('counter'):\n"
        "        doc = store.db.counters.find_one({'_id': 'n'}) or {'value': 0}\n"
        "        store.db.counters.replace_one(\n"
        "            {'_id': 'n'}, {'value': doc['value'] + 1}, upsert=True)\n"
    )
    go = tmp_path / "go"
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "store"), str(go)], cwd=ROOT)
        for _ in range(3)
    ]
    time.sleep(1.5)  # all three started and opened the store; then they run at once
    go.touch()
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    from audit_app.db import Store

    store = Store(None, db_name="t", embedded_dir=str(tmp_path / "store"))
    assert store.db.counters.find_one({"_id": "n"})["value"] == 300
    store.close()


# One email rule, one login counter, the operator's CLI --------------------------------------


@pytest.mark.parametrize("email", ["someone@corp.local", "owner@acme.test", "x@localhost"])
def test_an_internal_domain_account_can_log_in_on_the_web(make_app, email):
    app = make_app(WTF_CSRF_ENABLED=True)
    made = app.test_cli_runner().invoke(
        args=["create-org", "Internal", "--owner-email", email, "--owner-password", "long enough"]
    )
    assert made.exit_code == 0, made.output
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    answer = client.post(
        "/login", data={"email": email, "password": "long enough", "csrf_token": csrf_from(page)}
    )
    assert answer.status_code == 302
    assert "Internal" in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("email", ["not-an-email", "a@b@c", "x@[127.0.0.1]", "sp ace@x.example"])
def test_one_email_rule_refuses_the_same_everywhere(api, runner, org, email):
    cli = runner.invoke(
        args=["create-org", "Bad", "--owner-email", email, "--owner-password", "long enough"]
    )
    assert cli.exit_code != 0 and "--owner-email" in cli.output and "Traceback" not in cli.output
    answer = api.post(
        "/api/v1/members",
        as_=org.owner,
        json={"email": email, "roleId": str(org.roles["member"]["_id"])},
    )
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "email"


def test_web_and_api_logins_share_one_counter_per_email(make_app, org):
    app = make_app(RATELIMIT_LOGIN="3 per minute", WTF_CSRF_ENABLED=True)
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    codes = []
    for attempt in range(4):
        address = {"REMOTE_ADDR": f"198.51.100.{attempt}"}
        if attempt % 2:
            answer = client.post(
                "/login",
                data={"email": org.owner.email, "password": "bad", "csrf_token": token},
                environ_base=address,
            )
        else:
            answer = client.post(
                "/api/v1/auth/token",
                json={"email": org.owner.email, "password": "bad"},
                environ_base=address,
            )
        codes.append(answer.status_code)
    assert codes == [401, 401, 401, 429]


def test_the_cli_leaves_an_existing_accounts_password_alone(runner, api, org, other_org):
    result = runner.invoke(
        args=[
            "create-user",
            "--organization",
            str(other_org.id),
            "--email",
            org.member.email,
            "--password",
            "operator-chosen",
            "--role",
            "Admin",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "password was left unchanged" in result.output
    as_json = runner.invoke(
        args=["create-org", "Third", "--owner-email", org.member.email, "--json"]
    )
    payload = json.loads(as_json.output)
    assert payload["accountCreated"] is False and payload["passwordChanged"] is False
    tried = api.client.post(
        "/api/v1/auth/token", json={"email": org.member.email, "password": "operator-chosen"}
    )
    assert tried.status_code == 401
    kept = api.client.post(
        "/api/v1/auth/token",
        json={"email": org.member.email, "password": PASSWORD, "organizationId": str(other_org.id)},
    )
    assert kept.status_code == 200
    new = runner.invoke(
        args=["create-user", "--organization", str(org.id), "--email", "fresh@acme.example"]
    )
    assert new.exit_code != 0 and "password" in new.output.lower()
