"""Outbound network access (only through the SSRF guard)."""
