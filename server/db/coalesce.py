"""Merge concurrent point reads into one query (many `WHERE sha256 IN (...)` become one).

Under load, dozens of requests ask "is this image cached?" at once; one query for all of
them costs about what one costs alone. When idle, a read waits one event-loop turn.

A read is safe to repeat: when the connection drops under one (a terminated backend, a
failover), its keys go back first in line and are read again after a pause that doubles
each time (`Backoff`), together with the keys asked for meanwhile. Each caller waits for at
most `retry_s` seconds of this, from when it asked; then it gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from server.db.database import Backoff, is_transient

Fetch = Callable[[list[str]], Awaitable[dict[str, Any]]]
# A caller waiting for one key: its future, and the loop time at which it stops waiting
# through failed reads.
_Waiter = tuple[asyncio.Future[Any], float]


class ReadCoalescer:
    def __init__(self, fetch: Fetch, max_keys: int = 500, *, retry_s: float = 0.0) -> None:
        self._fetch = fetch
        self._max_keys = max_keys
        self._retry_s = retry_s
        self._waiting: dict[str, list[_Waiter]] = {}
        self._running: asyncio.Task[None] | None = None

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The fetched value of each key that has one (missing keys are absent)."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._retry_s
        futures: dict[str, asyncio.Future[Any]] = {}
        for key in dict.fromkeys(keys):
            future: asyncio.Future[Any] = loop.create_future()
            self._waiting.setdefault(key, []).append((future, give_up_at))
            futures[key] = future
        if self._running is None:
            self._running = loop.create_task(self._drain())
        results = await asyncio.gather(*futures.values())
        return {
            key: value for key, value in zip(futures, results, strict=True) if value is not None
        }

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        try:
            await asyncio.sleep(0)  # let the requests of this loop turn join in
            while self._waiting:
                keys = list(self._waiting)[: self._max_keys]
                batch = {key: self._waiting.pop(key) for key in keys}
                try:
                    found = await self._fetch(keys)
                except Exception as exc:
                    left_s = self._read_again(batch, exc, loop.time()) if is_transient(exc) else 0
                    if left_s > 0:
                        await asyncio.sleep(min(backoff.pause(), left_s))
                    else:
                        _fail(batch, exc)
                    continue
                backoff.reset()
                for key, waiters in batch.items():
                    for future, _ in waiters:
                        if not future.done():
                            future.set_result(found.get(key))
        finally:
            self._running = None

    def _read_again(self, batch: dict[str, list[_Waiter]], error: Exception, now: float) -> float:
        """After a dropped connection: fail the waiters whose time is up, and put the others
        back first in line. How long until the first of those gives up (0: none is left)."""
        again: dict[str, list[_Waiter]] = {}
        for key, waiters in batch.items():
            for future, give_up_at in waiters:
                if future.done():
                    continue  # its caller went away
                if give_up_at <= now:
                    future.set_exception(error)
                else:
                    again.setdefault(key, []).append((future, give_up_at))
        if not again:
            return 0
        left_s = min(give_up_at for waiters in again.values() for _, give_up_at in waiters) - now
        for key, waiters in self._waiting.items():  # asked for while the read ran
            again.setdefault(key, []).extend(waiters)
        self._waiting = again
        return left_s


def _fail(batch: dict[str, list[_Waiter]], error: Exception) -> None:
    for waiters in batch.values():
        for future, _ in waiters:
            if not future.done():
                future.set_exception(error)
