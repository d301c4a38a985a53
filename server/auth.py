"""Client tokens for the public API, required only when FAKESCOPE_REQUIRE_TOKEN is true."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from sqlalchemy import select

from server.db.database import Database
from server.db.models import ApiToken
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
    async with db.read() as session:
        revoked_at = await session.scalar(
            select(ApiToken.revoked_at).where(ApiToken.token_hash == digest)
        )
        known = await session.scalar(select(ApiToken.id).where(ApiToken.token_hash == digest))
    if known is None or revoked_at is not None:
        raise ProblemError(
            401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"}
        )
