"""Reviewers at work are not held to the public per-address request limit.

The request rate limit counts clients by address, so a reviewer behind the same address
as a busy public client (an office, a proxy, the same machine) would get 429 on the
queue and the review page. Review paths carrying a live reviewer or admin credential
(a Bearer token, or the page's session cookie) skip that limit; anything else on them,
wrong credentials included, is counted as before. The sign-in form and the sign-in itself
(without a session cookie) and the page's static files are never counted, so a reviewer
can always sign in: failed sign-ins have their own, stricter limit, which each process
refuses from memory once a client reaches it (server/limits/failed_auth.py).

A Bearer token is checked as the route's guard checks it (`authenticate_secret`, whose
outcome the guard then reuses): past the failed-attempt limit nothing is exempt, and a
wrong token counts as a failed attempt even when the public limit then refuses the
request. Otherwise whether a guess was exempt (200 or a different 429, RateLimit headers
or none) would tell a guesser, at any rate and past both limits, that it had found the
bootstrap admin token, which, unlike generated tokens, may be short.
Checking costs a few indexed reads, and only for requests on review paths that carry one;
they go on through dropped database connections for the request's retry budget, so a
reviewer is not counted because of one. A database that stays away longer counts the
request (the limit fails open), and the route answers 503 `database-unavailable`.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from server.admin.auth import (
    SESSION_COOKIE,
    AuthFailedError,
    AuthRateLimitedError,
    authenticate_secret,
    bearer_secret,
)
from server.admin.page_session import find_live_session
from server.admin.roles import Role, role_allows
from server.admin.session_store import SessionEndedError
from server.limits.fail_open import DATABASE_ERRORS

REVIEW_PATH_PREFIXES = ("/admin/", "/v1/admin/")
SIGN_IN_PATHS = frozenset({"/admin", "/admin/login"})
SIGN_IN_PREFIX = "/admin/static/"


def _on_review_path(path: str) -> bool:
    return path == "/admin" or path.startswith(REVIEW_PATH_PREFIXES)


async def rate_limited(request: Request[Any, Any, Any]) -> bool:
    """Whether the public rate limit counts this request (Litestar's check_throttle_handler)."""
    path = request.url.path
    if path.startswith(SIGN_IN_PREFIX):
        return False
    if path in SIGN_IN_PATHS and not request.cookies.get(SESSION_COOKIE):
        # The sign-in form and the sign-in itself (failed sign-ins have their own limit,
        # refused from memory once reached). With a session cookie the request is checked
        # below like any other: a made-up cookie costs a lookup, so it is counted.
        return False
    if not _on_review_path(path):
        return True
    try:
        return not await _carries_staff_credential(request)
    except DATABASE_ERRORS:
        return True  # the limit itself fails open, and the route answers the error


async def _carries_staff_credential(request: Request[Any, Any, Any]) -> bool:
    secret = bearer_secret(request)
    if secret is not None:
        try:
            principal = await authenticate_secret(request, secret)
        except (AuthFailedError, AuthRateLimitedError):
            return False
        return role_allows(principal.role, Role.REVIEWER)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return False
    try:
        await find_live_session(request, cookie)
    except SessionEndedError:
        return False
    return True  # sessions are opened for reviewers and admins only
