"""How long the server's database work goes on through an outage, and whose budget is whose.

A terminated backend, a failover or a restarting PostgreSQL drops the pool's connections
and may refuse new ones for a second or more. Three tries within about 0.6 s were not
enough: with backends terminated 0.7 s apart, 4 of 40 requests got 503
`database-unavailable`; a shared read of cached analyses that was not tried again failed
every request of its batch. Work safe to repeat is now tried again on fresh connections,
with doubling, jittered pauses (`retry_connection_errors` in `server/db/database.py`), for
a budget of seconds:

- a request's (queueing a job, waiting for its outcome, reading and storing analyses):
  `RETRY_BUDGET_S`, at most half the request's own time (the rest is for its work). A
  request with several database steps (`/v1/ask`) shares one budget among them
  (`RetryAllowance`): a dead database costs it one budget, not one per step;
- a GPU worker's writes (finishing or giving back a job, renewing its leases): as long,
  at most a sixth of a job's lease, so that a finished job is not run again because its
  `finish` met a few seconds of outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from server.db.database import RETRY_BUDGET_S, Backoff, retry_connection_errors

T = TypeVar("T")
__all__ = [
    "RETRY_BUDGET_S",
    "Backoff",
    "RetryAllowance",
    "request_budget_s",
    "retry_connection_errors",
    "worker_budget_s",
]


def request_budget_s(request_timeout_s: float) -> float:
    """How long a request's database work goes on through an outage."""
    return min(RETRY_BUDGET_S, request_timeout_s / 2)


def worker_budget_s(lease_s: float) -> float:
    """How long a worker's writes go on through an outage.

    Leases are renewed every third of one: a renewal round that fails throughout and the
    next, trying as long, both end before the lease lapses when each tries for less than a
    sixth of it.
    """
    return min(RETRY_BUDGET_S, lease_s / 6)


class RetryAllowance:
    """One request's time for riding out database outages, shared by all its steps.

    Each step is tried again for what is left; the time a step spends once its first try
    has failed is taken from the allowance. Time between the steps (a generation, a job's
    wait) is not: an answer that took longer than the budget to generate still gets its
    store tried again through a blip, while a database that stays away costs the request
    one budget in all before its 503.
    """

    def __init__(
        self,
        budget_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.left_s = budget_s
        self.clock = clock
        self.sleep = sleep

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work` (safe to repeat), again after dropped connections while time is left;
        with none left it is tried once."""
        started = self.clock()
        failed = False

        async def tried() -> T:
            nonlocal failed
            try:
                return await work()
            except Exception:
                failed = True
                raise

        try:
            return await retry_connection_errors(
                tried, budget_s=self.left_s, clock=self.clock, sleep=self.sleep
            )
        finally:
            if failed:
                self.left_s = max(0.0, self.left_s - (self.clock() - started))
