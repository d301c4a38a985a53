"""The review page's login session: a server-side session named by an HttpOnly cookie.

Signing in with an API token opens a session (server/admin/session_store.py); the
HttpOnly, SameSite=Strict cookie holds only that session's random secret, never the token.
The page never contains either; its forms carry a CSRF token derived from the session secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie

from server.admin.audit import record_audit
from server.admin.auth import (
    SESSION_COOKIE,
    AuthFailedError,
    AuthRateLimitedError,
    authenticate_secret,
)
from server.admin.context import database, retried, settings_of
from server.admin.csrf import LOGIN_CSRF_COOKIE, session_csrf_token
from server.admin.principal import Principal
from server.admin.roles import Role, role_allows
from server.admin.session_store import (
    FoundSession,
    SessionEndedError,
    SessionLifetime,
    end_session,
    find_session,
    new_session_secret,
    open_session,
    touch_session,
)
from server.db.database import Database
from server.limits.fail_open import DATABASE_ERRORS
from server.settings import Settings

COOKIE_PATH = "/admin"
_OUTAGE_STATE_KEY = "admin_session_outage"  # (secret, the database error that outlasted it)
_ENDED = {
    "expired": "Your session expired. Sign in again.",
    "revoked": "Your session ended (the token was revoked). Sign in again.",
    "unknown": (
        "Your session has ended (signed out, expired, or its token was revoked). Sign in again."
    ),
}


@dataclass(frozen=True)
class PageSession:
    principal: Principal
    csrf_token: str


@dataclass(frozen=True)
class PageAuthOutcome:
    """A logged-in session, or why there is none (``error`` is for the login page).

    ``new_cookie`` is the secret of a session just opened, for the cookie alone.
    """

    session: PageSession | None
    error: str | None = None
    status_code: int = 200
    stale_cookie: bool = False
    new_cookie: str | None = None


def _secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


def session_cookie(request: Request[Any, Any, Any], session_secret: str) -> Cookie:
    # No max_age: a browser-session cookie, gone when the browser closes; the server ends
    # the session itself after its idle timeout or lifetime, whichever comes first.
    return _page_cookie(request, SESSION_COOKIE, session_secret)


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


def session_lifetime(request: Request[Any, Any, Any]) -> SessionLifetime:
    """The idle timeout and absolute lifetime from the settings (their defaults without)."""
    settings = settings_of(request.app) or Settings()
    return SessionLifetime(
        idle=timedelta(hours=settings.admin_session_idle_hours),
        absolute=timedelta(days=settings.admin_session_max_days),
    )


def _bootstrap_token(request: Request[Any, Any, Any]) -> str | None:
    settings = settings_of(request.app)
    return settings.admin_token if settings else None


async def login_with_secret(request: Request[Any, Any, Any], secret: str) -> PageAuthOutcome:
    """Check a token for the page (valid, at least a reviewer's) and open a session."""
    try:
        principal = await authenticate_secret(request, secret)
    except AuthRateLimitedError as exc:
        return PageAuthOutcome(None, str(exc), 429)
    except AuthFailedError:
        return PageAuthOutcome(None, "That token is not valid (wrong or revoked).", 401)
    if not role_allows(principal.role, Role.REVIEWER):
        return PageAuthOutcome(
            None,
            f"This token has the {principal.role.value} role; "
            "only reviewers and admins may review.",
            403,
        )
    session_secret = new_session_secret()
    # Not tried again after a dropped connection: if the commit's reply was lost, the
    # session is stored and a repeat would fail on its unique hash (or, with a new secret,
    # audit a second sign-in). The sign-in answers 503; signing in again is harmless.
    async with database(request.app).write() as db:
        await open_session(
            db,
            principal,
            secret=session_secret,
            lifetime=session_lifetime(request),
            bootstrap_token=_bootstrap_token(request),
            user_agent=request.headers.get("user-agent"),
            client=request.client.host if request.client else None,  # as it is, for admins
        )
    page_session = PageSession(principal, session_csrf_token(session_secret))
    return PageAuthOutcome(page_session, new_cookie=session_secret)


async def current_page_session(request: Request[Any, Any, Any]) -> PageAuthOutcome:
    """The session the request's cookie names, if it is still live.

    An unknown cookie (ended, forged, or from before sessions were kept on the server) is
    not a failed login: session secrets cannot be guessed, and no token is tried.
    """
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return PageAuthOutcome(None)
    db = database(request.app)
    try:
        found = await find_live_session(request, secret)
        if found.stale_last_seen:
            # Refused when the session ended or its token was revoked while this touch
            # waited out an outage: the earlier read does not vouch for the request.
            await retried(request.app, lambda: _touch(db, found))
    except SessionEndedError as exc:
        if exc.reason != "unknown":
            await retried(request.app, lambda: _end(db, secret))
        return PageAuthOutcome(None, _ENDED[exc.reason], 401, True)
    page_session = PageSession(found.principal, session_csrf_token(secret))
    return PageAuthOutcome(page_session)


async def find_live_session(request: Request[Any, Any, Any], secret: str) -> FoundSession:
    """The live session a cookie's secret opens; raises SessionEndedError otherwise.

    Read again after a dropped connection, for the request's retry budget, as are the
    deletion of an ended session and the touch of a live one in `current_page_session`
    (each sets the same state again when repeated). A database that stays away for the
    whole budget is not waited for again in the same request (the rate limit's exemption
    reads the session before the page does).
    """
    outage = request.state.get(_OUTAGE_STATE_KEY)
    if isinstance(outage, tuple) and outage[0] == secret:
        raise outage[1]
    db = database(request.app)
    lifetime = session_lifetime(request)
    bootstrap = _bootstrap_token(request)

    async def read() -> FoundSession:
        async with db.read() as session:
            return await find_session(session, secret, lifetime=lifetime, bootstrap_token=bootstrap)

    try:
        return await retried(request.app, read)
    except DATABASE_ERRORS as exc:
        request.state[_OUTAGE_STATE_KEY] = (secret, exc)
        raise


async def _end(db: Database, secret: str) -> None:
    async with db.write() as session:
        await end_session(session, secret)


async def _touch(db: Database, found: FoundSession) -> None:
    async with db.write() as session:
        await touch_session(session, found.id, found.principal.token_id)


async def sign_out(request: Request[Any, Any, Any], page_session: PageSession) -> None:
    """End the request's session (only this one) and audit it."""
    async with database(request.app).write() as session:
        ended = await end_session(session, request.cookies.get(SESSION_COOKIE) or "")
        if ended is not None:
            record_audit(
                session,
                actor=page_session.principal.actor,
                action="session.sign_out",
                details={"session_id": ended, "token_id": page_session.principal.token_id},
            )
