"""Authentication and role guards for the admin API (Bearer tokens) and the page's sign-in.

A wrong or revoked token counts as a failed attempt for the client's address; past the
limit the address gets 429 until the window passes, even with a good token. The token's
lookup goes on through dropped database connections for the request's retry budget; a
database that stays away answers 503 `database-unavailable` and counts no failed attempt.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from server.admin.context import database, failed_auth_limiter, retried, settings_of
from server.admin.principal import BOOTSTRAP_ADMIN_NAME, Principal
from server.admin.roles import Role, role_allows
from server.admin.token_store import find_active_token, mark_used, needs_touch
from server.admin.tokens import hash_token, hashes_match
from server.db.database import Database
from server.limits.client_address import client_of
from server.limits.fail_open import DATABASE_ERRORS
from server.problems import ProblemError

SESSION_COOKIE = "fakescope_admin_session"
PRINCIPAL_STATE_KEY = "admin_principal"
AUTH_OUTCOME_STATE_KEY = "admin_auth_outcome"  # (secret, Principal or the error raised)


class AuthFailedError(Exception):
    """The credential was wrong or revoked."""


class AuthRateLimitedError(Exception):
    """Too many failed attempts from this client."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed authentication attempts; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def client_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The failed-attempt limiter's key: the address, an IPv6 one's /64 (client_address.py)."""
    return client_of(connection)


def bearer_secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def authenticate_secret(
    connection: ASGIConnection[Any, Any, Any, Any], secret: str
) -> Principal:
    """The principal a secret belongs to; raises AuthRateLimitedError or AuthFailedError.

    Decided once per request and secret: the rate limit's reviewer exemption
    (limit_exemption.py) asks before the route's guard does, and a wrong secret must count
    as one failed attempt, not two; a database that stays away is waited for once, not for
    two retry budgets.
    """
    decided = connection.state.get(AUTH_OUTCOME_STATE_KEY)
    if isinstance(decided, tuple) and decided[0] == secret:
        if isinstance(decided[1], Principal):
            return decided[1]
        raise decided[1]
    try:
        principal = await _authenticate_secret(connection, secret)
    except (AuthRateLimitedError, AuthFailedError) as exc:
        connection.state[AUTH_OUTCOME_STATE_KEY] = (secret, exc)
        raise
    except DATABASE_ERRORS as exc:
        connection.state[AUTH_OUTCOME_STATE_KEY] = (secret, exc)
        raise
    connection.state[AUTH_OUTCOME_STATE_KEY] = (secret, principal)
    return principal


async def _authenticate_secret(
    connection: ASGIConnection[Any, Any, Any, Any], secret: str
) -> Principal:
    limiter = failed_auth_limiter(connection.app)
    client = client_key(connection)
    retry_after = await limiter.retry_after(client)
    if retry_after is not None:
        raise AuthRateLimitedError(retry_after)
    settings = settings_of(connection.app)
    bootstrap = settings.admin_token if settings else None
    if bootstrap and hashes_match(hash_token(bootstrap), secret):
        return Principal(token_id=None, name=BOOTSTRAP_ADMIN_NAME, role=Role.ADMIN)
    db = database(connection.app)
    # Both are safe to repeat after a dropped connection: a read, and an update that sets
    # `last_used_at` to now again. An outage that outlasts the budget is raised as it is
    # (503 `database-unavailable`): it says nothing about the secret, so it is never
    # counted as a failed attempt.
    tries = 0

    async def lookup() -> tuple[Principal, bool] | None:
        nonlocal tries
        tries += 1
        return await _active_token(db, secret)

    found = await retried(connection.app, lookup)
    if tries > 1:
        # The limit was checked before the outage (its own read may have failed open),
        # and other attempts may have been counted while this one waited: check it again.
        retry_after = await limiter.retry_after(client)
        if retry_after is not None:
            raise AuthRateLimitedError(retry_after)
    if found is None or not await _still_live(connection, db, *found):
        await limiter.record_failure(client)
        raise AuthFailedError("the token is not valid (wrong or revoked)")
    return found[0]


async def _active_token(db: Database, secret: str) -> tuple[Principal, bool] | None:
    """Whose unrevoked token the secret is, and whether its `last_used_at` is stale."""
    async with db.read() as session:
        row = await find_active_token(session, secret)
        if row is None:
            return None
        return Principal(token_id=row.id, name=row.name, role=Role(row.role)), needs_touch(row)


async def _still_live(
    connection: ASGIConnection[Any, Any, Any, Any], db: Database, principal: Principal, stale: bool
) -> bool:
    """Touch a stale `last_used_at`; False when the token was revoked since its lookup.

    The touch may wait out an outage for the retry budget: a token revoked meanwhile is
    refused for this request too, not honoured on the strength of the earlier lookup.
    """
    token_id = principal.token_id
    if not stale or token_id is None:
        return True

    async def touch() -> bool:
        async with db.write() as session:
            return await mark_used(session, token_id)

    return await retried(connection.app, touch)


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, detail, code="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="fakescope"'}
    )


async def require_api_principal(
    connection: ASGIConnection[Any, Any, Any, Any], required: Role
) -> Principal:
    """Authenticate the Bearer token and check its role; raises problem+json 401/403/429."""
    secret = bearer_secret(connection)
    if secret is None:
        raise _unauthorized("send an admin or reviewer token as 'Authorization: Bearer <token>'")
    try:
        principal = await authenticate_secret(connection, secret)
    except AuthRateLimitedError as exc:
        raise ProblemError(
            429, str(exc), code="auth-rate-limited", headers={"Retry-After": str(exc.retry_after_s)}
        ) from exc
    except AuthFailedError as exc:
        raise _unauthorized(str(exc)) from exc
    if not role_allows(principal.role, required):
        raise ProblemError(
            403,
            f"this route needs the {required.value} role; the token has {principal.role.value}",
            code="forbidden",
        )
    connection.state[PRINCIPAL_STATE_KEY] = principal
    return principal


async def reviewer_guard(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: a reviewer or admin token."""
    await require_api_principal(connection, Role.REVIEWER)


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: an admin token."""
    await require_api_principal(connection, Role.ADMIN)


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal a guard stored for this request."""
    principal = connection.state.get(PRINCIPAL_STATE_KEY)
    if not isinstance(principal, Principal):
        raise _unauthorized("not authenticated")
    return principal
