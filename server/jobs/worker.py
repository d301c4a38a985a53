"""The worker role: claim jobs from the SQL queue and run them on this process's model.

A job runs through the same services an all-in-one server uses (`AnalysisService`,
`AskService`), so it is batched with the other jobs in flight, cached, and stored exactly
as if it had come in over HTTP here. The worker keeps up to `capacity` jobs in flight
(twice the batch size: the next batch is ready when one finishes), renews their lease
every third of it, and gives back what it still holds when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from functools import partial
from typing import Any

from fakescope.errors import ImageError
from server.analyze.service import AnalysisService, busy_problem
from server.ask.questions import Question
from server.ask.service import AskService, parse_event
from server.background import cancel_and_wait
from server.db.database import is_transient_or_busy
from server.db.notify import Wakeups
from server.inference.host import ModelHost, ModelState
from server.inference.queue_jobs import QueueFullError
from server.jobs import registry
from server.jobs.store import QUEUED_CHANNEL, ClaimedJob, JobStore
from server.metrics import Metrics
from server.problems import ProblemError, image_problem

log = logging.getLogger("fakescope.server")
POLL_S = 0.02  # claim polling without notifications (SQLite)
POLL_NOTIFIED_S = 1.0  # with LISTEN active: a safety net for lost notifications
STOP_GRACE_S = 10.0  # how long a stopping worker lets its running jobs finish
PROGRESS_EVERY_S = 0.1  # how often a streamed answer's text so far is written
REGISTER_RETRY_S = 2.0  # how often a worker that could not register tries again


class JobWorker:
    def __init__(
        self,
        host: ModelHost,
        analyses: AnalysisService,
        ask: AskService,
        jobs: JobStore,
        metrics: Metrics,
    ) -> None:
        self.host = host
        self.analyses = analyses
        self.ask = ask
        self.jobs = jobs
        self.metrics = metrics
        self.settings = analyses.settings
        self.id = uuid.uuid4().hex
        self.capacity = max(2, 2 * self.settings.batch_size)
        self.wakeups = Wakeups(self.settings.database_url, [QUEUED_CHANNEL])
        self._running: dict[int, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.registered = asyncio.Event()
        self._stopping = False

    def start(self) -> None:
        self.wakeups.start()
        self._tasks = [asyncio.get_running_loop().create_task(self._serve())]

    async def stop(self) -> None:
        self._stopping = True
        serve, *keep_alive = self._tasks
        await cancel_and_wait(serve)  # no more claims; the leases are renewed meanwhile
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=STOP_GRACE_S)
        await cancel_and_wait(*keep_alive)
        for task in list(self._running.values()):
            task.cancel()
        await self.wakeups.stop()
        if self.registered.is_set():
            with contextlib.suppress(Exception):
                released = await self.jobs.release(self.id)
                if released:
                    log.info("worker %s gave back %d unfinished jobs", self.id, released)
                await registry.stopped(self.analyses.db, self.id)

    async def _serve(self) -> None:
        await self.host.wait_ready()
        if self.host.state is not ModelState.READY or self.host.model is None:
            log.error("worker has no model (%s): it takes no jobs", self.host.error)
            return
        await self._register()
        self.registered.set()
        log.info("worker %s serves %s", self.id, self.host.identity.model_key)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._keep_alive()))
        while not self._stopping:
            try:
                claimed = await self.jobs.claim(
                    self.id, self.host.identity, self.capacity - len(self._running)
                )
            except Exception as exc:
                log.warning("could not claim jobs: %s", exc)
                claimed = []
            for job in claimed:
                task = loop.create_task(self._run(job))
                self._running[job.id] = task
                task.add_done_callback(partial(self._done, job.id))
            if claimed and len(self._running) < self.capacity:
                continue  # more may be waiting
            notified = self.wakeups.connected.is_set()
            await self.wakeups.wait(POLL_NOTIFIED_S if notified else POLL_S)

    async def _register(self) -> None:
        """Add this worker to the `workers` table, trying again until the database takes
        it: a worker whose model loaded while the database was away must not sit idle
        (and unseen by the API processes) for the rest of its life."""
        while True:
            try:
                await self._register_once()
                return
            except Exception as exc:
                log.warning(
                    "worker %s could not register (trying again in %g s): %s",
                    self.id,
                    REGISTER_RETRY_S,
                    exc,
                )
            await asyncio.sleep(REGISTER_RETRY_S)

    async def _register_once(self) -> None:
        assert self.host.model is not None
        await registry.register(
            self.analyses.db,
            self.id,
            self.host.identity,
            self.host.model.info.to_dict(),
            self.capacity,
        )

    def _done(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self.wakeups.poke()  # room for another job

    async def _keep_alive(self) -> None:
        """Lease renewal, heartbeat and expiry of dead workers' jobs, every third of a lease.

        Renewal comes first and on its own (it goes on through a short outage): a failed
        heartbeat must not cost the leases of the jobs running here.
        """
        interval = self.settings.job_lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.jobs.renew(self.id, list(self._running))
            except Exception as exc:
                log.warning("worker %s could not renew its leases: %s", self.id, exc)
            try:
                if not await registry.heartbeat(self.analyses.db, self.id):
                    log.warning("worker %s had no row in `workers`: registering again", self.id)
                    await self._register_once()  # a failure: the next round tries again
                expired = await self.jobs.expire()
                if expired.requeued or expired.failed or expired.stale:
                    log.warning(
                        "jobs of a lost worker: %d queued again, %d failed; %d never claimed",
                        expired.requeued,
                        expired.failed,
                        expired.stale,
                    )
            except Exception as exc:
                log.warning("worker heartbeat failed: %s", exc)

    async def _run(self, job: ClaimedJob) -> None:
        answer: str | None = None
        try:
            answer = await self._execute(job)
        except (ProblemError, ImageError) as exc:
            problem = image_problem(exc) if isinstance(exc, ImageError) else exc
            await self._end(
                job, status=problem.status_code, code=problem.code, detail=problem.detail
            )
            return
        except QueueFullError as exc:
            problem = busy_problem(exc)
            await self._end(
                job, status=503, code=problem.code or "overloaded", detail=problem.detail
            )
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient_or_busy(exc) and job.attempts < self.jobs.attempts:
                # The database connection dropped under the job (or the pool stayed
                # full), not the job's fault: another try (here or on another worker)
                # most likely succeeds.
                log.warning("job %d met a database error; queued again: %s", job.id, exc)
                try:
                    await self.jobs.requeue(job.id, self.id)
                except Exception as requeue_exc:  # its lease lapses, and expiry requeues it
                    log.warning("could not queue job %d again: %s", job.id, requeue_exc)
                self.metrics.job_done(job.kind, "retried")
                return
            log.exception("job %d failed", job.id)
            detail = f"the GPU worker failed: {type(exc).__name__}: {exc}"
            await self._end(job, status=503, code="worker-error", detail=detail)
            return
        try:
            if not await self.jobs.finish(job.id, self.id, answer=answer):
                log.warning("job %d was taken from this worker before it finished", job.id)
        except Exception as exc:
            log.warning("could not finish job %d: %s", job.id, exc)
        self.metrics.job_done(job.kind, "done")

    async def _end(self, job: ClaimedJob, *, status: int, code: str, detail: str) -> None:
        self.metrics.job_done(job.kind, "failed")
        try:
            await self.jobs.fail(job.id, self.id, status=status, code=code, detail=detail)
        except Exception as exc:
            log.warning("could not fail job %d: %s", job.id, exc)

    async def _stream_answer(self, job: ClaimedJob, question: Question) -> str:
        """Generate as a streamed answer, recording the text so far in the job's row (at
        most every PROGRESS_EVERY_S) for the API process to relay; the whole answer."""
        events, _ = await self.ask.start_stream(question)
        loop = asyncio.get_running_loop()
        text, recorded, recorded_at = "", "", -PROGRESS_EVERY_S
        async for block in events:
            name, data = parse_event(block)
            if name == "token":
                text += str(data["text"])
                if loop.time() - recorded_at >= PROGRESS_EVERY_S and text != recorded:
                    try:
                        await self.jobs.progress(job.id, self.id, text)
                    except Exception as exc:  # the text so far is best effort: the next
                        # write, or the finished job, carries it to the API process
                        log.warning("could not record job %d's progress: %s", job.id, exc)
                    recorded, recorded_at = text, loop.time()
            elif name == "error":
                status = int(data.get("status") or 503)
                raise ProblemError(status, str(data.get("detail")), code="generation-failed")
            elif name == "done":
                return str(data["answer"])
        raise ProblemError(503, "the answer stream ended without an answer", code="worker-error")

    async def _execute(self, job: ClaimedJob) -> str | None:
        if job.kind == "analyze":
            if job.image is None:
                raise ProblemError(400, "the job carries no image")
            await self.analyses.analyze(job.image, explain=job.explain)
            return None
        if job.kind == "ask":
            question = question_from_job(job.question)
            if job.question and job.question.get("stream"):
                return await self._stream_answer(job, question)
            payload, _ = await self.ask.answer(question)
            return str(payload["answer"])
        raise ProblemError(422, f"unknown job kind {job.kind!r}")


def question_to_job(question: Question) -> dict[str, Any]:
    return {
        "sha256": question.sha256,
        "kind": question.kind,
        "text": question.text,
        "prompt": question.prompt,
    }


def question_from_job(data: dict[str, Any] | None) -> Question:
    if not data:
        raise ProblemError(422, "the job carries no question")
    return Question(
        sha256=str(data["sha256"]),
        kind=str(data["kind"]),
        text=str(data["text"]),
        prompt=str(data["prompt"]),
    )
