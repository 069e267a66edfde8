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
