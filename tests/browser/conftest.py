"""A live server on 127.0.0.1 and headless Debian Chromium driven by Playwright.

Chromium comes from Debian's package (`apt-get install -y chromium`); `.ci/run` installs
it. Without it these tests are skipped on a developer machine and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
import threading

import mongomock
import pytest
from werkzeug.serving import make_server

from audit_app import create_app
from audit_app.db import get_db
from audit_app.demo import DEMO_LOGINS, seed_demo

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium_path():
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The app with the demo organization, served on a free port of 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("live")
    app = create_app(
        {
            "SECRET_KEY": "browser-tests-secret-key-0123456789-0123456789-0123456789",
            "MONGO_CLIENT": mongomock.MongoClient(tz_aware=True),
            "PASSWORD_HASH_PROFILE": "fast",
            "AUDIT_SPOOL_DIR": str(tmp / "spool"),
            "AUDIT_REPLAY_INTERVAL": 0,
            "RATELIMIT_LOGIN": "1000 per minute",  # many logins here; limits have their own tests
            "INSTANCE_PATH": str(tmp),
        }
    )
    summary = seed_demo(app, 160)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with app.app_context():
        from audit_app.organizations import repository as orgs

        people = {
            login["role"].lower(): orgs.find_account_by_email(get_db(), login["email"])
            for login in DEMO_LOGINS
        }
    yield {
        "app": app,
        "url": f"http://127.0.0.1:{server.server_port}",
        "summary": summary,
        "people": people,
        "logins": {login["role"].lower(): login for login in DEMO_LOGINS},
    }
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def page(browser):
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, locale="en-GB", timezone_id="Europe/Paris"
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def log_in(page, live, role: str) -> None:
    login = live["logins"][role]
    page.goto(f"{live['url']}/login")
    page.get_by_label("Email").fill(login["email"])
    page.get_by_label("Password").fill(login["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live['url']}/")
