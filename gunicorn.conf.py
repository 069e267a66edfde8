"""gunicorn settings for `make run` and the container; each can be overridden by the CLI."""

import os

bind = os.environ.get("BIND", f"127.0.0.1:{os.environ.get('PORT', '5000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 60
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
# the access log goes through the audit log's redaction: no secret in a query, a path or a
# Referer is written to disk (audit_app/accesslog.py)
logger_class = "audit_app.accesslog.RedactingLogger"
# The app is built in each worker, after the fork: no client, thread or file handle is shared.
preload_app = False


def post_worker_init(worker):
    """Start the worker's background tasks (spool replay, sealing, purge) at once."""
    from audit_app.background import EXTENSION_KEY

    runner = worker.wsgi.extensions.get(EXTENSION_KEY) if hasattr(worker, "wsgi") else None
    if runner is not None:
        runner.ensure_started()
