"""Settings, read once from the environment when the app is built.

Every key is documented in the README. A setting given in ``test_config`` wins over the
environment, so tests never have to touch ``os.environ``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

DEFAULT_HEADER_ALLOWLIST = (
    "User-Agent",
    "Content-Type",
    "Content-Length",
    "Accept",
    "Accept-Language",
    "Origin",
    "Referer",
    "X-Request-Id",
    "X-Forwarded-For",
    "X-Workspace-Id",
)

DEFAULT_REDACT_KEYS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apiKey",
    "api_key",
    "authorization",
    "accessToken",
    "refreshToken",
    "idToken",
    "clientSecret",
    "privateKey",
    "creditCard",
    "cardNumber",
    "cvv",
    "cvc",
    "ssn",
    "cookie",
    "sessionId",
    "csrfToken",
    "passwort",
    "passphrase",
    "credential",
    "signature",
    "bearer",
    "jwt",
    "otp",
    "dsn",
)

# Matched only as a whole word of a key (``pass``, ``user_pass``, ``passWord``), never
# inside another word (``passenger``, ``author``, ``pinned``, ``inside``).
DEFAULT_REDACT_WORDS = ("pass", "pw", "pin", "auth", "sid", "cred")


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the app refuses to start."""


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _generated_once(instance_path: Path, name: str) -> str:
    """A random key for development, generated once and kept in ``instance/<name>`` (0600)."""
    key_file = instance_path / name
    if key_file.exists():
        return key_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _write_concern_setting() -> str:
    value = os.environ.get("AUDIT_WRITE_CONCERN", "").strip() or "majority"
    if value != "majority" and not value.isdigit():
        raise ConfigError(
            f"AUDIT_WRITE_CONCERN must be 'majority' or a number of members, got {value!r}"
        )
    return value


WRITE_MODES = ("sync", "journal")


def _write_mode_setting() -> str | None:
    """``sync`` or ``journal``; unset: chosen by the store (``audit_app.write_mode``)."""
    value = os.environ.get("AUDIT_WRITE_MODE", "").strip().lower()
    if value and value not in WRITE_MODES:
        raise ConfigError(f"AUDIT_WRITE_MODE must be sync or journal, got {value!r}")
    return value or None


