"""The job queue's database work, tried again on fresh connections for a few seconds.

A terminated backend, a failover or a restarting PostgreSQL drops the pool's connections
and may refuse new ones for a second or more. Three tries within about 0.6 s were not
enough: with backends terminated 0.7 s apart, 4 of 40 requests got 503
`database-unavailable`. Here the pauses between tries double (from 50 ms to at most 1 s,
each drawn from the upper half of its range, so that API processes that lost their
connections together do not all come back at the same instant) until a budget of seconds
is spent. Only connection-level errors (`is_transient`) are tried again: a constraint or
programming error is raised at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from server.db.database import is_transient

T = TypeVar("T")
RETRY_BUDGET_S = 4.0  # how long queueing and waiting go on through a database outage
FIRST_PAUSE_S = 0.05
LONGEST_PAUSE_S = 1.0


class Backoff:
    """Pauses between tries: doubling up to `longest_s`, each a random draw from the upper
    half of its range."""

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
    error until `budget_s` seconds have passed; then the last error is raised."""
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
