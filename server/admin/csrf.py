"""CSRF protection for the review page's form posts.

Once logged in, the form token is an HMAC keyed by the page session's secret (the cookie's
value, never the API token), so it is bound to that one session, needs no state beyond the
session itself and reveals nothing about the secret. Before login
there is no session yet: the login form uses a double-submit cookie instead.
Both cookies are SameSite=Strict, which already stops cross-site posts in current browsers;
the tokens are the second lock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import TypeGuard

CSRF_FIELD = "csrf_token"
LOGIN_CSRF_COOKIE = "fakescope_login_csrf"
_SESSION_CSRF_CONTEXT = b"fakescope-admin-csrf/v1"
_LOGIN_CSRF_BYTES = 32
_LOGIN_CSRF_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def session_csrf_token(session_secret: str) -> str:
    """The CSRF token every form of a logged-in page carries."""
    return hmac.new(
        session_secret.encode("utf-8"), _SESSION_CSRF_CONTEXT, hashlib.sha256
    ).hexdigest()


def new_login_csrf_token() -> str:
    """A fresh random token for the login form and its cookie."""
    return secrets.token_urlsafe(_LOGIN_CSRF_BYTES)


def is_login_csrf_token(value: str | None) -> TypeGuard[str]:
    """Whether a cookie's value has the shape of a token new_login_csrf_token() issues.

    The form reuses such a cookie; anything else is replaced, not echoed back: beyond
    latin-1 the Set-Cookie header could not even be written (a 500 for the sign-in page).
    """
    return value is not None and _LOGIN_CSRF_RE.fullmatch(value) is not None


def csrf_matches(expected: str | None, presented: str | None) -> bool:
    """True only when both tokens are present, non-empty and equal (constant-time)."""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))
