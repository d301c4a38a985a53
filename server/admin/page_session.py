"""The review page's login session: an HttpOnly, SameSite=Strict cookie holding the token.

The page never contains the token; its forms carry only a CSRF token derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie

from server.admin.auth import (
    SESSION_COOKIE,
    AuthFailedError,
    AuthRateLimitedError,
    authenticate_secret,
)
from server.admin.csrf import LOGIN_CSRF_COOKIE, session_csrf_token
from server.admin.principal import Principal
from server.admin.roles import Role, role_allows

COOKIE_PATH = "/admin"


@dataclass(frozen=True)
class PageSession:
    principal: Principal
    csrf_token: str


@dataclass(frozen=True)
class PageAuthOutcome:
    """A logged-in session, or why there is none (``error`` is for the login page)."""

    session: PageSession | None
    error: str | None = None
    status_code: int = 200
    stale_cookie: bool = False


def _secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


def session_cookie(request: Request[Any, Any, Any], secret: str) -> Cookie:
    # No max_age: a browser-session cookie, gone when the browser closes.
    return _page_cookie(request, SESSION_COOKIE, secret)


def login_csrf_cookie(request: Request[Any, Any, Any], token: str) -> Cookie:
    return _page_cookie(request, LOGIN_CSRF_COOKIE, token)


def _page_cookie(request: Request[Any, Any, Any], key: str, value: str) -> Cookie:
    """HttpOnly, SameSite=Strict, scoped to the review page, Secure over HTTPS."""
    return Cookie(
        key=key,
        value=value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def expired_cookie(key: str) -> Cookie:
    return Cookie(key=key, value="", path=COOKIE_PATH, max_age=0, httponly=True, samesite="strict")


async def login_with_secret(request: Request[Any, Any, Any], secret: str) -> PageAuthOutcome:
    """Check a token for the page: it must be valid and at least a reviewer's."""
    try:
        principal = await authenticate_secret(request, secret)
    except AuthRateLimitedError as exc:
        return PageAuthOutcome(None, str(exc), 429)
    except AuthFailedError:
        return PageAuthOutcome(None, "That token is not valid (wrong or revoked).", 401, True)
    if not role_allows(principal.role, Role.REVIEWER):
        return PageAuthOutcome(
            None,
            f"This token has the {principal.role.value} role; "
            "only reviewers and admins may review.",
            403,
            True,
        )
    return PageAuthOutcome(PageSession(principal, session_csrf_token(secret)))


async def current_page_session(request: Request[Any, Any, Any]) -> PageAuthOutcome:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return PageAuthOutcome(None)
    outcome = await login_with_secret(request, secret)
    if outcome.session is None and outcome.stale_cookie:
        return PageAuthOutcome(
            None, "Your session ended (the token was revoked). Sign in again.", 401, True
        )
    return outcome
