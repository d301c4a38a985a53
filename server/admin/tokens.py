"""API token secrets: generation, hashing for storage, constant-time matching.

Only the SHA-256 of a secret is stored; the secret itself is shown once, at creation.
A 256-bit random secret needs no slow KDF: guessing is infeasible and the hash is one-way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "fs_"  # noqa: S105 - a public marker, not a secret
_SECRET_BYTES = 32
_DISPLAY_CHARS = 8  # of the secret, after TOKEN_PREFIX: enough to tell tokens apart in a list


def generate_token() -> str:
    """A new random token secret, e.g. ``fs_Q2x...`` (URL-safe, 46 characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def hash_token(secret: str) -> str:
    """The 64-hex-character SHA-256 of a secret, as stored in ``api_tokens.token_hash``."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def display_prefix(secret: str) -> str:
    """The non-secret start of a token shown in listings (``fs_Q2xAbC9z``)."""
    return secret[: len(TOKEN_PREFIX) + _DISPLAY_CHARS]


def hashes_match(stored_hash: str, secret: str) -> bool:
    """Compare a stored hash with a presented secret in constant time."""
    return hmac.compare_digest(stored_hash.encode("ascii"), hash_token(secret).encode("ascii"))
