"""Requests of an API process waiting for jobs: a future per plain request, a stream of
growing text per streamed one, several on one job when twin requests share it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from server.jobs.store import DONE, FAILED, JobOutcome
from server.problems import ProblemError


class RemoteStream:
    """A streamed job as its API process sees it: new text as it grows, then the outcome."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.sent = 0  # characters of the job's text already queued for the client
        self.items: asyncio.Queue[str | JobOutcome | ProblemError] = asyncio.Queue()

    def offer(self, outcome: JobOutcome) -> bool:
        """Queue what is new in the job's row; True once the job has finished.

        The row's text may be read from a character on (`outcome.answer_from`, the least
        any stream on the job has): this stream takes its own new part of it. A read from
        past what this stream has (it joined while the read ran) is no use to it: it is
        left for the next read, finished job or not.
        """
        if outcome.answer_from > self.sent:
            return False
        text = outcome.answer or ""
        end = outcome.answer_from + len(text)
        if end > self.sent:
            self.items.put_nowait(text[self.sent - outcome.answer_from :])
            self.sent = end
        if outcome.state in (DONE, FAILED):
            self.items.put_nowait(outcome)
            return True
        return False

    def abandon(self, problem: ProblemError) -> None:
        """End the stream with a problem (no worker is left to finish it)."""
        self.items.put_nowait(problem)

    async def next(self) -> str | JobOutcome:
        """The next new text, or the outcome; raises the problem that ended the stream."""
        item = await self.items.get()
        if isinstance(item, ProblemError):
            raise item
        return item


class Waiting:
    """Requests waiting for jobs, by job id (several may wait for one job); their number
    is what /metrics reads as queue depth. Each waiter's start (a clock reading) is kept:
    how long a request rides out an outage counts from it."""

    def __init__(self) -> None:
        self.futures: dict[int, list[asyncio.Future[JobOutcome]]] = {}
        self.streams: dict[int, list[RemoteStream]] = {}
        self.models: dict[int, str] = {}  # job id -> the model key a worker must serve
        self.since: dict[object, float] = {}  # waiter (future or stream) -> when it started

    @property
    def depth(self) -> int:
        return sum(map(len, self.futures.values())) + sum(map(len, self.streams.values()))

    def __bool__(self) -> bool:
        return bool(self.futures or self.streams)

    def add_future(
        self, job_id: int, model_key: str, future: asyncio.Future[JobOutcome], since: float
    ) -> None:
        self.futures.setdefault(job_id, []).append(future)
        self.models[job_id] = model_key
        self.since[future] = since

    def add_stream(self, stream: RemoteStream, model_key: str, since: float) -> None:
        self.streams.setdefault(stream.job_id, []).append(stream)
        self.models[stream.job_id] = model_key
        self.since[stream] = since

    def remove_future(self, job_id: int, future: asyncio.Future[JobOutcome]) -> None:
        _remove(self.futures, job_id, future)
        self.since.pop(future, None)
        self._forget_model(job_id)

    def remove_stream(self, stream: RemoteStream) -> None:
        _remove(self.streams, stream.job_id, stream)
        self.since.pop(stream, None)
        self._forget_model(stream.job_id)

    def fail(self, job_id: int, problem: Callable[[], ProblemError]) -> int:
        """Answer a job's waiters with a problem each and forget them; how many there were."""
        answered = 0
        for future in self.futures.get(job_id, []):
            if not future.done():
                future.set_exception(problem())
                answered += 1
        for stream in self.streams.get(job_id, []):
            stream.abandon(problem())
            answered += 1
        self.drop(job_id)
        return answered

    def fail_waiting_since(self, moment: float, problem: Callable[[], ProblemError]) -> int:
        """Answer with a problem each waiter that started waiting at `moment` or before, and
        forget it; how many there were. Later waiters go on waiting."""
        answered = 0
        for job_id, futures in list(self.futures.items()):
            for future in [f for f in futures if self.since.get(f, moment) <= moment]:
                if not future.done():
                    future.set_exception(problem())
                    answered += 1
                self.remove_future(job_id, future)
        for streams in list(self.streams.values()):
            for stream in [s for s in streams if self.since.get(s, moment) <= moment]:
                stream.abandon(problem())
                answered += 1
                self.remove_stream(stream)
        return answered

    def drop(self, job_id: int) -> None:
        """Forget a job's waiters (they were answered otherwise)."""
        for waiter in [*self.futures.pop(job_id, []), *self.streams.pop(job_id, [])]:
            self.since.pop(waiter, None)
        self.models.pop(job_id, None)

    def _forget_model(self, job_id: int) -> None:
        if job_id not in self.futures and job_id not in self.streams:
            self.models.pop(job_id, None)


def _remove(waiting: dict[int, list[Any]], job_id: int, waiter: object) -> None:
    waiters = waiting.get(job_id, [])
    if waiter in waiters:
        waiters.remove(waiter)
    if not waiters:
        waiting.pop(job_id, None)


def retrieve(future: asyncio.Future[JobOutcome]) -> None:
    """Mark a future's exception seen (its waiter may have gone: no "never retrieved")."""
    if not future.cancelled():
        future.exception()
