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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from server.db.database import Database

Write = Callable[[AsyncSession], Awaitable[None]]


class GroupCommit:
    def __init__(self, db: Database, max_group: int = 64) -> None:
        self.db = db
        self.max_group = max(1, max_group)
        self.groups = 0  # transactions committed for groups of two or more (for tests)
        self._pending: list[tuple[Write, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def run(self, write: Write) -> None:
        """Run ``write(session)`` in a transaction, shared with concurrent writes."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((write, future))
        if self._task is None:
            self._task = loop.create_task(self._drain(), name="group-commit")
        # Shielded: a caller that goes away does not cancel the others' transaction.
        await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let the writes of this loop turn join the group
            while self._pending:
                group = self._pending[: self.max_group]
                del self._pending[: self.max_group]
                if len(group) > 1 and await self._together(group):
                    continue
                for item in group:
                    await self._alone(item)
        finally:
            self._task = None

    async def _together(self, group: list[tuple[Write, asyncio.Future[None]]]) -> bool:
        try:
            async with self.db.write() as session:
                for write, _ in group:
                    await write(session)
        except Exception:
            return False  # rolled back: each runs alone
        self.groups += 1
        for _, future in group:
            if not future.done():
                future.set_result(None)
        return True

    async def _alone(self, item: tuple[Write, asyncio.Future[None]]) -> None:
        write, future = item
        try:
            async with self.db.write() as session:
                await write(session)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(None)
