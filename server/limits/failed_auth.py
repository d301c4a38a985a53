"""Per-client limit on failed admin authentications (a sliding window), in memory or in SQL.

`MemoryFailedAuthLimiter` counts in this process: enough for one all-in-one server.
`DatabaseFailedAuthLimiter` counts in `auth_failures`, one row per failure, so that every
API process sees the failures made on the others; counted apart, N processes would allow N
times the limit. Its window runs on the wall clock, so the machines' clocks must agree (as
for the job queue's leases).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, insert, select

from server.db.database import Database
from server.db.models import AuthFailure
from server.limits.fail_open import DATABASE_ERRORS, FailOpen
from server.limits.keys import fit_key
from server.settings import Settings
from server.timefmt import as_utc, utcnow

DEFAULT_MAX_FAILURES = 10
DEFAULT_WINDOW_S = 60.0
CLIENT_LENGTH = 128  # auth_failures.client
PRUNE_EVERY_S = 60.0
_MAX_TRACKED_CLIENTS = 10_000  # bound memory under a spray of addresses


class FailedAuthLimiter(Protocol):
    """What authentication asks of a limiter; a client is an address."""

    async def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not blocked."""

    async def record_failure(self, client: str) -> None:
        """Remember one failed attempt by ``client``."""


def failed_auth_limiter_for(settings: Settings | None, db: Database) -> FailedAuthLimiter:
    """The limiter ``settings`` ask for: shared through the database, or this process's own."""
    if settings is not None and settings.limits_in_database:
        return DatabaseFailedAuthLimiter(db)
    return MemoryFailedAuthLimiter()


@dataclass
class MemoryFailedAuthLimiter:
    """Counts failures per client; one over the limit is refused until the window passes."""

    max_failures: int = DEFAULT_MAX_FAILURES
    window_s: float = DEFAULT_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    async def retry_after(self, client: str) -> int | None:
        window = self._recent(client)
        if window is None or len(window) < self.max_failures:
            return None
        oldest_relevant = window[-self.max_failures]
        return max(1, math.ceil(oldest_relevant + self.window_s - self.clock()))

    async def record_failure(self, client: str) -> None:
        if client not in self._failures and len(self._failures) >= _MAX_TRACKED_CLIENTS:
            self._evict_stale()
        self._failures.setdefault(client, deque()).append(self.clock())

    def _recent(self, client: str) -> deque[float] | None:
        window = self._failures.get(client)
        if window is None:
            return None
        cutoff = self.clock() - self.window_s
        while window and window[0] <= cutoff:
            window.popleft()
        if not window:
            del self._failures[client]
            return None
        return window

    def _evict_stale(self) -> None:
        for client in list(self._failures):
            self._recent(client)
        if len(self._failures) >= _MAX_TRACKED_CLIENTS:
            # Everyone is still inside the window: forget the client that failed longest ago.
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]


class DatabaseFailedAuthLimiter:
    """The same window over ``auth_failures``, shared by every process on the database.

    A failure is one INSERT (no read-modify-write to lose under concurrency); the check
    reads the client's newest ``max_failures`` rows inside the window. Rows older than
    the window are deleted at most once a minute per process.

    A database error fails open: the check lets the attempt through and a failure goes
    uncounted, both logged. The token itself still has to be right, and guessing a
    256-bit secret stays hopeless without the limit; a 500 on every admin request would
    not make anything safer.
    """

    def __init__(
        self,
        db: Database,
        *,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], datetime] = utcnow,
        prune_every_s: float = PRUNE_EVERY_S,
    ) -> None:
        self.db = db
        self.max_failures = max_failures
        self.window = timedelta(seconds=window_s)
        self.clock = clock
        self.prune_every_s = prune_every_s
        self.fail_open = FailOpen("failed-login limit")
        self._prune_due = 0.0
        # Clients found blocked, until when (on `clock`, as the window): a block cannot end
        # early (failures are never taken back), so a flood past the limit costs no reads.
        self._blocked_until: dict[str, datetime] = {}

    async def retry_after(self, client: str) -> int | None:
        remembered = self._remembered_block(client)
        if remembered is not None:
            return remembered
        now = self.clock()
        newest = (
            select(AuthFailure.failed_at)
            .where(
                AuthFailure.client == fit_key(client, CLIENT_LENGTH),
                AuthFailure.failed_at > now - self.window,
            )
            .order_by(AuthFailure.failed_at.desc())
            .limit(self.max_failures)
        )
        try:
            async with self.db.connect() as connection:
                failed_at = (await connection.scalars(newest)).all()
        except DATABASE_ERRORS as exc:
            self.fail_open.note(exc)
            return None
        if len(failed_at) < self.max_failures:
            return None
        oldest_relevant = as_utc(failed_at[-1])
        until = oldest_relevant + self.window
        self._remember_block(client, until, now)
        return max(1, math.ceil((until - now).total_seconds()))

    def _remembered_block(self, client: str) -> int | None:
        until = self._blocked_until.get(client)
        if until is None:
            return None
        left = (until - self.clock()).total_seconds()
        if left <= 0:
            del self._blocked_until[client]
            return None
        return max(1, math.ceil(left))

    def _remember_block(self, client: str, until: datetime, now: datetime) -> None:
        if until <= now:
            return
        if len(self._blocked_until) >= _MAX_TRACKED_CLIENTS:
            self._blocked_until = {c: t for c, t in self._blocked_until.items() if t > now}
            if len(self._blocked_until) >= _MAX_TRACKED_CLIENTS:
                return  # a spray of blocked addresses: those beyond the bound are read again
        self._blocked_until[client] = until

    async def record_failure(self, client: str) -> None:
        now = self.clock()
        row = {"client": fit_key(client, CLIENT_LENGTH), "failed_at": now}
        try:
            async with self.db.write() as session:
                await session.execute(insert(AuthFailure).values(row))
            await self._prune(now)
        except DATABASE_ERRORS as exc:
            self.fail_open.note(exc)

    async def _prune(self, now: datetime) -> None:
        # Its own transaction, after the insert: a failed prune never loses the failure.
        if time.monotonic() < self._prune_due:
            return
        self._prune_due = time.monotonic() + self.prune_every_s
        async with self.db.write() as session:
            await session.execute(
                delete(AuthFailure).where(AuthFailure.failed_at <= now - self.window)
            )
