"""Engine creation: SQLite gets WAL, full sync and foreign keys so acknowledged writes survive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run during a write; FULL syncs the WAL on every commit, so a 200 that
    # followed a commit is on disk even if the process (or the machine) dies right after.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the "begin" listener below starts transactions


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, *, immediate: bool = False, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url`; SQLite files get their directory created and their pragmas.

    `immediate` (SQLite only): transactions take the write lock when they begin. A write
    transaction that starts with a read would otherwise fail at once, not wait, when another
    process wrote in between (SQLITE_BUSY_SNAPSHOT).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if immediate:
            event.listen(engine.sync_engine, "connect", _autocommit_driver)
            event.listen(engine.sync_engine, "begin", _begin_immediate)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)
