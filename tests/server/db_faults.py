"""Deterministic database faults for outage tests: real terminated PostgreSQL backends,
write transactions whose connection drops before they commit, and commits whose reply is
lost (the connection died after COMMIT was sent)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from server.db.database import Database

POSTGRES_ADMIN_URL = os.environ.get(
    "FAKESCOPE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def dropped_connection() -> DBAPIError:
    """What SQLAlchemy raises when the connection died under a statement."""
    return DBAPIError("COMMIT", {}, ConnectionResetError("reset"), connection_invalidated=True)


class TerminatedBackends:
    """Terminate the PostgreSQL backend under each statement of `engine` that `marker`
    picks (a substring of the SQL, or a test of it), just before it runs, for the first
    `times` such statements (None: all). `seen` counts the statements picked."""

    def __init__(
        self, engine: AsyncEngine, marker: str | Callable[[str], bool], times: int | None
    ) -> None:
        self.engine = engine
        self.picks = marker if callable(marker) else (lambda statement: marker in statement)
        self.times = times
        self.seen = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._terminate)

    def remove(self) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._terminate)

    def _terminate(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not self.picks(statement):
            return
        self.seen += 1
        if self.times is not None and self.seen > self.times:
            return
        pid = conn.connection.driver_connection.get_server_pid()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                time.sleep(0.005)  # gone: the statement meets a dead connection


class DroppedWrites:
    """The first `times` write transactions of `db` (None: all) meet a dropped connection
    before they write anything, each calling `on_drop` first. `dropped` counts them."""

    def __init__(
        self, db: Database, times: int | None, on_drop: Callable[[], object] = lambda: None
    ) -> None:
        self.db = db
        self.times = times
        self.on_drop = on_drop
        self.dropped = 0
        self._write = db.write
        db.write = self._dropped_first  # type: ignore[method-assign]

    def remove(self) -> None:
        self.db.write = self._write  # type: ignore[method-assign]

    @contextlib.asynccontextmanager
    async def _dropped_first(self) -> AsyncIterator[AsyncSession]:
        if self.times is None or self.dropped < self.times:
            self.dropped += 1
            self.on_drop()
            raise dropped_connection()
        async with self._write() as session:
            yield session


class LostCommitReplies:
    """The first `times` write transactions of `db` commit, and then their caller hears of a
    dropped connection, as when the connection dies after COMMIT was sent: the caller cannot
    tell whether its work was stored. `lost` counts the replies lost."""

    def __init__(self, db: Database, times: int) -> None:
        self.db = db
        self.times = times
        self.lost = 0
        self._write = db.write
        db.write = self._committed_then_dropped  # type: ignore[method-assign]

    def remove(self) -> None:
        self.db.write = self._write  # type: ignore[method-assign]

    @contextlib.asynccontextmanager
    async def _committed_then_dropped(self) -> AsyncIterator[AsyncSession]:
        async with self._write() as session:
            yield session
        if self.lost < self.times:
            self.lost += 1
            raise dropped_connection()
