"""The Organization Audit Log: a multi-tenant Flask API whose every request is recorded."""

from __future__ import annotations

import atexit
import logging
import warnings
import weakref
from pathlib import Path

from flask import Blueprint, Flask
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.middleware.proxy_fix import ProxyFix

from . import cli, errors
from .api_keys.api import bp as api_keys_bp
from .audit.actions import label as action_label
from .audit.actions import matched_text, record_label, sentence, target_text
from .audit.api import bp as audit_logs_bp
from .audit.capture.hooks import WRITER_KEY, end_request, record_response, start_request
from .audit.capture.journal import Journal
from .audit.capture.spool import Spool
from .audit.capture.writer import AuditWriter, write_mode
from .audit.integrity.anchor import Anchor
from .audit.integrity.retention import background_purger
from .audit.integrity.retention import check_bounds as check_retention_bounds
from .audit.integrity.sealing import background_sealer, timestamp_authority
from .audit.store.repository import audit_write_concern
from .auth.api import bp as auth_bp
from .auth.principal import _LoginRedirect, load_principal, login_redirect
from .background import EXTENSION_KEY as BACKGROUND_KEY
from .background import BackgroundRunner
from .config import load_settings
from .db import init_stores, stores
from .extensions import csrf, login_manager
from .health import bp as health_bp
from .ids import auth_label, iso
from .indexes import ensure_indexes_on_start
from .openapi import bp as openapi_bp
from .organizations.api import invitations_bp, members_bp, organization_bp, roles_bp
from .ratelimit import default_storage_uri, limiter
from .security import set_security_headers
from .staff.api import bp as staff_api_bp
from .staff.api import requests_bp as staff_requests_bp
from .staff.principal import StaffLoginRedirect, load_staff, staff_login_redirect
from .staff.views import bp as staff_pages_bp
from .streams.api import bp as audit_streams_bp
from .streams.delivery import background_deliverer
from .streams.secrets import check_key as check_stream_key
from .web import create_web_blueprint, navigation_context, session
from .web.times import times_in, times_shown, when
from .workspaces.api import pathways_bp, workspaces_bp

