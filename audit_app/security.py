"""Response headers that keep the pages from being framed, sniffed or made to run scripts.

The Content-Security-Policy allows scripts and styles only from this site (no inline
script, no ``unsafe-inline``): logged data is rendered as text, and even a mistake there
could not run a script.
"""

from flask import request

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def set_security_headers(response):
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/invitations/"):
        # the token is in the URL: no Referer may carry it anywhere, not even to this site
        response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "static":
        # tokens, key secrets, invitation links and tenant data: no cache may keep them
        response.headers.setdefault("Cache-Control", "no-store")
    return response
