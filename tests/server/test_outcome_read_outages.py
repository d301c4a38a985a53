"""Waiting for job outcomes through a database outage: each request has its own budget.

An API process reads the outcomes of every job its requests wait for in one query. When
that read keeps failing with dropped connections, a request gives up (503
`database-unavailable`) once it has ridden out the retry budget: counted from when the
outage began, or from when the request started waiting if that was later. It used to be
one clock for the whole process, so a request that started waiting near the end of an
outage was failed with the others a fraction of a second later. A read that fails for
another reason (a bug) fails the waiting requests at once (500) instead of being retried
for the budget as if the database were away.

The job store is a stand-in and the clock is fake (it moves only by the poller's pauses),
so what is checked does not depend on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from db_faults import dropped_connection
from server_helpers import until
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from server.jobs.remote_host import RemoteHost
from server.jobs.store import DONE, JobOutcome
from server.problems import ProblemError
from server.settings import Settings

BUDGET_S = 4.0  # request_budget_s of a 10 s request


class FakeClock:
    """Moves by the pauses slept; `stop()` holds the sleeper until `go()` (time stands)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.running = asyncio.Event()
        self.running.set()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await self.running.wait()
        self.now += seconds

    def stop(self) -> None:
        self.running.clear()

    def go(self) -> None:
        self.running.set()


class OutcomeReads:
    """The job store as the poller sees it: queueing hands out ids; outcome reads raise
    `error` while it is set, else report the jobs in `finished` as done."""

    def __init__(self) -> None:
        self.ids = iter(range(1, 100))
        self.error: Exception | None = None
        self.finished: set[int] = set()
        self.reads = 0

    async def enqueue(self, *_args: Any, **_kwargs: Any) -> int:
        return next(self.ids)

    async def outcomes(
        self,
        ids: Sequence[int],
        *,
        finished_only: bool = True,
        read_from: Mapping[int, int] | None = None,
    ) -> dict[int, JobOutcome]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return {job_id: JobOutcome(job_id, DONE) for job_id in ids if job_id in self.finished}


pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def host(settings: Settings) -> AsyncIterator[tuple[RemoteHost, OutcomeReads, FakeClock]]:
    jobs = OutcomeReads()
    clock = FakeClock()
    remote = RemoteHost(
        replace(settings, role="api", request_timeout_s=10.0),
        db=None,  # type: ignore[arg-type]  # the poller reads through `jobs` only
        jobs=jobs,  # type: ignore[arg-type]
    )
    remote.clock, remote.sleep = clock.time, clock.sleep
    assert remote.retry_budget_s == BUDGET_S
    poller = asyncio.get_running_loop().create_task(remote._poll())
    try:
        yield remote, jobs, clock
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller


def _waiting(remote: RemoteHost) -> asyncio.Task[JobOutcome]:
    return asyncio.get_running_loop().create_task(remote.run("detect", "0" * 64, image=None))


async def _problem(task: asyncio.Task[JobOutcome]) -> ProblemError:
    with pytest.raises(ProblemError) as raised:
        await task
    return raised.value


async def _early_and_late(
    remote: RemoteHost, jobs: OutcomeReads, clock: FakeClock
) -> tuple[asyncio.Task[JobOutcome], asyncio.Task[JobOutcome], float]:
    """A request waiting from the start of an outage, and one from half a budget before
    the first's runs out; the clock stands when they are returned."""
    jobs.error = dropped_connection()
    early = _waiting(remote)
    await until(lambda: clock.now >= BUDGET_S / 2)
    clock.stop()
    late = _waiting(remote)
    await until(lambda: len(remote.queue.since) == 2)
    return early, late, clock.now


async def test_a_request_that_starts_waiting_late_in_an_outage_gets_its_own_budget(
    host: tuple[RemoteHost, OutcomeReads, FakeClock],
) -> None:
    remote, jobs, clock = host
    early, late, late_since = await _early_and_late(remote, jobs, clock)
    clock.go()
    gave_up = await _problem(early)
    clock.stop()
    assert gave_up.status_code == 503 and gave_up.code == "database-unavailable"
    assert not late.done()  # it has waited through less than a budget of the outage
    assert list(remote.queue.since) == [remote.queue.futures[2][0]]

    # The database is back before the late request's budget runs out: it gets its outcome.
    jobs.finished.add(2)
    jobs.error = None
    clock.go()
    outcome = await late
    assert outcome.id == 2 and outcome.state == DONE
    assert clock.now - late_since < BUDGET_S


async def test_a_request_waiting_through_an_outage_that_lasts_gives_up_after_its_whole_budget(
    host: tuple[RemoteHost, OutcomeReads, FakeClock],
) -> None:
    remote, jobs, clock = host
    early, late, late_since = await _early_and_late(remote, jobs, clock)
    clock.go()
    await _problem(early)
    early_gave_up_at = clock.now
    gave_up = await _problem(late)
    assert gave_up.status_code == 503 and gave_up.code == "database-unavailable"
    assert clock.now - late_since >= BUDGET_S  # its whole budget, not what the first had left
    assert clock.now > early_gave_up_at
    assert not remote.queue and not remote.queue.since


async def test_an_outcome_read_that_fails_for_another_reason_fails_the_requests_at_once(
    host: tuple[RemoteHost, OutcomeReads, FakeClock],
) -> None:
    remote, jobs, clock = host
    jobs.error = ProgrammingError("SELECT", {}, Exception("column jobs.nope does not exist"))
    failed = await _problem(_waiting(remote))
    assert failed.status_code == 500 and failed.code == "internal-error"
    assert jobs.reads == 1 and clock.now == 0.0  # not tried again as if the database were away
    assert not remote.queue and not remote.queue.since

    # The next request is read as usual once the query works.
    jobs.error = None
    jobs.finished.add(2)
    assert (await _waiting(remote)).id == 2


async def test_an_outcome_read_that_finds_the_pool_full_is_tried_again_not_failed_as_a_bug(
    host: tuple[RemoteHost, OutcomeReads, FakeClock],
) -> None:
    # Every pooled connection stayed in use for FAKESCOPE_DB_POOL_TIMEOUT_S: SQLAlchemy's own
    # TimeoutError, not a DBAPIError. It was taken for a bug: every waiting request, and
    # every /v1/ask stream relayed, got 500 `internal-error` at once.
    remote, jobs, _clock = host
    jobs.error = PoolTimeoutError("QueuePool limit of size 1 overflow 1 reached")
    waiting = _waiting(remote)
    await until(lambda: jobs.reads >= 2)  # tried again, the request still waits
    assert not waiting.done()
    jobs.error = None
    jobs.finished.add(1)
    outcome = await waiting
    assert outcome.id == 1 and outcome.state == DONE
