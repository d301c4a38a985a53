"""The app's handle on the database: sessions, bare connections, one-transaction writes,
and trying work again on a fresh connection when the connection dropped.

A terminated backend, a failover or a restarting PostgreSQL drops the pool's connections
and may refuse new ones for a second or more. Work that is safe to repeat goes on through
that (`retry_connection_errors`): the pauses between tries double from 50 ms to at most
1 s, with jitter, until a budget of seconds is spent (`server/jobs/retry.py` says whose
budget is how long). Only connection-level errors (`is_transient`) are tried again; on
SQLite, which has no connection to lose, only a lock held by another connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from server.db.models import ReviewDecision

DecisionListener = Callable[[str], None]
DECISIONS_CHANNEL = "fakescope_review_decisions"  # NOTIFY payload: the image's sha256
T = TypeVar("T")
RETRY_BUDGET_S = 4.0  # how long work goes on through a database outage, unless told otherwise
FIRST_PAUSE_S = 0.05
LONGEST_PAUSE_S = 1.0
# SQLite's primary result codes (the low byte of its extended codes) for a lock another
# connection holds: SQLITE_BUSY (another process writes; SQLITE_BUSY_SNAPSHOT: it wrote
# since this transaction's snapshot) and SQLITE_LOCKED (a conflict within one file handle).
SQLITE_LOCK_CODES = frozenset({5, 6})


def is_transient(error: BaseException) -> bool:
    """A database error that says nothing about the statement: the connection dropped
    (a server restart, a terminated backend, a network blip) or was left unusable by
    that, or (SQLite) another connection held the lock too long. The same work on a fresh
    connection may well succeed."""
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error.orig, sqlite3.Error):
            return sqlite_lock_held(error.orig)
        if isinstance(error, (exc.OperationalError, exc.InterfaceError)):
            return True
        # asyncpg's client-side protocol errors ("cannot switch to state …; another
        # operation is in progress") follow a connection killed mid-operation.
        return type(error.orig).__name__ == "InternalClientError"
    return isinstance(error, OSError)  # could not connect at all


def is_transient_or_busy(error: BaseException) -> bool:
    """`is_transient`, or every connection of this process's pool stayed in use for
    FAKESCOPE_DB_POOL_TIMEOUT_S (SQLAlchemy's own TimeoutError, not a DBAPIError): nothing
    is wrong with the work, and it may well succeed a moment later. For background loops
    that would otherwise take a busy pool for a bug."""
    return is_transient(error) or isinstance(error, exc.TimeoutError)


def sqlite_lock_held(error: sqlite3.Error) -> bool:
    """Whether SQLite refused for a lock another connection holds, which it gives up.

    Every other SQLite error stays until someone acts: "no such table", "no such column"
    and syntax errors are bugs or a missing migration; a disk I/O error, a full disk, a
    read-only or unopenable file (SQLITE_IOERR, SQLITE_FULL, SQLITE_READONLY,
    SQLITE_CANTOPEN) are the disk's or the file's state, not an outage of seconds. The
    file is local, so there is no network to come back. Errors raised by Python's driver
    itself carry no code (None).
    """
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in SQLITE_LOCK_CODES


class Backoff:
    """Pauses between tries: doubling up to `longest_s`, each a random draw from the upper
    half of its range (processes that lost their connections together do not all come back
    at the same instant)."""

    def __init__(
        self,
        first_s: float = FIRST_PAUSE_S,
        longest_s: float = LONGEST_PAUSE_S,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.first_s = first_s
        self.longest_s = longest_s
        self.draw = draw
        self._ceiling = first_s

    def pause(self) -> float:
        ceiling = self._ceiling
        self._ceiling = min(ceiling * 2, self.longest_s)
        return ceiling * (0.5 + 0.5 * self.draw())

    def reset(self) -> None:
        self._ceiling = self.first_s


async def retry_connection_errors(
    work: Callable[[], Awaitable[T]],
    *,
    budget_s: float = RETRY_BUDGET_S,
    backoff: Backoff | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """Run `work` (one whole transaction, safe to repeat), again after each connection-level
    error until `budget_s` seconds have passed; then the last error is raised. Other errors
    (a constraint, a programming error) are raised at once."""
    backoff = backoff or Backoff()
    give_up_at = clock() + budget_s
    while True:
        try:
            return await work()
        except Exception as error:
            left_s = give_up_at - clock()
            if left_s <= 0 or not is_transient(error):
                raise
        await sleep(min(backoff.pause(), left_s))


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
