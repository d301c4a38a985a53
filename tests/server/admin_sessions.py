"""Admin credentials written straight into a test database: API tokens and review page
sessions, as the server itself stores them (for tests that need one before a request)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker

from server.admin.principal import Principal
from server.admin.roles import Role
from server.admin.session_store import SessionLifetime, open_session
from server.admin.token_store import create_token
from server.db.engine import create_engine
from server.db.models import AdminSession
from server.timefmt import utcnow

LIFETIME = SessionLifetime(idle=timedelta(hours=12), absolute=timedelta(days=7))


async def new_token(database_url: str, role: Role, name: str | None = None) -> tuple[int, str]:
    """A new token of `role`, never used: (id, secret)."""
    engine = create_engine(database_url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            created = await create_token(session, role=role, name=name or role.value, actor="test")
            await session.commit()
    finally:
        await engine.dispose()
    return created.id, created.secret


async def page_session(
    database_url: str, token_id: int, role: Role, *, idle_for: timedelta = timedelta(0)
) -> str:
    """A review page session of the token, last seen `idle_for` ago; its cookie."""
    cookie = secrets.token_urlsafe(32)
    principal = Principal(token_id=token_id, name=role.value, role=role)
    engine = create_engine(database_url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            row = await open_session(
                session,
                principal,
                secret=cookie,
                lifetime=LIFETIME,
                bootstrap_token=None,
                user_agent=None,
                client=None,
            )
            if idle_for:
                await session.execute(
                    update(AdminSession)
                    .where(AdminSession.id == row.id)
                    .values(last_seen_at=utcnow() - idle_for)
                )
            await session.commit()
    finally:
        await engine.dispose()
    return cookie
