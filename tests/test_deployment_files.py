"""docker compose and the Dockerfile, checked by reading them (no Docker engine runs here)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_every_app_volume_exists_in_the_image_owned_by_the_app_user():
    """A named volume mounted where the image has no directory is created root-owned, and
    the app (uid 10001) could not write its spool or its anchor."""
    app = _compose()["services"]["app"]
    mounts = [volume.split(":", 1)[1] for volume in app["volumes"]]
    dockerfile = _dockerfile()
    created = set(re.findall(r"mkdir -p ([^\n&\\]+)", dockerfile)[0].split())
    assert set(mounts) <= created, (mounts, created)
    assert "chown -R app:app /app/instance" in dockerfile and "USER app" in dockerfile
    assert all(mount.startswith("/app/instance/") for mount in mounts)


def test_the_spool_and_the_anchor_live_on_volumes():
    compose = _compose()
    app = compose["services"]["app"]
    environment = app["environment"]
    mounts = {volume.split(":", 1)[1]: volume.split(":", 1)[0] for volume in app["volumes"]}
    for setting in ("AUDIT_SPOOL_DIR", "AUDIT_ANCHOR_DIR"):
        assert environment[setting] in mounts, setting
        assert mounts[environment[setting]] in compose["volumes"]
    assert app["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(app["healthcheck"]["test"])


def test_mongodb_runs_as_a_one_member_replica_set_the_app_connects_to():
    """Majority writes, the majority read of replay and failover need a replica set."""
    compose = _compose()
    mongo = compose["services"]["mongo"]
    command = mongo["command"]
    replica_set = command[command.index("--replSet") + 1]
    check = " ".join(mongo["healthcheck"]["test"])
    assert f"_id: '{replica_set}'" in check and "host: 'mongo:27017'" in check
    assert "isWritablePrimary" in check  # healthy only once there is a primary
    for name in ("app", "indexes"):
        uri = compose["services"][name]["environment"]["MONGO_URI"]
        assert uri.startswith("mongodb://mongo:27017/") and f"replicaSet={replica_set}" in uri


def test_indexes_are_built_by_a_one_shot_step_the_app_waits_for():
    compose = _compose()
    indexes, app = compose["services"]["indexes"], compose["services"]["app"]
    assert indexes["command"] == ["flask", "--app", "wsgi", "ensure-indexes"]
    assert indexes["restart"] == "no"
    assert indexes["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert app["depends_on"]["indexes"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["mongo"]["condition"] == "service_healthy"
    # the step runs with the app's settings (same database, same keys)
    shared = {k: v for k, v in indexes["environment"].items() if k in app["environment"]}
    assert shared == app["environment"]
    assert indexes.get("build") == app.get("build")
