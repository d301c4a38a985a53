"""The app's handle on the database: sessions, bare connections, one-transaction writes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from server.db.models import ReviewDecision

DecisionListener = Callable[[str], None]
DECISIONS_CHANNEL = "fakescope_review_decisions"  # NOTIFY payload: the image's sha256
T = TypeVar("T")


def is_transient(error: BaseException) -> bool:
    """A database error that says nothing about the statement: the connection dropped
    (a server restart, a terminated backend, a network blip) or was left unusable by
    that. The same work on a fresh connection may well succeed."""
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, (exc.OperationalError, exc.InterfaceError)):
            return True
        # asyncpg's client-side protocol errors ("cannot switch to state …; another
        # operation is in progress") follow a connection killed mid-operation.
        return type(error.orig).__name__ == "InternalClientError"
    return isinstance(error, OSError)  # could not connect at all


async def retry_transient(
    work: Callable[[], Awaitable[T]], *, tries: int = 3, pause_s: float = 0.2
) -> T:
    """Run `work` (one whole transaction), again on a fresh connection after a transient
    error, up to `tries` times in all. Only for work that is safe to repeat."""
    for attempt in range(1, tries + 1):
        try:
            return await work()
        except Exception as error:
            if attempt == tries or not is_transient(error):
                raise
        await asyncio.sleep(pause_s * attempt)
    raise AssertionError("unreachable")


class Database:
    """Sessions for reads; `write()` for one atomic transaction (committed on success only).

    SQLite allows one writer at a time: writes from this process are serialised here, and
    write transactions take the lock when they begin (see create_engine(immediate=True)),
    so that writers in other processes (`fakescope admin`, more workers) wait their turn.
    Listeners hear of every review decision committed through these sessions (the served
    analyses cache uses that to drop the image's entry at once); on PostgreSQL the commit
    also NOTIFYs other processes, whose own caches then forget the image (`notify.py`).
    """

    def __init__(self, engine: AsyncEngine, write_engine: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.write_engine = write_engine or engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self.decision_listeners: list[DecisionListener] = []
        session_class: type[Session] = type("FakeScopeSession", (Session,), {})
        event.listen(session_class, "after_flush", self._note_decisions)
        event.listen(session_class, "after_commit", self._announce_decisions)
        event.listen(session_class, "after_rollback", self._forget_decisions)
        self.sessions = async_sessionmaker(
            engine, expire_on_commit=False, sync_session_class=session_class
        )
        self.write_sessions = async_sessionmaker(
            self.write_engine, expire_on_commit=False, sync_session_class=session_class
        )

    def _note_decisions(self, session: Session, _context: Any) -> None:
        for obj in session.new:
            if isinstance(obj, ReviewDecision):
                session.info.setdefault("decided", set()).add(obj.sha256)
                if not self.is_sqlite:  # other processes hear of it when this commits
                    session.connection().execute(
                        text("SELECT pg_notify(:channel, :sha)"),
                        {"channel": DECISIONS_CHANNEL, "sha": obj.sha256},
                    )

    def _announce_decisions(self, session: Session) -> None:
        for sha in session.info.pop("decided", ()):
            for listener in self.decision_listeners:
                listener(sha)

    @staticmethod
    def _forget_decisions(session: Session) -> None:
        session.info.pop("decided", None)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A bare connection for hot read paths (no ORM session to set up)."""
        async with self.engine.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self.write_sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
