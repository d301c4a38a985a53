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
import secrets

CSRF_FIELD = "csrf_token"
LOGIN_CSRF_COOKIE = "fakescope_login_csrf"
_SESSION_CSRF_CONTEXT = b"fakescope-admin-csrf/v1"


def session_csrf_token(session_secret: str) -> str:
    """The CSRF token every form of a logged-in page carries."""
    return hmac.new(
        session_secret.encode("utf-8"), _SESSION_CSRF_CONTEXT, hashlib.sha256
    ).hexdigest()


def new_login_csrf_token() -> str:
    """A fresh random token for the login form and its cookie."""
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, presented: str | None) -> bool:
    """True only when both tokens are present, non-empty and equal (constant-time)."""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))
