"""Answering questions: cached answers first, else one generation on the model thread.

Reading the image's row, the stored answer and the image's bytes, and storing a new answer,
go on through dropped database connections (a terminated backend, a failover) for the
request's retry budget (`server/jobs/retry.py`), one for all these steps together
(`RetryAllowance`): each is safe to repeat (an answer stored by a try whose reply was lost
meets its own row, which counts as stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlalchemy.exc import IntegrityError

from fakescope.images import decode_image
from server.analyze.image_rows import DatabaseImageStore
from server.analyze.service import (
    RETRY_AFTER_BUSY_S,
    STOP_GRACE_S,
    AnalysisService,
    busy_problem,
    raise_for_outcome,
    storable_text,
)
from server.ask.questions import Question
from server.background import settle
from server.db.answers import find_answer, image_known, new_answer
from server.db.models import Answer
from server.inference.host import ModelHost
from server.inference.queue_jobs import QueueFullError
from server.jobs.remote_host import RemoteHost, RemoteStream
from server.jobs.retry import RetryAllowance, request_budget_s
from server.jobs.store import JobOutcome
from server.problems import (
    PROBLEM_TYPE_BASE,
    RETRY_AFTER_UNAVAILABLE_S,
    TITLES,
    ProblemError,
    service_unavailable,
)
from server.timefmt import iso_z, utcnow

log = logging.getLogger("fakescope.server")
_DONE = object()


class AskService:
    def __init__(self, analyses: AnalysisService) -> None:
        self.analyses = analyses
        self.host = analyses.host
        self.db = analyses.db
        self._inflight: dict[tuple[str, ...], asyncio.Task[Answer]] = {}
        self._retry_s = request_budget_s(analyses.settings.request_timeout_s)
        # What the retries measure and sleep with; a test may put a fake clock in place.
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], Awaitable[object]] = asyncio.sleep

    def allowance(self) -> RetryAllowance:
        """A new request's time for riding out database outages, for all its steps."""
        return RetryAllowance(self._retry_s, clock=self.clock, sleep=self.sleep)

    async def stop(self) -> None:
        """At shutdown, after the model host stopped: let answers in flight be stored (or
        fail), before the database goes."""
        await settle(list(self._inflight.values()), STOP_GRACE_S)

    def payload(self, question: Question, answer: str, created_at: Any) -> dict[str, Any]:
        model = self.host.model
        info = model.info.to_dict() if model is not None else None
        return {
            "sha256": question.sha256,
            "kind": question.kind,
            "aspect": question.text if question.kind == "aspect" else None,
            "question": question.text if question.kind == "question" else None,
            "answer": answer,
            "model": info,
            "untrained": bool(info and info.get("untrained")),
            "prompt_version": self.host.prompt_version,
            "created_at": iso_z(created_at),
        }

    async def cached(
        self, question: Question, allowance: RetryAllowance | None = None
    ) -> Answer | None:
        """The stored answer, or None after checking that the model may answer it at all.
        While a checkpoint loads, stored answers are served already (`require_cached_reads`)."""
        self.analyses.require_cached_reads()
        if self.host.model is None and self.host.ready:
            raise ProblemError(
                409,
                "this server runs in provenance-only mode (no model configured); "
                "questions need a model",
                code="provenance-only",
            )
        identity = self.host.identity

        async def read() -> Answer | None:
            async with self.db.read() as session:
                if not await image_known(session, question.sha256):
                    raise ProblemError(
                        404, "this image has not been analysed; POST /v1/analyze first"
                    )
                return await find_answer(
                    session, question.sha256, identity, question.kind, question.prompt_hash
                )

        return await (allowance or self.allowance()).run(read)

    async def _image(self, question: Question, allowance: RetryAllowance) -> Any:
        images = self.analyses.images
        if isinstance(images, DatabaseImageStore):
            data = await images.load(question.sha256, allowance=allowance)
        else:
            data = await images.load(question.sha256)
        if data is None:
            raise ProblemError(
                409,
                "the image's bytes are not kept on this server; analyse it again to ask about it",
                code="image-not-stored",
            )
        decoded = await asyncio.to_thread(decode_image, data, self.analyses.limits)
        return decoded.rgb

    async def _store(self, question: Question, text: str, allowance: RetryAllowance) -> Answer:
        identity = self.host.identity

        async def store() -> Answer:
            row = new_answer(
                question.sha256, identity, question.kind, question.prompt_hash, question.text, text
            )
            try:
                async with self.db.write() as session:
                    session.add(row)
            except IntegrityError:
                # Answered twice at once (greedy decoding gives the same text), or stored by
                # an earlier try whose commit's reply was lost.
                pass
            return row

        return await allowance.run(store)

    async def _answer_remotely(
        self, remote: RemoteHost, question: Question, allowance: RetryAllowance
    ) -> Answer:
        """A GPU worker answers (FAKESCOPE_ROLE=api) and stores the answer; read it back."""
        from server.jobs.worker import question_to_job

        self.analyses.require_worker()
        try:
            async with asyncio.timeout(self.analyses.settings.request_timeout_s):
                outcome = await remote.run(
                    "ask", question.sha256, image=None, question=question_to_job(question)
                )
        except TimeoutError as exc:
            raise service_unavailable(
                "the answer took too long", RETRY_AFTER_BUSY_S, "timeout"
            ) from exc
        except QueueFullError as exc:
            raise busy_problem(exc) from exc
        raise_for_outcome(outcome)
        return await self._stored(question, allowance)

    async def _stored(self, question: Question, allowance: RetryAllowance) -> Answer:
        """The answer a worker has just stored."""
        identity = self.host.identity

        async def read() -> Answer | None:
            async with self.db.read() as session:
                return await find_answer(
                    session, question.sha256, identity, question.kind, question.prompt_hash
                )

        found = await allowance.run(read)
        if found is None:  # the workers now serve another model (a rolling upgrade)
            raise ProblemError(503, "the worker's answer was not found", code="worker-error")
        return found

    async def _stream_remotely(
        self, remote: RemoteHost, question: Question, started: float, allowance: RetryAllowance
    ) -> AsyncIterator[str]:
        """A GPU worker answers (FAKESCOPE_ROLE=api); its text is relayed as it grows.

        Fails with a problem (before streaming starts) when the job fails before any text.
        """
        from server.jobs.worker import question_to_job

        self.analyses.require_worker()
        job = {**question_to_job(question), "stream": True}
        try:
            stream = await remote.stream("ask", question.sha256, question=job)
        except QueueFullError as exc:
            raise busy_problem(exc) from exc
        try:
            async with asyncio.timeout(self.analyses.settings.request_timeout_s):
                first = await stream.next()
        except TimeoutError as exc:
            remote.forget(stream)
            raise service_unavailable(
                "the answer took too long", RETRY_AFTER_BUSY_S, "timeout"
            ) from exc
        if isinstance(first, JobOutcome):
            raise_for_outcome(first)
        else:
            self.analyses.metrics.first_token(time.perf_counter() - started)
        return self._relay_remote(question, remote, stream, first, allowance)

    async def _relay_remote(
        self,
        question: Question,
        remote: RemoteHost,
        stream: RemoteStream,
        item: str | JobOutcome,
        allowance: RetryAllowance,
    ) -> AsyncIterator[str]:
        try:
            while not isinstance(item, JobOutcome):
                yield _event("token", {"text": item})
                item = await stream.next()
            raise_for_outcome(item)  # failed: its problem, as the worker reported it
            row = await self._stored(question, allowance)
        except ProblemError as exc:
            yield problem_event(exc)
            return
        finally:
            remote.forget(stream)  # a client that left: the job still finishes and is cached
        yield _event("done", self.payload(question, row.answer, row.created_at))

    async def answer(self, question: Question) -> tuple[dict[str, Any], bool]:
        allowance = self.allowance()
        found = await self.cached(question, allowance)
        if found is not None:
            return self.payload(question, found.answer, found.created_at), True
        self.analyses.require_ready()
        if isinstance(self.host, RemoteHost):
            row = await self._answer_remotely(self.host, question, allowance)
            return self.payload(question, row.answer, row.created_at), False
        assert isinstance(self.host, ModelHost)
        task = await self._answering(self.host, question, allowance)
        try:
            async with asyncio.timeout(self.analyses.settings.request_timeout_s):
                row = await asyncio.shield(task)
        except TimeoutError as exc:
            raise service_unavailable(
                "the answer took too long", RETRY_AFTER_BUSY_S, "timeout"
            ) from exc
        except QueueFullError as exc:  # the GPU ran out of memory for it, or shutting down
            raise busy_problem(exc) from exc
        return self.payload(question, row.answer, row.created_at), False

    async def _answering(
        self, host: ModelHost, question: Question, allowance: RetryAllowance
    ) -> asyncio.Task[Answer]:
        """The task generating and storing this answer; twins asked meanwhile share it.

        It goes on when its client times out or leaves: the answer is stored all the same,
        so that the retry is a cache hit instead of the same generation started over.
        """
        key = (question.sha256, host.identity.model_key, question.kind, question.prompt_hash)
        task = self._inflight.get(key)
        if task is not None:
            return task
        image = await self._image(question, allowance)
        task = self._inflight.get(key)  # asked again while the image was read
        if task is not None:
            return task
        try:
            # Batched with the other generations waiting.
            future = host.queue.submit_generation(
                image,
                question.prompt,
                max_new_tokens=self.analyses.settings.max_new_tokens,
                key=question.sha256,
            )
        except QueueFullError as exc:
            raise busy_problem(exc) from exc
        task = asyncio.get_running_loop().create_task(
            self._generate_and_store(question, future, allowance)
        )
        self._inflight[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    async def _generate_and_store(
        self, question: Question, future: asyncio.Future[str], allowance: RetryAllowance
    ) -> Answer:
        return await self._store(question, storable_text(str(await future)), allowance)

    def _finished(self, key: tuple[str, ...], task: asyncio.Task[Answer]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody waited for is not logged as lost

    async def start_stream(self, question: Question) -> tuple[AsyncIterator[str], bool]:
        """SSE-ready events (JSON `data`): `token` pieces, then `done` with the whole answer.

        Everything that can fail with a problem response fails here, before streaming starts.
        """
        allowance = self.allowance()
        found = await self.cached(question, allowance)
        if found is not None:
            return self._replay(question, found), True
        self.analyses.require_ready()
        started = time.perf_counter()
        if isinstance(self.host, RemoteHost):
            return await self._stream_remotely(self.host, question, started, allowance), False
        assert isinstance(self.host, ModelHost)
        image = await self._image(question, allowance)
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def on_text(piece: str) -> None:  # on the model thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens
                loop.call_soon_threadsafe(pieces.put_nowait, piece)

        # Batched with the other generations waiting: each row's text goes to its own
        # client as it is decoded; a client that leaves sets `stop` (its row is then
        # ignored, and the batch stops early once no row is wanted).
        try:
            job = self.host.queue.submit_stream(
                image,
                question.prompt,
                max_new_tokens=self.analyses.settings.max_new_tokens,
                on_text=on_text,
                stop=stop,
            )
        except QueueFullError as exc:
            raise busy_problem(exc) from exc
        # Done callbacks run after the pieces already handed to the loop: _DONE comes last.
        job.add_done_callback(lambda done: _ended(done, pieces))
        return self._relay(question, pieces, job, stop, started, allowance), False

    async def _replay(self, question: Question, row: Answer) -> AsyncIterator[str]:
        yield _event("token", {"text": row.answer})
        yield _event("done", self.payload(question, row.answer, row.created_at))

    async def _relay(
        self,
        question: Question,
        pieces: asyncio.Queue[object],
        job: asyncio.Future[str],
        stop: threading.Event,
        started: float,
        allowance: RetryAllowance,
    ) -> AsyncIterator[str]:
        collected: list[str] = []
        try:
            while (piece := await pieces.get()) is not _DONE:
                if not collected:
                    self.analyses.metrics.first_token(time.perf_counter() - started)
                collected.append(storable_text(str(piece)))
                yield _event("token", {"text": collected[-1]})
            text = storable_text(str(await job))
        except Exception as exc:
            failed = service_unavailable(
                f"generation failed: {exc}", RETRY_AFTER_BUSY_S, "generation-failed"
            )
            yield problem_event(failed)
            return
        finally:
            stop.set()  # the client may have gone: stop generating for nobody
        try:
            # The whole answer, as the batch decoded it.
            row = await self._store(question, text, allowance)
            created_at = row.created_at
        except Exception:
            # The client has every piece already: end its stream properly, uncached.
            log.exception("a streamed answer about %s could not be stored", question.sha256)
            created_at = utcnow()
        yield _event("done", self.payload(question, text, created_at))


def _ended(job: asyncio.Future[str], pieces: asyncio.Queue[object]) -> None:
    """A streamed generation ended: its relay reads the rest. Its failure is marked seen:
    a relay that is gone (the client left, the server stopped) never awaits it, and it
    was logged at exit as "Future exception was never retrieved"."""
    if not job.cancelled():
        job.exception()
    pieces.put_nowait(_DONE)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def problem_event(problem: ProblemError) -> str:
    """The `error` event that ends a stream: the problem+json body the same failure gets
    before streaming starts, with its `code`, and for a 503 `retry_after` (seconds: the
    Retry-After header a stream's failure cannot send any more)."""
    title = TITLES.get(problem.status_code, "Error")
    data: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + problem.code,
        "title": title,
        "status": problem.status_code,
        "detail": problem.detail or title,
        "code": problem.code,
    }
    if problem.status_code == 503:
        retry = (problem.headers or {}).get("Retry-After", str(RETRY_AFTER_UNAVAILABLE_S))
        data["retry_after"] = int(retry)
    return _event("error", data)


def shutting_down_event() -> str:
    """The last event of a stream the server cancelled at shutdown (see the controller)."""
    return problem_event(
        service_unavailable(
            "the server is shutting down before the answer was complete; ask again shortly",
            RETRY_AFTER_BUSY_S,
            "shutting-down",
        )
    )


def parse_event(block: str) -> tuple[str, dict[str, Any]]:
    """The name and data of one event as this module writes it."""
    head, _, data = block.strip().partition("\ndata: ")
    parsed: dict[str, Any] = json.loads(data)
    return head.removeprefix("event: "), parsed
