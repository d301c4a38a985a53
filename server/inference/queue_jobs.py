"""The jobs an :class:`server.inference.queue.InferenceQueue` holds, and how they settle.

Score jobs (verdicts), generation jobs (explanations, answers, streamed or not) and call
jobs (anything else); a generation job as a continuous decoding sees it
(:func:`answer_request`); futures settled from the model thread through the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fakescope.device_memory import is_out_of_memory
from fakescope.joining import AnswerRequest


class QueueFullError(Exception):
    """The queue holds as many jobs as it may; the caller should answer 503 with Retry-After."""


OUT_OF_MEMORY_SCORING = "the GPU is out of memory; try again shortly"
OUT_OF_MEMORY_ANSWERING = "the GPU ran out of memory while answering; try again shortly"


class DeviceMemoryError(QueueFullError):
    """The device ran out of memory for this job even alone (or after streaming part of its
    answer): a passing shortage, answered like a full queue (503 with Retry-After)."""


class QueueObserver(Protocol):
    def queue_depth(self, depth: int) -> None: ...
    def batch_done(self, size: int, seconds: float) -> None: ...
    def generation_done(self, size: int, seconds: float) -> None: ...
    def call_done(self, seconds: float) -> None: ...
    def out_of_memory(self, stage: str, size: int) -> None: ...


class NullObserver:
    def queue_depth(self, depth: int) -> None:
        pass

    def batch_done(self, size: int, seconds: float) -> None:
        pass

    def generation_done(self, size: int, seconds: float) -> None:
        pass

    def call_done(self, seconds: float) -> None:
        pass

    def out_of_memory(self, stage: str, size: int) -> None:
        pass


@dataclass
class ScoreJob:
    image: Any
    future: asyncio.Future[float]


@dataclass
class GenerateJob:
    image: Any
    prompt: str
    max_new_tokens: int
    future: asyncio.Future[str]
    on_text: Callable[[str], None] | None = None  # streamed: called on the model thread
    stop: threading.Event | None = None  # set when nobody wants this answer any more

    @property
    def abandoned(self) -> bool:
        return self.stop is not None and self.stop.is_set()


@dataclass
class CallJob:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    queued_at: float = field(default_factory=time.monotonic)


Job = ScoreJob | GenerateJob | CallJob


class Announcement:
    """A job announced to the batcher; `withdraw` it once (again is a no-op)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def withdraw(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


def text_router(jobs: Sequence[GenerateJob]) -> Callable[[int, str], None]:
    """`on_text(row, piece)` for a batch: each row's pieces to its own job, while wanted."""

    def route(row: int, piece: str) -> None:
        job = jobs[row]
        if job.on_text is not None and not job.abandoned:
            job.on_text(piece)

    return route


def answer_request(job: GenerateJob, loop: asyncio.AbstractEventLoop) -> AnswerRequest:
    """The job as a continuous decoding sees it; its callbacks run on the model thread.

    The answer is settled through the event loop after the pieces already sent there,
    so a stream's last piece comes before its end.
    """

    def send(piece: str) -> None:
        if job.on_text is not None and not job.abandoned:
            job.on_text(piece)

    def finish(text: str) -> None:
        call_soon(loop, settle, job.future, str(text), None)

    def fail(exc: BaseException) -> None:
        if is_out_of_memory(exc):  # a passing shortage (503), not a broken request (500)
            exc = DeviceMemoryError(OUT_OF_MEMORY_ANSWERING)
        call_soon(loop, settle, job.future, None, exc)

    return AnswerRequest(
        job.image,
        job.prompt,
        job.max_new_tokens,
        on_text=send if job.on_text is not None else None,
        wanted=lambda: not job.abandoned,
        finish=finish,
        fail=fail,
    )


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
        loop.call_soon_threadsafe(fn, *args)


def settle(future: asyncio.Future[str], text: str | None, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(text or "")


def same_generation(max_new_tokens: int) -> Callable[[Job], bool]:
    """Generation jobs that can share a `generate_batch` call with one of this length."""
    return lambda job: isinstance(job, GenerateJob) and job.max_new_tokens == max_new_tokens


def fail_jobs(jobs: Sequence[ScoreJob | GenerateJob], exc: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)


def succeed_jobs(jobs: Sequence[ScoreJob | GenerateJob], results: Sequence[Any]) -> None:
    for job, result in zip(jobs, results, strict=True):
        if not job.future.done():
            job.future.set_result(result)
