"""The API role's stand-in for a model: jobs go to GPU workers through the SQL queue.

It answers what the services ask of a `ModelHost` (state, identity, the model's
description, a queue depth), learning them from the `workers` table, and runs a job by
queueing it and waiting for its outcome. One poller per process asks the database about
every job this process waits for in one query, woken early by NOTIFY on PostgreSQL.
Several requests may wait for one job (the store hands a twin request the job already
doing its work), each with its own future or stream.

An API process also expires jobs as workers do (lapsed leases, jobs queued too long), so
a dead worker's jobs and stale image bytes do not wait for a live worker to be cleaned
up. When no worker has been live for a lease (`FAKESCOPE_JOB_LEASE_S`: time for one
that restarts to come back), the requests still waiting get 503 `no-workers` at once
instead of waiting out their timeout; their jobs stay queued for a later worker. The same
holds per model: jobs are keyed by the model that must run them, so during a rolling
upgrade, requests waiting for a model whose last worker left get 503 `no-workers` a lease
later although workers of another model are live.

Queueing and waiting ride out a database outage for a few seconds (`retry.py`); then the
request gets 503 `database-unavailable`. The waiting requests are kept in `waiters.py`. A
FAKESCOPE_MODEL set on an api process changes nothing, and the log says so
(`model_setting.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from server.background import cancel_and_wait
from server.db.analyses import PROVENANCE_ONLY_KEY, Identity
from server.db.database import Database, is_transient, is_transient_or_busy
from server.db.notify import Wakeups
from server.inference.host import ModelState
from server.jobs import registry
from server.jobs.model_setting import IgnoredModelSetting
from server.jobs.retry import Backoff, request_budget_s
from server.jobs.store import (
    DONE,
    FAILED,
    FINISHED_CHANNEL,
    PROGRESS_CHANNEL,
    JobOutcome,
    JobStore,
)
from server.jobs.waiters import RemoteStream, Waiting, retrieve
from server.problems import RETRY_AFTER_DATABASE_S, ProblemError, service_unavailable
from server.settings import Settings

log = logging.getLogger("fakescope.server")
REFRESH_S = 2.0  # how often the live workers are read again
REFRESH_NO_WORKERS_S = 0.25  # the same while none is live: the first one is seen at once
POLL_S = 0.02  # outcome polling while waiting, without notifications (SQLite)
POLL_NOTIFIED_S = 1.0  # the same with LISTEN active: a safety net for lost notifications
RETRY_AFTER_NO_WORKERS_S = 5  # as server.analyze.service's (which imports this module)


@dataclass(frozen=True)
class RemoteModelInfo:
    """A worker's `ModelInfo` as it registered it (what the payloads describe)."""

    described: dict[str, Any]
    key: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.described)


@dataclass(frozen=True)
class RemoteModel:
    info: RemoteModelInfo