# `python -m audit_app.verifier`: the package's import already loads the verifier (the app
# checks proofs with it too); running it as the main module is still the same code
warnings.filterwarnings(
    "ignore",
    message="'audit_app.verifier' found in sys.modules",
    category=RuntimeWarning,
)

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings, stores, extensions, hooks, blueprints and commands."""
    app = Flask(
        __name__,
        instance_path=str(ROOT / "instance"),
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    instance = Path((test_config or {}).get("INSTANCE_PATH", app.instance_path))
    app.config.from_mapping(load_settings(instance))
    if test_config:
        app.config.from_mapping(test_config)
    _configure_logging(app)
    check_stream_key(app.config)
    check_retention_bounds(app.config)
    timestamp_authority(app)  # AUDIT_TSA_URL and its roots: refused at start, not at a seal
    init_stores(app)
    register_extensions(app)
    register_hooks(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    if app.config["AUDIT_ENSURE_INDEXES_ON_START"]:
        ensure_indexes_on_start(app)
    return app


def _configure_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    app.logger.setLevel(logging.INFO)


def register_extensions(app: Flask) -> None:
    if not app.config.get("RATELIMIT_STORAGE_URI"):
        app.config["RATELIMIT_STORAGE_URI"] = default_storage_uri(
            app.config["MONGO_URI"], app.config["EMBEDDED_STORE_DIR"] + "-ratelimit"
        )
    if app.config.get("MONGO_CLIENT") is not None and app.config[
        "RATELIMIT_STORAGE_URI"
    ].startswith("sqlite"):
        app.config["RATELIMIT_STORAGE_URI"] = "memory://"  # an injected test store
    if app.config["RATELIMIT_STORAGE_URI"].startswith("mongodb"):
        # a login must not hang on the limit store: fail fast (and open, see security.md);
        # the counters live in the app's own database (a user scoped to it can write there)
        app.config.setdefault(
            "RATELIMIT_STORAGE_OPTIONS",
            {
                "database_name": stores(app)["main"].db_name,
                "serverSelectionTimeoutMS": 2000,
                "connectTimeoutMS": 2000,
                "socketTimeoutMS": 2000,
                "appname": "organization-audit-log-ratelimit",
            },
        )
    limiter.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.session_protection = "strong"
    if app.config["TRUSTED_PROXY_COUNT"]:
        count = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # Flask's documented way
            app.wsgi_app, x_for=count, x_proto=count, x_host=count
        )


def _flush_at_exit(writer_ref: weakref.ref[AuditWriter]) -> None:
    writer = writer_ref()
    if writer is None:
        return
    try:
        writer.fold(wait=True)  # what this process answered, stored before it goes
    except Exception as error:  # noqa: BLE001 - at exit: say it, never raise
        logging.getLogger(__name__).warning("Audit journal not folded at exit: %s", error)
    try:
        writer.flush_counts()
    except Exception as error:  # noqa: BLE001 - at exit: say it, never raise
        logging.getLogger(__name__).warning("Activity counts not flushed at exit: %s", error)


def register_hooks(app: Flask) -> None:
    """Audit first (request id, clock), then the principal every view and record relies on."""
    runner = app.extensions[BACKGROUND_KEY] = BackgroundRunner()
    if app.config["AUDIT_ENABLED"]:
        store = stores(app)["audit"]
        mode = write_mode(app.config.get("AUDIT_WRITE_MODE"), store.kind)
        writer = app.extensions[WRITER_KEY] = AuditWriter(
            store,
            Spool(app.config["AUDIT_SPOOL_DIR"]),
            timeout_ms=app.config["AUDIT_WRITE_TIMEOUT_MS"],
            write_concern=audit_write_concern(
                app.config["AUDIT_WRITE_CONCERN"], app.config["AUDIT_WRITE_JOURNAL"]
            ),
            anchor=Anchor(app.config["AUDIT_ANCHOR_DIR"]),  # the replay ledger
            # one folder a store: two stores given one directory never fold into each other
            journal=Journal(
                Path(app.config["AUDIT_JOURNAL_DIR"]) / store.identity(),
                max_bytes=app.config["AUDIT_JOURNAL_MAX_BYTES"],
            )
            if mode == "journal"
            else None,
        )
        if mode == "journal":  # a lane of its own: never behind a seal or a purge
            interval = app.config["AUDIT_FOLD_INTERVAL_MS"] / 1000
            runner.add("fold", interval, writer.fold_in_background, lane="journal")
        if app.config["AUDIT_REPLAY_INTERVAL"] > 0:
            runner.add("replay", app.config["AUDIT_REPLAY_INTERVAL"], writer.replay_if_pending)
        if app.config["AUDIT_COUNTS_INTERVAL"] > 0:
            runner.add("counts", app.config["AUDIT_COUNTS_INTERVAL"], writer.flush_counts)
        atexit.register(_flush_at_exit, weakref.ref(writer))
        if app.config["AUDIT_PURGE_INTERVAL"] > 0:
            runner.add("purge", *background_purger(app))
        if app.config["AUDIT_SEAL_IN_BACKGROUND"]:
            runner.add("seal", *background_sealer(app))
        if app.config["AUDIT_STREAM_INTERVAL"] > 0:  # its own thread: a slow SIEM waits alone
            runner.add("streams", *background_deliverer(app), lane="streams")
    else:
        app.logger.warning("AUDIT_ENABLED=false: REQUESTS ARE NOT BEING RECORDED IN THE AUDIT LOG")
    # first of all before_request hooks, so that a request refused by another one (CSRF
    # protection, a rate limit) still has its clock, its id, its principal and its record
    app.before_request_funcs.setdefault(None, [])[:0] = [start_request, load_principal, load_staff]
    app.after_request(set_security_headers)
    app.after_request(record_response)
    app.teardown_request(end_request)
    app.context_processor(navigation_context)
    app.add_template_filter(iso, "iso")  # for attributes; text shows times with ``when``
    app.add_template_filter(when, "when")
    # a time to the minute: the one <time> element too, whichever template asks for it
    app.add_template_filter(lambda value: when(value, "minute"), "readable")
    app.add_template_filter(times_in, "times_in")
    app.add_template_global(times_shown, "times_shown")
    app.add_template_filter(auth_label, "auth_label")
    app.add_template_filter(action_label, "action_label")
    app.add_template_filter(record_label, "record_label")
    app.add_template_filter(sentence, "record_sentence")
    app.add_template_filter(target_text, "target_text")
    app.add_template_filter(matched_text, "matched_text")


def register_blueprints(app: Flask) -> None:
    api = Blueprint("api", __name__, url_prefix="/api/v1")
    for child in (
        auth_bp,
        organization_bp,
        workspaces_bp,
        pathways_bp,
        members_bp,
        invitations_bp,
        roles_bp,
        api_keys_bp,
        audit_logs_bp,
        audit_streams_bp,
        staff_api_bp,
        staff_requests_bp,
        openapi_bp,
    ):
        api.register_blueprint(child)
        # The API authenticates every request by header, never by cookie. flask-wtf looks up
        # the innermost blueprint, so each child is exempted, not just the parent.
        csrf.exempt(child)
    csrf.exempt(api)
    app.register_blueprint(api)
    app.register_blueprint(health_bp)
    app.register_blueprint(create_web_blueprint())
    app.register_blueprint(staff_pages_bp)  # /staff: the platform's support staff


def register_errorhandlers(app: Flask) -> None:
    errors.register_errorhandlers(app)
    app.register_error_handler(_LoginRedirect, login_redirect)
    app.register_error_handler(StaffLoginRedirect, staff_login_redirect)
    app.register_error_handler(CSRFError, session.csrf_refused)  # a session that ended
    app.register_error_handler(RateLimitExceeded, session.login_limited)


def register_commands(app: Flask) -> None:
    cli.register(app)
