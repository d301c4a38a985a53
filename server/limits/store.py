"""Litestar's key/value ``Store`` over the ``limiter_entries`` table, shared by every process.

Writes are single upserts (``INSERT … ON CONFLICT DO UPDATE``), so concurrent writers of one
key never fail: the last one wins. Expiry is a stored UTC time, read on the wall clock of
whichever process asks; the machines' clocks must agree (as for the job queue's leases).
Expired entries read as absent, and each process deletes them at most once a minute, on a
write, so the table holds little more than the keys of the last window.

A store's ``get`` then ``set`` is a read-modify-write that processes can interleave and so
lose counts; ``hit`` counts one event atomically instead, which is what the shared rate limit
uses (``server/limits/rate_limit.py``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from litestar.stores.base import Store
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    LargeBinary,
    Text,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.db.database import Database
from server.db.models import LimiterEntry
from server.limits.fail_open import DATABASE_ERRORS, FailOpen
from server.limits.keys import fit_key
from server.timefmt import as_utc, utcnow

KEY_LENGTH = 512  # limiter_entries.key
PURGE_EVERY_S = 60.0
MAX_FULL_WINDOWS = 10_000


@dataclass(frozen=True)
class Hit:
    """An event counted under a key: how many its window holds now, and when it ends."""

    count: int
    window_ends: datetime


class DatabaseStore(Store):
    """Values with an optional expiry in SQL; keys live under ``namespace`` (one per store)."""

    def __init__(
        self,
        db: Database,
        namespace: str = "rate_limit",
        *,
        clock: Callable[[], datetime] = utcnow,
        purge_every_s: float = PURGE_EVERY_S,
    ) -> None:
        self.db = db
        self.namespace = namespace
        self.clock = clock
        self.purge_every_s = purge_every_s
        self._purge_due = 0.0
        # One per store, so one per app: its users log a failing database through it.
        self.fail_open = FailOpen(f"{namespace} store")
        # Every write here is one statement, atomic alone: on PostgreSQL it runs in
        # autocommit (one round trip, no BEGIN and COMMIT). SQLite writers take turns.
        self._autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._hit = _hit_statement(sqlite=db.is_sqlite)
        self._full_windows: dict[str, datetime] = {}  # key -> end of its window, past its limit

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession | AsyncConnection]:
        if self.db.is_sqlite:
            async with self.db.write() as session:
                yield session
        else:
            async with self._autocommit.connect() as connection:
                yield connection

    def _key(self, key: str) -> str:
        prefix = f"{self.namespace}:"
        return prefix + fit_key(key, KEY_LENGTH - len(prefix))

    def _live(self, key: str, now: datetime) -> ColumnElement[bool]:
        unexpired = or_(LimiterEntry.expires_at.is_(None), LimiterEntry.expires_at > now)
        return (LimiterEntry.key == self._key(key)) & unexpired

    def _upsert(self, values: dict[str, Any]) -> Any:
        insert = sqlite_insert if self.db.is_sqlite else postgresql_insert
        return insert(LimiterEntry).values(values)

    async def set(
        self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
    ) -> None:
        now = self.clock()
        data = value.encode("utf-8") if isinstance(value, str) else value
        statement = self._upsert(
            {"key": self._key(key), "value": data, "expires_at": _expiry(now, expires_in)}
        )
        statement = statement.on_conflict_do_update(
            index_elements=[LimiterEntry.key],
            set_={"value": statement.excluded.value, "expires_at": statement.excluded.expires_at},
        )
        async with self._write() as session:
            await session.execute(statement)
        await self._purge_now_and_then(now)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        now = self.clock()
        renewed_until = _expiry(now, renew_for)
        if renewed_until is None:
            async with self.db.connect() as connection:
                value = await connection.scalar(
                    select(LimiterEntry.value).where(self._live(key, now))
                )
            return None if value is None else bytes(value)
        # One statement: the value comes back only if it was live, renewed only if it expires.
        renew = (
            update(LimiterEntry)
            .where(self._live(key, now))
            .values(
                expires_at=case(
                    (LimiterEntry.expires_at.is_(None), None),
                    else_=literal(renewed_until, DateTime(timezone=True)),
                )
            )
            .returning(LimiterEntry.value)
            .execution_options(synchronize_session=False)
        )
        async with self._write() as session:
            value = await session.scalar(renew)
        return None if value is None else bytes(value)

    async def delete(self, key: str) -> None:
        async with self._write() as session:
            await session.execute(delete(LimiterEntry).where(LimiterEntry.key == self._key(key)))

    async def delete_all(self) -> None:
        """Delete every entry of this store's namespace (other namespaces are kept)."""
        mine = LimiterEntry.key.startswith(f"{self.namespace}:", autoescape=True)
        async with self._write() as session:
            await session.execute(delete(LimiterEntry).where(mine))

    async def exists(self, key: str) -> bool:
        async with self.db.connect() as connection:
            found = await connection.scalar(
                select(LimiterEntry.key).where(self._live(key, self.clock()))
            )
        return found is not None

    async def expires_in(self, key: str) -> int | None:
        """Whole seconds until ``key`` expires; None when absent, expired or never expiring."""
        now = self.clock()
        async with self.db.connect() as connection:
            expires_at = await connection.scalar(
                select(LimiterEntry.expires_at).where(self._live(key, now))
            )
        if expires_at is None:
            return None
        return int((as_utc(expires_at) - now).total_seconds())

    async def hit(self, key: str, window: timedelta, *, limit: int | None = None) -> Hit:
        """Count one event under ``key`` in a fixed window, started by the window's first event.

        One upsert, atomic in every database: a key that is absent or past its window starts
        a new window at 1, a live one adds 1. The count is kept as decimal text in ``value``.

        With ``limit``: once a window holds more than ``limit`` events, this process answers
        for the rest of it from memory (a window's end never moves), with a count of
        ``limit + 1``; a client flooding past its limit costs no more writes.
        """
        now = self.clock()
        full_until = self._full_windows.get(key)
        if limit is not None and full_until is not None and full_until > now:
            return Hit(limit + 1, full_until)
        values = {"key": self._key(key), "now": now, "ends": now + window}
        async with self._write() as session:
            count, window_ends = (await session.execute(self._hit, values)).one()
        await self._purge_now_and_then(now)
        hit = Hit(int(bytes(count)), as_utc(window_ends))
        if limit is not None and hit.count > limit:
            self._remember_full(key, hit.window_ends, now)
        return hit

    def _remember_full(self, key: str, window_ends: datetime, now: datetime) -> None:
        if len(self._full_windows) >= MAX_FULL_WINDOWS:  # bound memory under a spray
            self._full_windows = {k: t for k, t in self._full_windows.items() if t > now}
        if len(self._full_windows) < MAX_FULL_WINDOWS:
            self._full_windows[key] = window_ends

    async def _purge_now_and_then(self, now: datetime) -> None:
        """Delete expired entries of every namespace, at most every ``purge_every_s``."""
        if time.monotonic() < self._purge_due:
            return
        self._purge_due = time.monotonic() + self.purge_every_s
        try:
            async with self._write() as session:
                await session.execute(delete(LimiterEntry).where(LimiterEntry.expires_at <= now))
        except DATABASE_ERRORS as exc:  # housekeeping: the next purge will catch up
            self.fail_open.note(exc)


