"""Client tokens for the public API, required only when FAKESCOPE_REQUIRE_TOKEN is true.

The token's lookup goes on through a dropped database connection (a terminated backend, a
failover) for the request's retry budget; then the request answers 503
`database-unavailable`.

A wrong token counts as a failed attempt for the client's address, with the admin routes'
limit (server/admin/auth.py): the bootstrap admin token, which may be short, is accepted
here too, and guesses of it here went uncounted, at the public rate limit (or none). Past
the limit, a wrong token and the bootstrap token get 429 alike, so the answer tells a
guesser nothing; generated tokens (256 random bits) are not held up. These failures are
counted apart from the review's: clients with a stale token (an extension left with a
revoked one) must not lock reviewers on their address out of the review.
"""

from __future__ import annotations

import hashlib
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from sqlalchemy import select

from server.admin.auth import client_key
from server.admin.context import failed_auth_limiter
from server.admin.tokens import hash_token, hashes_match
from server.db.database import Database
from server.db.models import ApiToken
from server.jobs.retry import request_budget_s, retry_connection_errors
from server.problems import ProblemError
from server.settings import Settings


def bearer_secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    scheme, _, secret = connection.headers.get("authorization", "").partition(" ")
    return secret.strip() or None if scheme.lower() == "bearer" else None


async def require_client_token(
    connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler
) -> None:
    """Guard: any unrevoked token (client, reviewer or admin) or the bootstrap admin token."""
    settings: Settings = connection.app.state.settings
    if not settings.require_token:
        return
    secret = bearer_secret(connection)
    if secret is None or len(secret) > 512:
        raise ProblemError(
            401,
            "this server requires an API token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if settings.admin_token and hashes_match(hash_token(settings.admin_token), secret):
        await _refuse_when_locked_out(connection)
        return
    digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
    db: Database = connection.app.state.db
    # A read, safe to repeat: a dropped connection is tried again for the request's budget.
    live = await retry_connection_errors(
        lambda: _token_is_live(db, digest), budget_s=request_budget_s(settings.request_timeout_s)
    )
    if not live:
        await _refuse_when_locked_out(connection)
        await failed_auth_limiter(connection.app).record_failure(_public_client_key(connection))
        raise ProblemError(
            401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"}
        )


async def _refuse_when_locked_out(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """429 while the client's address is past the failed-attempt limit."""
    retry_after = await failed_auth_limiter(connection.app).retry_after(
        _public_client_key(connection)
    )
    if retry_after is not None:
        raise ProblemError(
            429,
            f"too many failed authentication attempts; retry in {retry_after} s",
            code="auth-rate-limited",
            headers={"Retry-After": str(retry_after)},
        )


def _public_client_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The failed-attempt limiter's key of a client of the public API (not a review key)."""
    return f"public-api {client_key(connection)}"


async def _token_is_live(db: Database, digest: str) -> bool:
    """Whether an unrevoked token has this SHA-256."""
    live = select(ApiToken.id).where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None))
    async with db.read() as session:
        return await session.scalar(live) is not None
