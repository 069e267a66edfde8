"""A full disk under the embedded store: a 503 that says so, and the audit record spooled.

The child process limits the size of the files it may write (``RLIMIT_FSIZE``) just after
its setup, so the store's SQLite files cannot grow while the small spool file still can:
a full disk as SQLite meets it, without filling this machine's disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from audit_app.audit.capture.spool import loads

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, signal, sys
from audit_app import create_app
from tests.factories import make_org

base = sys.argv[1]
app = create_app({
    "TESTING": True, "SECRET_KEY": "full-disk-test-secret-0123456789abcdef",
    "PASSWORD_HASH_PROFILE": "fast", "EMBEDDED_STORE_DIR": base + "/store",
    "AUDIT_SPOOL_DIR": base + "/spool", "INSTANCE_PATH": base + "/instance",
    "AUDIT_REPLAY_INTERVAL": 0, "RATELIMIT_STORAGE_URI": "memory://",
    "AUDIT_SEAL_IN_BACKGROUND": False, "AUDIT_PURGE_INTERVAL": 0,
})
org = make_org(app, "Full")
client = app.test_client()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not the process
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
answer = client.post(
    "/api/v1/workspaces", json={"name": "Overflow"}, headers={"X-API-Key": org.api_key}
)
page = client.get("/login")
print(json.dumps({"status": answer.status_code, "body": answer.get_json(),
                  "page": page.status_code, "org": str(org.id)}))
"""


def test_a_full_disk_is_a_503_that_says_so_and_the_record_is_spooled(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 503
    error = result["body"]["error"]
    assert error["code"] == "service_unavailable" and "disk is full" in error["message"]
    assert "Traceback" not in done.stderr or "Embedded store failed" in done.stderr
    spooled = [
        loads(line)
        for path in (tmp_path / "spool").glob("*.ndjson")
        for line in path.read_text().splitlines()
    ]
    mine = [r for r in spooled if r.get("path") == "/api/v1/workspaces"]
    assert len(mine) == 1 and mine[0]["statusCode"] == 503
    assert str(mine[0]["organizationId"]) == result["org"]  # attributed, not anonymous
    assert mine[0]["authType"] == "apiKey"