def _hit_statement(*, sqlite: bool) -> Any:
    """The upsert behind ``DatabaseStore.hit``, built once (parameters: key, now, ends)."""
    moment = DateTime(timezone=True)
    now, ends = bindparam("now", type_=moment), bindparam("ends", type_=moment)
    one = literal(b"1", LargeBinary)
    if sqlite:  # CAST(integer AS BLOB) gives the integer's text as bytes
        plus_one: ColumnElement[bytes] = cast(
            cast(cast(LimiterEntry.value, Text), Integer) + 1, LargeBinary
        )
        insert: Any = sqlite_insert(LimiterEntry)
    else:
        counted = cast(func.convert_from(LimiterEntry.value, "UTF8"), Integer) + 1
        plus_one = func.convert_to(cast(counted, Text), "UTF8", type_=LargeBinary)
        insert = postgresql_insert(LimiterEntry)
    # NULL (a value set without expiry) is never past: such a key just counts on.
    past = LimiterEntry.expires_at <= now
    return (
        insert.values(key=bindparam("key"), value=one, expires_at=ends)
        .on_conflict_do_update(
            index_elements=[LimiterEntry.key],
            set_={
                "value": case((past, one), else_=plus_one),
                "expires_at": case((past, ends), else_=LimiterEntry.expires_at),
            },
        )
        .returning(LimiterEntry.value, LimiterEntry.expires_at)
    )


def _expiry(now: datetime, seconds: int | timedelta | None) -> datetime | None:
    """When a value set now for ``seconds`` expires; None (or 0) means never, as in Litestar."""
    if not seconds:
        return None
    return now + (seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds))
