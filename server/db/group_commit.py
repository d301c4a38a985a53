"""Concurrent writes share one transaction: one commit (and one fsync) for many requests.

Every new analysis is stored in a transaction of its own. SQLite runs with
`synchronous=FULL` (a 200 means the row is on disk), so each commit waits for the disk,
and writers queue for the one write lock: under load, commits, not the model, bound how
many analyses a second the server answers. `GroupCommit.run(write)` queues the write;
the writes waiting together (those of one event-loop turn, and those that arrive while
the previous group commits) run in one transaction.

A write that fails (an IntegrityError when another process stored the same analysis
first, say) rolls the whole group back, and then each write of that group runs again in
its own transaction, so each caller gets its own outcome and nothing is half-written.
A caller's `run` returns only after its write has committed.

When the connection drops (a terminated backend, a failover), the group goes back first
in line and is tried again after a pause that doubles each time, with the writes queued
meanwhile, until a write has waited `retry_s` seconds through such failures: then its
caller gets the error. The writes must therefore be safe to repeat, even after a commit
whose reply was lost and which may have stored them: the analyses' are (a repeated insert
meets the stored row, an IntegrityError its caller takes as "stored already"; an
explanation is added only to a verdict that has none).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.database import Backoff, Database, is_transient, retry_connection_errors

Write = Callable[[AsyncSession], Awaitable[None]]
# A queued write: the write, its caller's future, and the loop time from which its caller
# hears of a dropped connection instead of waiting for another try.
_Pending = tuple[Write, asyncio.Future[None], float]


class GroupCommit:
    def __init__(self, db: Database, max_group: int = 64, *, retry_s: float = 0.0) -> None:
        self.db = db
        self.max_group = max(1, max_group)
        self.retry_s = retry_s
        self.groups = 0  # transactions committed for groups of two or more (for tests)
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None

    async def run(self, write: Write) -> None:
        """Run ``write(session)`` in a transaction, shared with concurrent writes."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((write, future, loop.time() + self.retry_s))
        if self._task is None:
            self._task = loop.create_task(self._drain(), name="group-commit")
        # Shielded: a caller that goes away does not cancel the others' transaction.
        await asyncio.shield(future)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        try:
            await asyncio.sleep(0)  # let the writes of this loop turn join the group
            while self._pending:
                group = self._pending[: self.max_group]
                del self._pending[: self.max_group]
                try:
                    await self._commit(group)
                except Exception as exc:
                    if is_transient(exc):
                        left_s = self._try_again(group, exc, loop.time())
                        if left_s > 0:
                            await asyncio.sleep(min(backoff.pause(), left_s))
                    elif len(group) == 1:
                        _settle(group[0], exc)
                    else:  # one write failed: each on its own, for its own outcome
                        for item in group:
                            await self._alone(item)
                    continue
                backoff.reset()
                if len(group) > 1:
                    self.groups += 1
                for item in group:
                    _settle(item, None)
        finally:
            self._task = None

    async def _commit(self, group: list[_Pending]) -> None:
        async with self.db.write() as session:
            for write, _, _ in group:
                await write(session)

    def _try_again(self, group: list[_Pending], error: Exception, now: float) -> float:
        """After a dropped connection: fail the writes whose time is up, and put the others
        back first in line. How long until the first of those gives up (0: none is left)."""
        again = []
        for item in group:
            if item[2] <= now:
                _settle(item, error)
            else:
                again.append(item)
        self._pending[:0] = again
        return min((give_up_at for _, _, give_up_at in again), default=now) - now

    async def _alone(self, item: _Pending) -> None:
        give_up_at = item[2]
        loop = asyncio.get_running_loop()
        try:
            await retry_connection_errors(
                lambda: self._commit([item]), budget_s=give_up_at - loop.time(), clock=loop.time
            )
        except Exception as exc:
            _settle(item, exc)
            return
        _settle(item, None)


def _settle(item: _Pending, error: Exception | None) -> None:
    """Tell a write's caller how it went (unless it was told already)."""
    future = item[1]
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