def load_settings(instance_path: Path) -> dict:
    """Read every setting from the environment, failing fast on bad values."""
    env = os.environ.get("APP_ENV", "development").strip().lower()
    if env not in ("development", "production", "testing"):
        raise ConfigError(f"APP_ENV must be development, production or testing, got {env!r}")
    secret_key = os.environ.get("SECRET_KEY", "").strip()
    if not secret_key:
        if env == "production":
            raise ConfigError("SECRET_KEY must be set when APP_ENV=production")
        secret_key = _generated_once(instance_path, "secret_key")
    if env == "production" and len(secret_key) < 32:
        raise ConfigError("SECRET_KEY must have at least 32 characters (it signs JWTs with HS256)")
    retention_days = _env_int("AUDIT_RETENTION_DAYS", 400, minimum=1)
    signing_key = os.environ.get("AUDIT_SIGNING_KEY", "").strip()
    if not signing_key:
        if env == "production":
            raise ConfigError(
                "AUDIT_SIGNING_KEY must be set when APP_ENV=production "
                "(it signs the audit digests; keep it outside the database)"
            )
        signing_key = _generated_once(instance_path, "audit_signing_key")  # never in the DB
    mongo_uri = os.environ.get("MONGO_URI", "").strip() or None
    settings = {
        "APP_ENV": env,
        "SECRET_KEY": secret_key,
        "MONGO_URI": mongo_uri,
        "AUDIT_MONGO_URI": os.environ.get("AUDIT_MONGO_URI", "").strip() or None,
        "MONGO_DB_NAME": os.environ.get("MONGO_DB_NAME", "").strip() or None,
        "EMBEDDED_STORE_DIR": os.environ.get("EMBEDDED_STORE_DIR", "").strip()
        or str(instance_path / "store"),
        "JWT_EXPIRES_SECONDS": _env_int("JWT_EXPIRES_SECONDS", 3600, minimum=60),
        "SESSION_LIFETIME_HOURS": _env_int("SESSION_LIFETIME_HOURS", 12, minimum=1),
        "INVITATION_LIFETIME_HOURS": _env_int("INVITATION_LIFETIME_HOURS", 168, minimum=1),
        "PASSWORD_HASH_PROFILE": os.environ.get("PASSWORD_HASH_PROFILE", "strong"),
        "SESSION_COOKIE_SECURE": _env_bool("SESSION_COOKIE_SECURE", env == "production"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "MAX_CONTENT_LENGTH": _env_int("MAX_CONTENT_LENGTH", 4 * 1024 * 1024, minimum=1024),
        "TRUSTED_PROXY_COUNT": _env_int("TRUSTED_PROXY_COUNT", 0),
        "AUDIT_ENABLED": _env_bool("AUDIT_ENABLED", True),
        "AUDIT_HEADER_ALLOWLIST": _env_list("AUDIT_HEADER_ALLOWLIST", DEFAULT_HEADER_ALLOWLIST),
        "AUDIT_REDACT_KEYS": _env_list("AUDIT_REDACT_KEYS", DEFAULT_REDACT_KEYS),
        "AUDIT_REDACT_WORDS": _env_list("AUDIT_REDACT_WORDS", DEFAULT_REDACT_WORDS),
        "AUDIT_MAX_BODY_BYTES": _env_int("AUDIT_MAX_BODY_BYTES", 64 * 1024, minimum=256),
        "AUDIT_WRITE_TIMEOUT_MS": _env_int("AUDIT_WRITE_TIMEOUT_MS", 2000, minimum=50),
        "AUDIT_WRITE_CONCERN": _write_concern_setting(),
        "AUDIT_WRITE_JOURNAL": _env_bool("AUDIT_WRITE_JOURNAL", True),
        "AUDIT_SPOOL_DIR": os.environ.get("AUDIT_SPOOL_DIR", "").strip()
        or str(instance_path / "audit-spool"),
        "AUDIT_REPLAY_INTERVAL": _env_int("AUDIT_REPLAY_INTERVAL", 30),
        # where a request hands its record off (sync: the store itself; journal: a local
        # file that a background writer folds into the store in batches)
        "AUDIT_WRITE_MODE": _write_mode_setting(),
        "AUDIT_JOURNAL_DIR": os.environ.get("AUDIT_JOURNAL_DIR", "").strip()
        or str(instance_path / "audit-journal"),
        "AUDIT_FOLD_INTERVAL_MS": _env_int("AUDIT_FOLD_INTERVAL_MS", 200, minimum=10),
        "AUDIT_JOURNAL_MAX_BYTES": _env_int(
            "AUDIT_JOURNAL_MAX_BYTES", 64 * 1024 * 1024, minimum=1024 * 1024
        ),
        # an organization's own retention is within the bounds; until it sets one, the default
        "AUDIT_RETENTION_DAYS": retention_days,
        # seconds between adding each process's activity counts to the store (the chart's)
        "AUDIT_COUNTS_INTERVAL": _env_int("AUDIT_COUNTS_INTERVAL", 5),
        # the retention purge's interval in seconds; 0: only by 'flask purge'
        "AUDIT_PURGE_INTERVAL": _env_int("AUDIT_PURGE_INTERVAL", 3600),
        "AUDIT_RETENTION_MIN_DAYS": _env_int(
            "AUDIT_RETENTION_MIN_DAYS", min(30, retention_days), minimum=1
        ),
        "AUDIT_RETENTION_MAX_DAYS": _env_int(
            "AUDIT_RETENTION_MAX_DAYS", max(3650, retention_days), minimum=1
        ),
        # days a shortened retention waits before it deletes anything (cancellable until
        # then); 0: at once. At most AUDIT_RETENTION_MAX_DAYS (audit.retention.check_bounds)
        "AUDIT_RETENTION_GRACE_DAYS": _env_int("AUDIT_RETENTION_GRACE_DAYS", 7, minimum=0),
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "").strip() or None,
        "RATELIMIT_LOGIN": os.environ.get("RATELIMIT_LOGIN", "").strip()
        or "10 per minute; 100 per hour",
        "RATELIMIT_ENABLED": _env_bool("RATELIMIT_ENABLED", True),
        # the platform's support staff: lookups and grant requests per staff member
        "RATELIMIT_STAFF": os.environ.get("RATELIMIT_STAFF", "").strip()
        or "60 per minute; 600 per hour",
        "STAFF_SESSION_HOURS": _env_int("STAFF_SESSION_HOURS", 8, minimum=1),
        "STAFF_GRANT_MINUTES": _env_int("STAFF_GRANT_MINUTES", 60, minimum=1),
        # a broken limit store must not lock everyone out: count nothing and log it
        "RATELIMIT_SWALLOW_ERRORS": True,
        "AUDIT_SIGNING_KEY": signing_key,
        "AUDIT_SEAL_INTERVAL": _env_int("AUDIT_SEAL_INTERVAL", 60, minimum=1),
        "AUDIT_SEAL_DELAY": _env_int("AUDIT_SEAL_DELAY", 120, minimum=0),
        "AUDIT_SEAL_IN_BACKGROUND": _env_bool("AUDIT_SEAL_IN_BACKGROUND", True),
        "AUDIT_VERIFY_INTERVAL": _env_int("AUDIT_VERIFY_INTERVAL", 86400, minimum=60),
        "AUDIT_ANCHOR_DIR": os.environ.get("AUDIT_ANCHOR_DIR", "").strip()
        or str(instance_path / "audit-anchor"),
        # the verifiable log (docs/integrity.md): checkpoints name <origin>/<organizationId>
        # and are signed with Ed25519: AUDIT_CHECKPOINT_KEY (a note key PRIVATE+KEY+...), or
        # a key derived from AUDIT_SIGNING_KEY; both stay outside the database
        "AUDIT_LOG_ORIGIN": os.environ.get("AUDIT_LOG_ORIGIN", "").strip() or "audit-log.localhost",
        "AUDIT_CHECKPOINT_KEY": os.environ.get("AUDIT_CHECKPOINT_KEY", "").strip() or None,
        # an RFC 3161 timestamp authority for each checkpoint (off when unset), and the PEM
        # roots its answers must chain to (docs/integrity.md, "Timestamps")
        "AUDIT_TSA_URL": os.environ.get("AUDIT_TSA_URL", "").strip() or None,
        "AUDIT_TSA_CA_FILE": os.environ.get("AUDIT_TSA_CA_FILE", "").strip() or None,
        "AUDIT_QUERY_TIMEOUT_MS": _env_int("AUDIT_QUERY_TIMEOUT_MS", 5000, minimum=100),
        "AUDIT_EXPORT_TIMEOUT_MS": _env_int("AUDIT_EXPORT_TIMEOUT_MS", 120000, minimum=100),
        "AUDIT_HISTOGRAM_MAX_RECORDS": _env_int("AUDIT_HISTOGRAM_MAX_RECORDS", 20000, minimum=100),
        "AUDIT_ENSURE_INDEXES_ON_START": _env_bool("AUDIT_ENSURE_INDEXES_ON_START", True),
        # log streams (docs/streams.md); interval 0: streams are delivered by no process
        "AUDIT_STREAM_INTERVAL": _env_int("AUDIT_STREAM_INTERVAL", 5),
        "AUDIT_STREAM_SETTLE_SECONDS": _env_int("AUDIT_STREAM_SETTLE_SECONDS", 10),
        "AUDIT_STREAM_BATCH": _env_int("AUDIT_STREAM_BATCH", 500, minimum=1),
        # bytes per delivery, under the 1 MB that nginx and many receivers take by default
        "AUDIT_STREAM_MAX_BATCH_BYTES": _env_int(
            "AUDIT_STREAM_MAX_BATCH_BYTES", 512 * 1024, minimum=4096
        ),
        "AUDIT_STREAM_ALLOW_PRIVATE": _env_bool("AUDIT_STREAM_ALLOW_PRIVATE", False),
        "AUDIT_STREAM_KEY": os.environ.get("AUDIT_STREAM_KEY", "").strip() or None,
        "AUDIT_STREAM_CA_FILE": os.environ.get("AUDIT_STREAM_CA_FILE", "").strip() or None,
    }
    return settings
