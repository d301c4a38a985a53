"""The API role's stand-in for a model: jobs go to GPU workers through the SQL queue.

It answers what the services ask of a `ModelHost` (state, identity, the model's
description, a queue depth), learning them from the `workers` table, and runs a job by
queueing it and waiting for its outcome. One poller per process asks the database about
every job this process waits for in one query, woken early by NOTIFY on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from server.background import cancel_and_wait
from server.db.analyses import PROVENANCE_ONLY_KEY, Identity
from server.db.database import Database, is_transient
from server.db.notify import Wakeups
from server.inference.host import ModelState
from server.jobs import registry
from server.jobs.store import (
    DONE,
    FAILED,
    FINISHED_CHANNEL,
    PROGRESS_CHANNEL,
    JobOutcome,
    JobStore,
)
from server.problems import RETRY_AFTER_DATABASE_S, service_unavailable
from server.settings import Settings

log = logging.getLogger("fakescope.server")
REFRESH_S = 2.0  # how often the live workers are read again
REFRESH_NO_WORKERS_S = 0.25  # the same while none is live: the first one is seen at once
POLL_S = 0.02  # outcome polling while waiting, without notifications (SQLite)
POLL_NOTIFIED_S = 1.0  # the same with LISTEN active: a safety net for lost notifications


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


class RemoteStream:
    """A streamed job as its API process sees it: new text as it grows, then the outcome."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.sent = 0  # characters of the job's text already queued for the client
        self.items: asyncio.Queue[str | JobOutcome] = asyncio.Queue()

    def offer(self, outcome: JobOutcome) -> bool:
        """Queue what is new in the job's row; True once the job has finished."""
        text = outcome.answer or ""
        if len(text) > self.sent:
            self.items.put_nowait(text[self.sent :])
            self.sent = len(text)
        if outcome.state in (DONE, FAILED):
            self.items.put_nowait(outcome)
            return True
        return False

    async def next(self) -> str | JobOutcome:
        return await self.items.get()


class _Waiting:
    """Jobs this process waits for; their number is what /metrics reads as queue depth."""

    def __init__(self) -> None:
        self.futures: dict[int, asyncio.Future[JobOutcome]] = {}
        self.streams: dict[int, RemoteStream] = {}

    @property
    def depth(self) -> int:
        return len(self.futures) + len(self.streams)


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
        self.queue = _Waiting()
        self.wakeups = Wakeups(settings.database_url, [FINISHED_CHANNEL, PROGRESS_CHANNEL])
        self._identity = Identity(model_key=PROVENANCE_ONLY_KEY, prompt_version=PROMPT_VERSION)
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshed = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Serving: the workers table was read. Without a live worker an API process still
        serves cached results, lookups and reviews, so a load balancer keeps it; analyses
        then answer 503 `no-workers` (see `has_workers`)."""
        return self.state is ModelState.READY

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
        with contextlib.suppress(Exception):  # the database is down: the loop retries
            await self.refresh()
        self.wakeups.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._refresh_forever()), loop.create_task(self._poll())]

    async def wait_ready(self, within_s: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self._refreshed.wait()

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        await self.wakeups.stop()
        for future in self.queue.futures.values():
            future.cancel()

    async def refresh(self) -> None:
        """Read the live workers; the model they serve becomes this process's identity."""
        live = await registry.live_workers(self.db, self.settings.job_lease_s)
        self.live_workers = live
        if live:
            # Several models at once (a rolling upgrade): serve the newest worker's.
            chosen: tuple[Identity, dict[str, Any]] | None = (live[0].identity, live[0].model)
        else:
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
            await asyncio.sleep(REFRESH_S if self.live_workers else REFRESH_NO_WORKERS_S)

    async def _enqueue(
        self,
        kind: str,
        sha256: str,
        image: bytes | None,
        explain: bool,
        question: dict[str, Any] | None,
    ) -> int:
        """The queued job's id; 503 `database-unavailable` when the database stays out of
        reach (the store already tried again on fresh connections)."""
        try:
            return await self.jobs.enqueue(
                kind,
                sha256,
                self.identity,
                image=image,
                explain=explain,
                question=question,
                max_queued=self.settings.queue_size,
            )
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("could not queue a %s job: %s", kind, exc)
            raise service_unavailable(
                "the job queue's database could not be reached; try again shortly",
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
        cached when a worker gets to it.
        """
        job_id = await self._enqueue(kind, sha256, image, explain, question)
        future: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
        self.queue.futures[job_id] = future
        self.wakeups.poke()
        try:
            return await asyncio.shield(future)
        finally:
            self.queue.futures.pop(job_id, None)

    async def stream(self, kind: str, sha256: str, *, question: dict[str, Any]) -> RemoteStream:
        """Queue a streamed job; its text arrives as the worker records it. `forget` it
        when done (a client that leaves early leaves the job to finish and be cached)."""
        job_id = await self._enqueue(kind, sha256, None, False, question)
        stream = RemoteStream(job_id)
        self.queue.streams[job_id] = stream
        self.wakeups.poke()
        return stream

    def forget(self, stream: RemoteStream) -> None:
        self.queue.streams.pop(stream.job_id, None)

    async def _poll(self) -> None:
        """Resolve waiting futures and feed streams from the jobs table, one query for all."""
        waiting = self.queue
        while True:
            busy = waiting.futures or waiting.streams
            interval = POLL_NOTIFIED_S if self.wakeups.connected.is_set() or not busy else POLL_S
            await self.wakeups.wait(interval)
            if not (waiting.futures or waiting.streams):
                continue
            ids = [*waiting.futures, *waiting.streams]
            try:
                found = await self.jobs.outcomes(ids, finished_only=not waiting.streams)
            except Exception as exc:
                log.warning("could not read job outcomes: %s", exc)
                await asyncio.sleep(POLL_NOTIFIED_S)
                continue
            for job_id, outcome in found.items():
                future = waiting.futures.get(job_id)
                if future is not None and not future.done() and outcome.state in (DONE, FAILED):
                    future.set_result(outcome)
                stream = waiting.streams.get(job_id)
                if stream is not None and stream.offer(outcome):
                    del waiting.streams[job_id]