class RemoteHost:
    remote = True

    def __init__(self, settings: Settings, db: Database, jobs: JobStore) -> None:
        from fakescope.prompts import PROMPT_VERSION

        self.settings = settings
        self.db = db
        self.jobs = jobs
        self.prompt_version = PROMPT_VERSION
        self.model: RemoteModel | None = None
        self.state = ModelState.LOADING  # until the workers table was read once
        self.error: str | None = None
        self.live_workers: list[registry.LiveWorker] = []
        self.queue = Waiting()
        self.wakeups = Wakeups(settings.database_url, [FINISHED_CHANNEL, PROGRESS_CHANNEL])
        self._identity = Identity(model_key=PROVENANCE_ONLY_KEY, prompt_version=PROMPT_VERSION)
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshed = asyncio.Event()
        self._no_workers_since: float | None = None  # loop time the last worker went
        # Loop time since which no live worker serves a model that requests wait for.
        self._unserved_since: dict[str, float] = {}
        self._expiry_failing = False
        self.model_setting = IgnoredModelSetting(settings.model)
        # Queueing and waiting go on through a database outage for this long: a few
        # seconds, at most half the request's own time (the rest is the job's).
        self.retry_budget_s = request_budget_s(settings.request_timeout_s)
        # Outage time for waiting requests; a test may put a fake clock in their place.
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], Awaitable[object]] = asyncio.sleep

    @property
    def ready(self) -> bool:
        """Serving: the workers table was read. Without a live worker an API process still
        serves cached results, lookups and reviews, so a load balancer keeps it; analyses
        then answer 503 `no-workers` (see `has_workers`)."""
        return self.state is ModelState.READY

    @property
    def serves_cached(self) -> bool:
        return self.ready

    @property
    def has_workers(self) -> bool:
        return bool(self.live_workers)

    @property
    def identity(self) -> Identity:
        return self._identity

    def describe(self) -> dict[str, Any]:
        state = "ready" if self.has_workers else "no-workers"
        if self.state is ModelState.LOADING:
            state = "loading"
        return {
            "mode": "api",
            "state": state,
            "model": self.model.info.to_dict() if self.model is not None else None,
            "error": self.error,
            "workers": len(self.live_workers),
        }

    async def start(self) -> None:
        self.model_setting.at_startup()
        with contextlib.suppress(Exception):  # the database is down: the loop retries
            await self.refresh()
        self.wakeups.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._refresh_forever()),
            loop.create_task(self._poll()),
            loop.create_task(self._expire_forever()),
        ]

    async def wait_ready(self, within_s: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self._refreshed.wait()

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        await self.wakeups.stop()
        for futures in self.queue.futures.values():
            for future in futures:
                future.cancel()

    async def refresh(self) -> None:
        """Read the live workers; the model they serve becomes this process's identity."""
        live = await registry.live_workers(self.db, self.settings.job_lease_s)
        self.live_workers = live
        self.model_setting.workers_serve(worker.model for worker in live)
        now = asyncio.get_running_loop().time()
        served = {worker.identity.model_key for worker in live}
        waited_for = set(self.queue.models.values()) - served
        self._unserved_since = {key: self._unserved_since.get(key, now) for key in waited_for}
        if live:
            self._no_workers_since = None
            # Several models at once (a rolling upgrade): serve the newest worker's.
            chosen: tuple[Identity, dict[str, Any]] | None = (live[0].identity, live[0].model)
        else:
            if self._no_workers_since is None:
                self._no_workers_since = now
            chosen = await registry.newest_identity(self.db)
        if chosen is not None:
            identity, described = chosen
            self._identity = identity
            self.model = RemoteModel(RemoteModelInfo(described, identity.model_key))
        self.state = ModelState.READY
        self.error = None if live else "no GPU worker is running (FAKESCOPE_ROLE=worker)"
        self._refreshed.set()

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the database is down: /readyz says so; keep trying
                log.warning("could not read the workers table: %s", exc)
            else:
                self._give_up_without_workers()
            await asyncio.sleep(REFRESH_S if self.live_workers else REFRESH_NO_WORKERS_S)

    def _give_up_without_workers(self) -> None:
        """503 `no-workers` for the requests still waiting once no worker (or none serving
        the model their job needs) has been live for a lease (one restarting may come back
        within it). Their jobs stay queued: a worker that starts later still runs them, and
        the results are cached."""
        if not self.queue:
            return
        now = asyncio.get_running_loop().time()
        lease_s = self.settings.job_lease_s
        gone: dict[int, float] = {}  # job id -> seconds without a worker for it
        for job_id in {*self.queue.futures, *self.queue.streams}:
            if self.live_workers:
                since = self._unserved_since.get(self.queue.models.get(job_id, ""))
            else:
                since = self._no_workers_since
            if since is not None and now - since >= lease_s:
                gone[job_id] = now - since
        if not gone:
            return

        def problem(job_id: int) -> ProblemError:
            if self.live_workers:
                detail = (
                    f"no GPU worker serving this job's model ({self.queue.models[job_id]}) "
                    f"has been running for {gone[job_id]:.0f} s; the job stays queued and a "
                    "worker with that model that starts later does it"
                )
            else:
                detail = (
                    f"no GPU worker has been running for {gone[job_id]:.0f} s; the job stays "
                    "queued and a worker that starts later does it (FAKESCOPE_ROLE=worker)"
                )
            return service_unavailable(detail, RETRY_AFTER_NO_WORKERS_S, "no-workers")

        waiting = sum(self.queue.fail(job_id, partial(problem, job_id)) for job_id in gone)
        log.warning(
            "%d waiting requests answered 503 no-workers: %s (their jobs stay queued)",
            waiting,
            "no GPU worker is live" if not self.live_workers else "their model's workers left",
        )

    async def _expire_forever(self) -> None:
        """Expire jobs as workers do, so that a dead worker's jobs go back to the queue
        (or fail) and stale queued jobs drop their bytes even while no worker runs."""
        while True:
            await asyncio.sleep(self.settings.job_lease_s / 3)
            try:
                expired = await self.jobs.expire()
            except Exception as exc:  # the database is down: said once, not every round
                if not self._expiry_failing:
                    log.warning("could not expire jobs: %s", exc)
                self._expiry_failing = True
                continue
            self._expiry_failing = False
            if expired.requeued or expired.failed or expired.stale:
                log.warning(
                    "jobs of a lost worker: %d queued again, %d failed; %d never claimed",
                    expired.requeued,
                    expired.failed,
                    expired.stale,
                )

    async def _enqueue(
        self,
        kind: str,
        sha256: str,
        identity: Identity,
        image: bytes | None,
        explain: bool,
        question: dict[str, Any] | None,
    ) -> int:
        """The queued job's id; 503 `database-unavailable` when the database stays out of
        reach for the retry budget (the store tries again on fresh connections)."""
        try:
            return await self.jobs.enqueue(
                kind,
                sha256,
                identity,
                image=image,
                explain=explain,
                question=question,
                max_queued=self.settings.queue_size,
                retry_s=self.retry_budget_s,
            )
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("could not queue a %s job: %s", kind, exc)
            raise service_unavailable(
                f"the job queue's database could not be reached for "
                f"{self.retry_budget_s:g} s; try again shortly",
                RETRY_AFTER_DATABASE_S,
                "database-unavailable",
            ) from exc

    async def run(
        self,
        kind: str,
        sha256: str,
        *,
        image: bytes | None,
        explain: bool = False,
        question: dict[str, Any] | None = None,
    ) -> JobOutcome:
        """Queue a job for the workers and wait for its outcome (QueueFullError when full).

        A caller that stops waiting (a timeout) leaves the job queued: its result is
        cached when a worker gets to it. Raises 503 `no-workers` when the workers are
        gone (see `_give_up_without_workers`).
        """
        identity = self.identity
        job_id = await self._enqueue(kind, sha256, identity, image, explain, question)
        future: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
        future.add_done_callback(retrieve)
        self.queue.add_future(job_id, identity.model_key, future, self.clock())
        self.wakeups.poke()
        try:
            return await asyncio.shield(future)
        finally:
            self.queue.remove_future(job_id, future)

    async def stream(self, kind: str, sha256: str, *, question: dict[str, Any]) -> RemoteStream:
        """Queue a streamed job; its text arrives as the worker records it. `forget` it
        when done (a client that leaves early leaves the job to finish and be cached)."""
        identity = self.identity
        job_id = await self._enqueue(kind, sha256, identity, None, False, question)
        stream = RemoteStream(job_id)
        self.queue.add_stream(stream, identity.model_key, self.clock())
        self.wakeups.poke()
        return stream

    def forget(self, stream: RemoteStream) -> None:
        self.queue.remove_stream(stream)

    async def _poll(self) -> None:
        """Resolve waiting futures and feed streams from the jobs table, one query for all.

        Reads that fail with a dropped connection, or that find every pooled connection in
        use for FAKESCOPE_DB_POOL_TIMEOUT_S, are tried again with growing pauses. Each
        waiting request rides out the outage for the whole retry budget, counted from when
        the outage began or from when it started waiting, whichever came later; then it
        gets 503 `database-unavailable` (its job goes on: asked again, a request joins its
        job). A read that fails otherwise is a bug, not an outage: it is logged and the
        requests waiting get 500 at once instead of waiting a budget out for nothing.
        """
        waiting = self.queue
        backoff = Backoff()
        failing_since: float | None = None  # clock reading of the first failed read in a row
        while True:
            busy = bool(waiting)
            interval = POLL_NOTIFIED_S if self.wakeups.connected.is_set() or not busy else POLL_S
            await self.wakeups.wait(interval)
            if not waiting:
                failing_since = None  # nobody waited through it: the next waiter starts afresh
                backoff.reset()
                continue
            ids = sorted({*waiting.futures, *waiting.streams})
            # Each streamed job's text from the least its streams have: what is new only
            # (whole for a job that a request also waits on for its outcome).
            read_from = {
                job_id: min(stream.sent for stream in streams)
                for job_id, streams in waiting.streams.items()
                if job_id not in waiting.futures
            }
            try:
                found = await self.jobs.outcomes(
                    ids, finished_only=not waiting.streams, read_from=read_from
                )
            except Exception as exc:
                if not is_transient_or_busy(exc):
                    failing_since = None
                    backoff.reset()
                    self._give_up_on_error(ids, exc)
                    continue
                now = self.clock()
                if failing_since is None:
                    failing_since = now
                    log.warning("could not read job outcomes: %s", exc)
                if now - failing_since >= self.retry_budget_s:
                    # Those that started waiting a budget ago or earlier have had theirs.
                    self._give_up_on_database(now - self.retry_budget_s, exc)
                await self.sleep(backoff.pause())
                continue
            failing_since = None
            backoff.reset()
            for job_id, outcome in found.items():
                if outcome.state in (DONE, FAILED):
                    for future in waiting.futures.get(job_id, []):
                        if not future.done():
                            future.set_result(outcome)
                for stream in list(waiting.streams.get(job_id, [])):
                    if stream.offer(outcome):
                        waiting.remove_stream(stream)

    def _give_up_on_database(self, waiting_since: float, error: Exception) -> None:
        """503 `database-unavailable` for the requests waiting since `waiting_since` or
        earlier."""

        def problem() -> ProblemError:
            return service_unavailable(
                f"the job queue's database could not be read for {self.retry_budget_s:g} s; "
                "the job goes on: try again shortly",
                RETRY_AFTER_DATABASE_S,
                "database-unavailable",
            )

        waiting = self.queue.fail_waiting_since(waiting_since, problem)
        if waiting:
            log.warning("%d waiting requests answered 503 database-unavailable: %s", waiting, error)

    def _give_up_on_error(self, job_ids: list[int], error: Exception) -> None:
        """500 for the requests waiting on `job_ids`: reading their outcomes failed with an
        error that is not a dropped connection (a bug), which trying again for the retry
        budget would only hide behind a 503 that blames the database."""

        def problem() -> ProblemError:
            return ProblemError(
                500,
                "internal error reading the job's outcome; it has been logged",
                code="internal-error",
            )

        waiting = sum(self.queue.fail(job_id, problem) for job_id in job_ids)
        log.error(
            "%d waiting requests answered 500: reading job outcomes failed",
            waiting,
            exc_info=error,
        )
