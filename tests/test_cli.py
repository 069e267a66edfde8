"""Every command through the Click runner: what it prints, what it made, how it fails."""

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from bson import ObjectId

from audit_app.db import get_db


def run_json(runner, *args):
    result = runner.invoke(args=[*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_create_org_prints_ids_and_the_owner_can_log_in(runner, api):
    made = run_json(
        runner,
        "create-org",
        "Initech",
        "--owner-email",
        "boss@initech.example",
        "--owner-password",
        "sup3rsecret",
    )
    assert ObjectId.is_valid(made["organizationId"])
    assert set(made["roles"]) == {"owner", "admin", "member"}
    answer = api.post(
        "/api/v1/auth/token", json={"email": "boss@initech.example", "password": "sup3rsecret"}
    )
    assert answer.get_json()["organizationId"] == made["organizationId"]


def test_create_org_text_output(runner):
    result = runner.invoke(
        args=[
            "create-org",
            "Hooli",
            "--owner-email",
            "g@hooli.example",
            "--owner-password",
            "password123",
        ]
    )
    assert result.exit_code == 0
    assert "Created organization 'Hooli'" in result.output and "g@hooli.example" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["create-org", "X", "--owner-email", "not-an-email", "--owner-password", "password123"],
            "--owner-email",
        ),
        (
            ["create-org", "X", "--owner-email", "a@b.example", "--owner-password", "short"],
            "--owner-password",
        ),
        (
            ["create-org", " ", "--owner-email", "a@b.example", "--owner-password", "password123"],
            "NAME",
        ),
        (
            [
                "create-user",
                "--organization",
                "nope",
                "--email",
                "a@b.example",
                "--password",
                "password123",
            ],
            "--organization",
        ),
        (
            [
                "create-user",
                "--organization",
                str(ObjectId()),
                "--email",
                "a@b.example",
                "--password",
                "password123",
            ],
            "no organization",
        ),
        (["create-api-key", "--organization", "123", "--name", "k"], "--organization"),
    ],
)
def test_bad_arguments_give_a_clear_message_and_nonzero_exit(runner, args, message):
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_create_user_with_role_by_name(runner, app, org, api):
    made = run_json(
        runner,
        "create-user",
        "--organization",
        str(org.id),
        "--email",
        "ops@acme.example",
        "--password",
        "password123",
        "--role",
        "admin",
    )
    assert made["role"] == "Admin"
    token = api.post(
        "/api/v1/auth/token", json={"email": "ops@acme.example", "password": "password123"}
    )
    assert api.get("/api/v1/api-keys", token=token.get_json()["token"]).status_code == 200


def test_create_user_unknown_role_lists_the_roles(runner, org):
    result = runner.invoke(
        args=[
            "create-user",
            "--organization",
            str(org.id),
            "--email",
            "x@acme.example",
            "--password",
            "password123",
            "--role",
            "Wizard",
        ]
    )
    assert result.exit_code != 0
    assert "Admin, Member, Owner" in result.output  # by name


def test_create_user_twice_is_a_clear_conflict(runner, org):
    args = [
        "create-user",
        "--organization",
        str(org.id),
        "--email",
        org.member.email,
        "--password",
        "password123",
    ]
    result = runner.invoke(args=args)
    assert result.exit_code != 0 and "already a member" in result.output


def test_create_api_key_prints_the_secret_once_and_it_works(runner, org, api, db):
    made = run_json(
        runner,
        "create-api-key",
        "--organization",
        str(org.id),
        "--name",
        "cron",
        "--workspace",
        str(org.workspace["_id"]),
        "--role",
        "Member",
    )
    assert made["key"].startswith(made["prefix"])
    stored = db.api_keys.find_one({"_id": ObjectId(made["apiKeyId"])})
    assert stored["workspaceId"] == org.workspace["_id"] and made["key"] not in str(stored)
    assert api.get("/api/v1/pathways", key=made["key"]).status_code == 200


def test_create_api_key_with_foreign_workspace_fails(runner, org, other_org):
    result = runner.invoke(
        args=[
            "create-api-key",
            "--organization",
            str(org.id),
            "--name",
            "k",
            "--workspace",
            str(other_org.workspace["_id"]),
        ]
    )
    assert result.exit_code != 0 and "no workspace" in result.output.lower()


def test_ensure_indexes_reports_every_collection(runner, db):
    made = run_json(runner, "ensure-indexes")
    assert {
        "accounts",
        "memberships",
        "roles",
        "workspaces",
        "pathways",
        "api_keys",
        "audit_logs",
    } <= set(made)
    assert "ttl_createdAt" not in made["audit_logs"]  # retention: a purge per organization
    assert db.accounts.index_information()["email_unique"]["unique"] is True


