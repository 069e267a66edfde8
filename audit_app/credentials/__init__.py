"""Credentials: what a session, a JWT or an API key created dies with it."""
