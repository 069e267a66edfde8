"""Integrity: the canonical form, the signed digests, the anchor, sealing, and retention."""