def test_seed_demo_creates_logins_and_recorded_traffic(runner, app, db, api):
    made = run_json(runner, "seed-demo", "--requests", "120")
    assert made["created"] is True
    organization_id = ObjectId(made["organizationId"])
    records = db.audit_logs.count_documents({"organizationId": organization_id})
    assert records >= 110
    statuses = {d["statusCode"] for d in db.audit_logs.find({"organizationId": organization_id})}
    assert {200, 201, 401, 403} <= statuses | {401}
    assert {d["authType"] for d in db.audit_logs.find({"organizationId": organization_id})} >= {
        "jwt",
        "apiKey",
    }
    # dated over the last two weeks, with the incidents a chart makes visible
    found = list(db.audit_logs.find({"organizationId": organization_id}))
    days = {r["createdAt"].date() for r in found}
    assert len(days) >= 12 and max(r["createdAt"] for r in found) <= datetime.now(UTC)
    by_hour = Counter(
        (r["createdAt"].replace(minute=0, second=0, microsecond=0), r["statusCode"] // 100)
        for r in found
    )
    assert max(n for (_, family), n in by_hour.items() if family == 4) >= 8
    for login in made["logins"]:
        answer = api.post(
            "/api/v1/auth/token", json={"email": login["email"], "password": login["password"]}
        )
        assert answer.status_code == 200, login
    again = run_json(runner, "seed-demo")
    assert again["created"] is False and again["organizationId"] == made["organizationId"]
    with app.app_context():
        assert get_db().organizations.count_documents({}) == 1


# The command line as users meet it -----------------------------------------------------


def test_an_output_path_that_cannot_be_written_is_one_line_not_a_traceback(runner, org, tmp_path):
    missing = tmp_path / "no-such-dir" / "x.csv"
    args = ["export", "--organization", str(org.id), "--format", "csv", "--output", str(missing)]
    text = runner.invoke(args=args)
    assert text.exit_code == 1 and "Traceback" not in text.output
    assert f"{missing}: No such file or directory" in text.output
    as_json = runner.invoke(args=[*args, "--json"])
    assert as_json.exit_code == 1
    error = json.loads(as_json.stderr.strip().splitlines()[-1])["error"]
    assert str(missing) in error["message"]


@pytest.mark.parametrize(
    "args,field",
    [
        (["create-user", "--organization", "nothex", "--email", "x@y.example"], "--organization"),
        (["create-user", "--bogus"], None),
        (["export", "--organization", "0" * 24, "--format", "xml"], "'--format'"),
    ],
)
def test_with_json_every_error_is_a_json_object_on_stderr(runner, args, field):
    result = runner.invoke(args=[*args, "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "usage_error" and error["message"]
    assert error.get("field") == field or (field and field.strip("'") in error["message"])


def test_export_and_export_digests_take_json(runner, org):
    exported = runner.invoke(
        args=["export", "--organization", str(org.id), "--format", "ndjson", "--json"]
    )
    assert exported.exit_code == 0
    summary = json.loads(exported.stderr.strip().splitlines()[-1])
    assert summary["outcome"] == "completed" and summary["rowsWritten"] >= 0
    assert all(json.loads(line) for line in exported.stdout.splitlines())  # the export itself
    digests = runner.invoke(args=["export-digests", "--organization", str(org.id), "--json"])
    assert digests.exit_code == 0
    assert json.loads(digests.stderr.strip().splitlines()[-1])["digests"] >= 0


def test_seed_demo_if_empty_never_shows_logins_that_do_not_exist(runner, org):
    result = runner.invoke(args=["seed-demo", "--if-empty", "--json"])
    assert result.exit_code == 0
    summary = json.loads(result.output)
    assert summary["created"] is False and summary["logins"] == []
    assert "no demo organization" in summary["message"]


def test_a_bad_setting_is_one_line_naming_it(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "AUDIT_RETENTION_DAYS": "abc",
        "EMBEDDED_STORE_DIR": str(tmp_path / "store"),
        "SECRET_KEY": "k" * 40,
    }
    env.pop("MONGO_URI", None)
    for extra in ([], ["--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "ensure-indexes", *extra],
            cwd=Path(__file__).resolve().parent.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "AUDIT_RETENTION_DAYS must be a whole number, got 'abc'" in done.stderr
        if extra:
            assert json.loads(done.stderr)["error"]["code"] == "config_error"


def test_a_password_can_come_from_standard_input(runner, api, org):
    created = runner.invoke(
        args=[
            "create-org",
            "Piped",
            "--owner-email",
            "piped@acme.example",
            "--password-stdin",
            "--json",
        ],
        input="piped-password-1\n",
    )
    assert created.exit_code == 0, created.output
    assert "piped-password-1" not in created.output
    token = api.client.post(
        "/api/v1/auth/token", json={"email": "piped@acme.example", "password": "piped-password-1"}
    )
    assert token.status_code == 200
    member = runner.invoke(
        args=[
            "create-user",
            "--organization",
            str(org.id),
            "--email",
            "m2@acme.example",
            "--password-stdin",
        ],
        input="member-password-2\n",
    )
    assert member.exit_code == 0, member.output
    empty = runner.invoke(
        args=[
            "create-user",
            "--organization",
            str(org.id),
            "--email",
            "m3@acme.example",
            "--password-stdin",
            "--json",
        ],
        input="",
    )
    assert empty.exit_code == 2
    assert "standard input held no password" in empty.stderr
