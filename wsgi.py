"""The WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi``."""

import json
import sys

from audit_app import create_app
from audit_app.config import ConfigError

try:
    app = create_app()
except ConfigError as error:  # a bad setting: one line naming it, never a traceback
    if "--json" in sys.argv:
        message = {"error": {"code": "config_error", "message": str(error)}}
        sys.stderr.write(json.dumps(message) + "\n")
    else:
        sys.stderr.write(f"Error: {error}\n")
    raise SystemExit(2) from None
