"""Client tokens for the public API, required only when FAKESCOPE_REQUIRE_TOKEN is true.

The token's lookup goes on through a dropped database connection (a terminated backend, a
failover) for the request's retry budget; then the request answers 503
`database-unavailable`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from sqlalchemy import select

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
    if settings.admin_token and hmac.compare_digest(secret.encode(), settings.admin_token.encode()):
        return
    digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()
    db: Database = connection.app.state.db
    # A read, safe to repeat: a dropped connection is tried again for the request's budget.
    live = await retry_connection_errors(
        lambda: _token_is_live(db, digest), budget_s=request_budget_s(settings.request_timeout_s)
    )
    if not live:
        raise ProblemError(
            401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"}
        )


async def _token_is_live(db: Database, digest: str) -> bool:
    """Whether an unrevoked token has this SHA-256."""
    live = select(ApiToken.id).where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None))
    async with db.read() as session:
        return await session.scalar(live) is not None
