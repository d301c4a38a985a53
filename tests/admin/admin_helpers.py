"""Helpers of the review tests: images, tokens, flagged and reported items.

A module of its own, not conftest.py: tests/server has a conftest.py too, and
`from conftest import ...` would find whichever was imported first when both folders run
in one pytest call.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from litestar import Litestar
from litestar.testing import AsyncTestClient
from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from server.admin.roles import Role
from server.admin.token_store import create_token, revoke_token
from server.db.engine import create_engine
from server.db.models import AdminSession
from server.db.review import flag_for_review

_seeds = itertools.count(1)


def unique_png(size: int = 48) -> bytes:
    """A small PNG no test has used before (random pixels from a fresh seed)."""
    rng = np.random.default_rng(next(_seeds) * 104_729)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB").save(
        buffer, "PNG"
    )
    return buffer.getvalue()


def problem(response: Any, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem+json response with this status; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@dataclass(frozen=True)
class Tokens:
    """One live token per role plus a revoked admin token."""

    admin: str
    reviewer: str
    client: str
    revoked_admin: str
    reviewer_name: str = "Rita Reviewer"


async def make_tokens(database_url: str) -> Tokens:
    engine = create_engine(database_url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            admin = await create_token(session, role=Role.ADMIN, name="Ada Admin", actor="test")
            reviewer = await create_token(
                session, role=Role.REVIEWER, name="Rita Reviewer", actor="test"
            )
            client = await create_token(session, role=Role.CLIENT, name="feed", actor="test")
            revoked = await create_token(session, role=Role.ADMIN, name="old admin", actor="test")
            await revoke_token(session, revoked.id, actor="test")
            await session.commit()
    finally:
        await engine.dispose()
    return Tokens(admin.secret, reviewer.secret, client.secret, revoked.secret)


async def analysed_image(client: AsyncTestClient[Litestar], data: bytes | None = None) -> str:
    """Analyse a fresh image through the public API; returns its SHA-256."""
    response = await client.post("/v1/analyze", files={"file": ("x.png", data or unique_png())})
    assert response.status_code == 200, response.text
    sha: str = response.json()["sha256"]
    return sha


async def flag(database_url: str, sha256: str, reasons: list[str]) -> None:
    """Flag an analysed image as the analysis service does when the core returns flags."""
    engine = create_engine(database_url)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            await flag_for_review(session, sha256, reasons)
    finally:
        await engine.dispose()


async def reported_image(
    client: AsyncTestClient[Litestar], suggested_label: str | None = "fake", reason: str = "wrong"
) -> str:
    """An analysed image that a user has reported; it is in the review queue."""
    sha = await analysed_image(client)
    response = await client.post(
        "/v1/reports", json={"sha256": sha, "reason": reason, "suggested_label": suggested_label}
    )
    assert response.status_code == 201, response.text
    return sha


async def session_rows(database_url: str) -> list[AdminSession]:
    """Every row of ``admin_sessions``, oldest first."""
    engine = create_engine(database_url)
    try:
        async with async_sessionmaker(engine)() as session:
            return list(await session.scalars(select(AdminSession).order_by(AdminSession.id)))
    finally:
        await engine.dispose()


async def set_session_times(database_url: str, session_id: int, **values: Any) -> None:
    """Move a session's clock: set ``last_seen_at``, ``expires_at`` or ``created_at``."""
    engine = create_engine(database_url)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            await session.execute(
                update(AdminSession).where(AdminSession.id == session_id).values(**values)
            )
    finally:
        await engine.dispose()
