"""Merge concurrent point reads into one query (many `WHERE sha256 IN (...)` become one).

Under load, dozens of requests ask "is this image cached?" at once; one query for all of
them costs about what one costs alone. When idle, a read waits one event-loop turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Fetch = Callable[[list[str]], Awaitable[dict[str, Any]]]


class ReadCoalescer:
    def __init__(self, fetch: Fetch, max_keys: int = 500) -> None:
        self._fetch = fetch
        self._max_keys = max_keys
        self._waiting: dict[str, list[asyncio.Future[Any]]] = {}
        self._running: asyncio.Task[None] | None = None

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The fetched value of each key that has one (missing keys are absent)."""
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[Any]] = {}
        for key in dict.fromkeys(keys):
            future: asyncio.Future[Any] = loop.create_future()
            self._waiting.setdefault(key, []).append(future)
            futures[key] = future
        if self._running is None:
            self._running = loop.create_task(self._drain())
        results = await asyncio.gather(*futures.values())
        return {
            key: value for key, value in zip(futures, results, strict=True) if value is not None
        }

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let the requests of this loop turn join in
            while self._waiting:
                keys = list(self._waiting)[: self._max_keys]
                batch = {key: self._waiting.pop(key) for key in keys}
                try:
                    found = await self._fetch(keys)
                except Exception as exc:
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for key, futures in batch.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found.get(key))
        finally:
            self._running = None
