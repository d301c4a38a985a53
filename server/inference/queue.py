"""A bounded queue in front of the one model thread; detect requests are grouped into batches.

The model is not re-entrant, so everything that touches it (batched scoring, explanations,
answers) runs on one worker thread, fed by one asyncio task that drains the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
ScoreBatch = Callable[[Sequence[Any]], Sequence[float]]


class QueueFullError(Exception):
    """The queue holds as many jobs as it may; the caller should answer 503 with Retry-After."""


class QueueObserver(Protocol):
    def queue_depth(self, depth: int) -> None: ...
    def batch_done(self, size: int, seconds: float) -> None: ...
    def call_done(self, seconds: float) -> None: ...


class _NullObserver:
    def queue_depth(self, depth: int) -> None:
        pass

    def batch_done(self, size: int, seconds: float) -> None:
        pass

    def call_done(self, seconds: float) -> None:
        pass


@dataclass
class _ScoreJob:
    image: Any
    future: asyncio.Future[float]


@dataclass
class _CallJob:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    queued_at: float = field(default_factory=time.monotonic)


_Job = _ScoreJob | _CallJob


def model_executor() -> ThreadPoolExecutor:
    """The single thread that owns the model (load it there too)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="fakescope-model")


class InferenceQueue:
    """Bounded queue + batcher. `score_batch` maps a list of images to one p_fake each."""

    def __init__(
        self,
        score_batch: ScoreBatch,
        *,
        max_queue: int,
        batch_size: int,
        batch_wait_s: float,
        executor: ThreadPoolExecutor | None = None,
        observer: QueueObserver | None = None,
    ) -> None:
        self._score_batch = score_batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self._batch_size = max(1, batch_size)
        self._batch_wait_s = max(0.0, batch_wait_s)
        self._executor = executor or model_executor()
        self._observer: QueueObserver = observer or _NullObserver()
        self._task: asyncio.Task[None] | None = None
        self._announced = 0

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def executor(self) -> ThreadPoolExecutor:
        return self._executor

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(QueueFullError("server is shutting down"))

    def announce(self) -> None:
        """A score request is on its way (its image is being decoded): worth waiting for."""
        self._announced += 1

    def withdraw(self) -> None:
        """An announced request will not come after all (or has just arrived)."""
        self._announced = max(0, self._announced - 1)

    async def score(self, image: Any, *, announced: bool = False) -> float:
        """p_fake for one image, computed in a batch with whatever else is waiting."""
        if announced:
            self.withdraw()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._put(_ScoreJob(image, future))
        return await future

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the model thread, in queue order (explanations, answers, streams)."""
        return await self.submit(fn)

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Enqueue `fn` now (QueueFullError at once when full); await the future for its result."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._put(_CallJob(fn, future))
        return future

    def _put(self, job: _Job) -> None:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull as exc:
            raise QueueFullError(
                f"inference queue is full ({self._queue.maxsize} waiting)"
            ) from exc
        self._observer.queue_depth(self._queue.qsize())

    async def _next(self, wait_s: float) -> _Job | None:
        with contextlib.suppress(asyncio.QueueEmpty):
            return self._queue.get_nowait()
        if wait_s <= 0:
            return None
        try:
            async with asyncio.timeout(wait_s):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            if isinstance(job, _CallJob):
                self._observer.queue_depth(self._queue.qsize())
                await self._run_call(job)
                continue
            batch: list[_ScoreJob] = [job]
            deferred: list[_CallJob] = []
            deadline = loop.time() + self._batch_wait_s
            while len(batch) < self._batch_size:
                # Wait (at most batch_wait) only for requests known to be coming: a lone
                # request goes straight to the model.
                if self._queue.empty() and self._announced == 0:
                    break
                nxt = await self._next(deadline - loop.time())
                if nxt is None:
                    break
                if isinstance(nxt, _ScoreJob):
                    batch.append(nxt)
                else:
                    deferred.append(nxt)
            self._observer.queue_depth(self._queue.qsize())
            await self._run_batch(batch)
            for call in deferred:
                await self._run_call(call)

    async def _run_batch(self, batch: list[_ScoreJob]) -> None:
        live = [job for job in batch if not job.future.done()]
        if not live:
            return
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            scores = await loop.run_in_executor(
                self._executor, self._score_batch, [job.image for job in live]
            )
        except Exception as exc:
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._observer.batch_done(len(live), time.perf_counter() - started)
        for job, score in zip(live, scores, strict=True):
            if not job.future.done():
                job.future.set_result(float(score))

    async def _run_call(self, job: _CallJob) -> None:
        if job.future.done():
            return
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            result = await loop.run_in_executor(self._executor, job.fn)
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
            return
        self._observer.call_done(time.perf_counter() - started)
        if not job.future.done():
            job.future.set_result(result)
