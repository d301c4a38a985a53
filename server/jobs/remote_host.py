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
from server.db.database import Database
from server.inference.host import ModelState
from server.jobs import registry
from server.jobs.notify import Wakeups
from server.jobs.store import FINISHED_CHANNEL, JobOutcome, JobStore
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


class _Waiting:
    """What the health endpoint reads as the queue depth: jobs this process waits for."""

    def __init__(self) -> None:
        self.futures: dict[int, asyncio.Future[JobOutcome]] = {}

    @property
    def depth(self) -> int:
        return len(self.futures)


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
        self.wakeups = Wakeups(settings.database_url, [FINISHED_CHANNEL])
        self._identity = Identity(model_key=PROVENANCE_ONLY_KEY, prompt_version=PROMPT_VERSION)
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshed = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY and bool(self.live_workers)

    @property
    def identity(self) -> Identity:
        return self._identity

    def describe(self) -> dict[str, Any]:
        state = "ready" if self.ready else "no-workers"
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
        job_id = await self.jobs.enqueue(
            kind,
            sha256,
            self.identity,
            image=image,
            explain=explain,
            question=question,
            max_queued=self.settings.queue_size,
        )
        future: asyncio.Future[JobOutcome] = asyncio.get_running_loop().create_future()
        self.queue.futures[job_id] = future
        self.wakeups.poke(FINISHED_CHANNEL)
        try:
            return await asyncio.shield(future)
        finally:
            self.queue.futures.pop(job_id, None)

    async def _poll(self) -> None:
        """Resolve waiting futures from the jobs table, one query for all of them."""
        while True:
            waiting = self.queue.futures
            interval = POLL_NOTIFIED_S if self.wakeups.connected.is_set() else POLL_S
            if not waiting:
                interval = POLL_NOTIFIED_S
            await self.wakeups.wait(FINISHED_CHANNEL, interval)
            if not waiting:
                continue
            try:
                finished = await self.jobs.outcomes(list(waiting))
            except Exception as exc:
                log.warning("could not read job outcomes: %s", exc)
                await asyncio.sleep(POLL_NOTIFIED_S)
                continue
            for job_id, outcome in finished.items():
                future = waiting.get(job_id)
                if future is not None and not future.done():
                    future.set_result(outcome)
