"""INSERT ... ON CONFLICT DO NOTHING in the session's dialect (SQLite or PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession


def insert_ignoring_duplicates(session: AsyncSession, table: Any) -> Any:
    """An insert that leaves an existing row (same key) alone instead of failing.

    On PostgreSQL it waits for a concurrent transaction inserting the same key, then does
    nothing if that one committed: the way to create a row two requests may create at once.
    """
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()
