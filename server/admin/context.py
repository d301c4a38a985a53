"""What the admin package takes from the running app (``server/app.py``).

``app.state.db`` is the app's :class:`server.db.database.Database`: reads use its sessions,
writes go through ``Database.write()``, which serialises writers on SQLite.
``app.state.settings`` holds the :class:`server.settings.Settings` (bootstrap admin token).
Credential lookups go on through dropped connections for the request's budget (`retried`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from litestar import Litestar, Request
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.database import Database
from server.jobs.retry import RETRY_BUDGET_S, request_budget_s, retry_connection_errors
from server.limits import FailedAuthLimiter, failed_auth_limiter_for
from server.settings import Settings

_LIMITER_KEY = "admin_failed_auth_limiter"
T = TypeVar("T")


def database(app: Litestar) -> Database:
    db = app.state.get("db")
    if not isinstance(db, Database):
        raise RuntimeError("app.state.db must hold the app's Database for the admin routes")
    return db


def settings_of(app: Litestar) -> Settings | None:
    settings = app.state.get("settings")
    return settings if isinstance(settings, Settings) else None


async def retried(app: Litestar, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` (one transaction, safe to repeat), again on a fresh connection after a
    dropped one, for the request's retry budget (`server/jobs/retry.py`)."""
    settings = settings_of(app)
    budget_s = request_budget_s(settings.request_timeout_s) if settings else RETRY_BUDGET_S
    return await retry_connection_errors(work, budget_s=budget_s)


def failed_auth_limiter(app: Litestar) -> FailedAuthLimiter:
    """The app's limiter, created on first use (one per app, so tests stay independent).

    In memory, or in the database when the settings share limits across processes.
    """
    limiter: FailedAuthLimiter | None = app.state.get(_LIMITER_KEY)
    if limiter is None:
        limiter = failed_auth_limiter_for(settings_of(app), database(app))
        app.state[_LIMITER_KEY] = limiter
    return limiter


async def provide_admin_session(request: Request[Any, Any, Any]) -> AsyncIterator[AsyncSession]:
    """Litestar dependency: a read session for one admin request, closed afterwards."""
    async with database(request.app).read() as session:
        yield session
