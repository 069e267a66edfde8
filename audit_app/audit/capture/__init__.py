"""Capture: request hooks, record builder, redaction, and the write path (writer, journal,
spool)."""
