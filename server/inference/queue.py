"""A bounded queue in front of the one model thread; verdicts and generations run in batches.

The model is not re-entrant, so everything that touches it runs on one worker thread, fed by
one asyncio task that drains the queue. Three kinds of job wait in it:

- score jobs (verdicts): grouped into one forward pass. With a two-stage model (`prepare`
  + `score_inputs`), a batch's preprocessing runs on a separate preprocessing thread, so
  batch N+1 is prepared while the model thread runs batch N's forward;
- generation jobs (explanations, answers, streamed or not): those with the same
  `max_new_tokens` are grouped into one `generate_batch` call (greedy decoding gives each
  row what it would get alone); twins (same image key and prompt) share one generation.
  A streamed job hands each new piece of its row's text to its own `on_text` as it is
  decoded, and may be stopped (its client left): the batch decodes on while any of its
  jobs still wants the answer, and stops early once none does. Where the model decodes
  continuously (`generate_continuously`), the batch is a session instead: generation jobs
  that arrive while it decodes join it between steps (any `max_new_tokens`, where they
  fit), each row answers as soon as it ends, and jobs that could not join run next.
  Joining stops once any other kind of job waits, so nothing is overtaken for long;
- call jobs (anything else): run alone, in queue order.

Each kind runs in its own stage: `ScoringStage` (scoring.py), `GenerationBatches`
(generation_batches.py), `GenerationSessions` (generation_sessions.py), calls here. A score
or generation batch that runs out of device memory is not failed: the model lets go of what
it keeps (`release_memory`), the batch runs again in halves, and batches of that kind stay
at the smaller size for a while (`MemoryShortage`, batch_caps.py). Only a job that does not
fit alone, or a streamed one that already sent part of its answer, fails
(`DeviceMemoryError`, a 503).

The model thread and the tokenizer rule are in model_thread.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from server.inference.batch_caps import BatchCaps, MemoryShortage
from server.inference.generation_batches import GenerateBatch, GenerationBatches
from server.inference.generation_sessions import GenerateContinuously, GenerationSessions
from server.inference.model_thread import ModelThread
from server.inference.queue_jobs import (
    Announcement,
    CallJob,
    GenerateJob,
    Job,
    NullObserver,
    QueueFullError,
    QueueObserver,
    ScoreJob,
    fail_jobs,
    same_generation,
)
from server.inference.scoring import Prepare, ScoreBatch, ScoreInputs, ScoringStage

T = TypeVar("T")


class InferenceQueue:
    """Bounded queue + batcher. `score_batch` maps a list of images to one p_fake each.

    With `prepare` and `score_inputs` (both given), `score_batch` is not used: `prepare`
    runs on the preprocessing thread and `score_inputs` on the model thread, overlapping
    with the next batch's `prepare`. `generate_batch(images, prompts, max_new_tokens)`
    answers generation jobs.
    """

    def __init__(
        self,
        score_batch: ScoreBatch,
        *,
        max_queue: int,
        batch_size: int,
        batch_wait_s: float,
        executor: ThreadPoolExecutor | None = None,
        observer: QueueObserver | None = None,
        prepare: Prepare | None = None,
        score_inputs: ScoreInputs | None = None,
        generate_batch: GenerateBatch | None = None,
        generate_continuously: GenerateContinuously | None = None,
        release_memory: Callable[[], None] | None = None,
    ) -> None:
        self._thread = ModelThread(executor)
        self._observer: QueueObserver = observer or NullObserver()
        self._shortage = MemoryShortage(
            BatchCaps(batch_size), self._observer, self._thread, release_memory
        )
        self._scoring = ScoringStage(
            score_batch,
            prepare=prepare,
            score_inputs=score_inputs,
            thread=self._thread,
            observer=self._observer,
            shortage=self._shortage,
        )
        self._batches = (
            GenerationBatches(
                generate_batch,
                thread=self._thread,
                observer=self._observer,
                shortage=self._shortage,
            )
            if generate_batch is not None
            else None
        )
        # Unbounded asyncio queue: the bound is checked in _put, over the queue and the
        # jobs taken out of order and set aside (the backlog), so both count.
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._backlog: deque[Job] = deque()
        self._sessions = (
            GenerationSessions(
                generate_continuously,
                queue=self._queue,
                backlog=self._backlog,
                depth=lambda: self.depth,
                thread=self._thread,
                observer=self._observer,
                shortage=self._shortage,
            )
            if generate_continuously is not None
            else None
        )
        self._max_queue = max(1, max_queue)
        self._batch_wait_s = max(0.0, batch_wait_s)
        self._task: asyncio.Task[None] | None = None
        self._current: list[Job] = []  # taken by the batcher, not yet handed to a thread
        self._announced = 0
        self._announced_generations = 0
        self._generations: dict[Hashable, asyncio.Future[str]] = {}

    @property
    def depth(self) -> int:
        joining = self._sessions.joining if self._sessions is not None else 0
        return self._queue.qsize() + len(self._backlog) + joining

    @property
    def executor(self) -> ThreadPoolExecutor:
        return self._thread.executor

    @property
    def tokenizer_lock(self) -> threading.Lock:
        return self._thread.tokenizer_lock

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._scoring.stop()
        waiting = [*self._current, *self._backlog]
        self._current = []
        self._backlog.clear()
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(QueueFullError("server is shutting down"))

    # -- announcements: work known to be coming, worth waiting a batch window for ---------

    def announce(self) -> None:
        """A score request is on its way (its image is being decoded): worth waiting for."""
        self._announced += 1

    def withdraw(self) -> None:
        """An announced request will not come after all (or has just arrived)."""
        self._announced = max(0, self._announced - 1)

    def announce_generation(self) -> Announcement:
        """A generation job is on its way (its request is scored first): worth waiting for.

        Withdraw the announcement (idempotent) when the job will not come; submitting the
        job with it withdraws it too.
        """
        self._announced_generations += 1
        return Announcement(self._generation_withdrawn)

    def _generation_withdrawn(self) -> None:
        self._announced_generations = max(0, self._announced_generations - 1)

    # -- submitting work ------------------------------------------------------------------

    async def score(self, image: Any, *, announced: bool = False) -> float:
        """p_fake for one image, computed in a batch with whatever else is waiting."""
        if announced:
            self.withdraw()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._put(ScoreJob(image, future))
        return await future

    async def generate(
        self,
        image: Any,
        prompt: str,
        *,
        max_new_tokens: int,
        key: Hashable | None = None,
        announcement: Announcement | None = None,
    ) -> str:
        """The answer to `prompt` about `image`, generated in a batch with its peers."""
        future = self.submit_generation(
            image, prompt, max_new_tokens=max_new_tokens, key=key, announcement=announcement
        )
        return await asyncio.shield(future)  # shielded: a twin may share this future

    def submit_generation(
        self,
        image: Any,
        prompt: str,
        *,
        max_new_tokens: int,
        key: Hashable | None = None,
        announcement: Announcement | None = None,
    ) -> asyncio.Future[str]:
        """Enqueue a generation now (QueueFullError at once when full).

        `key` names the image (e.g. its sha256): a request for the same key, prompt and
        `max_new_tokens` as one not yet answered shares its future (await it through
        `asyncio.shield`, since it may be shared).
        """
        if announcement is not None:
            announcement.withdraw()
        twin_key = None if key is None else (key, prompt, max_new_tokens)
        if twin_key is not None:
            twin = self._generations.get(twin_key)
            if twin is not None and not twin.done():
                return twin
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._put(GenerateJob(image, prompt, max_new_tokens, future))
        if twin_key is not None:
            self._generations[twin_key] = future
            future.add_done_callback(lambda done: self._forget(twin_key, done))
        return future

    def submit_stream(
        self,
        image: Any,
        prompt: str,
        *,
        max_new_tokens: int,
        on_text: Callable[[str], None],
        stop: threading.Event,
        announcement: Announcement | None = None,
    ) -> asyncio.Future[str]:
        """Enqueue a streamed generation now (QueueFullError at once when full).

        It is batched with the other generations of the same `max_new_tokens`.
        `on_text(piece)` is called on the model thread with each new piece of the
        answer (hop to the event loop with `call_soon_threadsafe`); set `stop` when
        the answer is no longer wanted. The future holds the whole answer.
        """
        if announcement is not None:
            announcement.withdraw()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._put(GenerateJob(image, prompt, max_new_tokens, future, on_text, stop))
        return future

    def _forget(self, twin_key: Hashable, future: asyncio.Future[str]) -> None:
        if self._generations.get(twin_key) is future:
            del self._generations[twin_key]

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the model thread, in queue order (streams, anything unbatched)."""
        return await self.submit(fn)

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Enqueue `fn` now (QueueFullError at once when full); await the future for its result."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._put(CallJob(fn, future))
        return future

    def _put(self, job: Job) -> None:
        if self.depth >= self._max_queue:
            raise QueueFullError(f"inference queue is full ({self._max_queue} waiting)")
        self._queue.put_nowait(job)
        self._observer.queue_depth(self.depth)

    # -- the batcher ----------------------------------------------------------------------

    async def _next(self, wait_s: float) -> Job | None:
        with contextlib.suppress(asyncio.QueueEmpty):
            return self._queue.get_nowait()
        if wait_s <= 0:
            return None
        try:
            async with asyncio.timeout(wait_s):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def _take(self) -> Job:
        """The oldest job: set-aside jobs first, they were queued before the rest."""
        if self._backlog:
            return self._backlog.popleft()
        return await self._queue.get()

    def _set_aside(self, matches: Callable[[Job], bool]) -> Job | None:
        for job in self._backlog:
            if matches(job):
                self._backlog.remove(job)
                return job
        return None

    async def _collect(
        self,
        first: Job,
        matches: Callable[[Job], bool],
        announced: Callable[[], int],
        limit: int,
    ) -> list[Job]:
        """`first` and the jobs like it that are waiting, or come within the batch window
        (at most `limit` in all)."""
        loop = asyncio.get_running_loop()
        batch = [first]
        deadline = loop.time() + self._batch_wait_s
        while len(batch) < limit:
            job = self._set_aside(matches)
            if job is None:
                # Wait (at most batch_wait) only for requests known to be coming: a lone
                # request goes straight to the model.
                if self._queue.empty() and announced() == 0:
                    break
                job = await self._next(deadline - loop.time())
                if job is None:
                    break
                if not matches(job):
                    self._backlog.append(job)  # runs after this batch, in its queue order
                    continue
            batch.append(job)
        self._observer.queue_depth(self.depth)
        return batch

    async def _drain(self) -> None:
        while True:
            job = await self._take()
            self._current = [job]  # out of the queue: stop() fails these if it cancels us
            self._observer.queue_depth(self.depth)
            if isinstance(job, CallJob):
                await self._run_call(job)
            elif isinstance(job, GenerateJob):
                self._current = batch = await self._collect(
                    job,
                    same_generation(job.max_new_tokens),
                    lambda: self._announced_generations,
                    self._shortage.caps.limit("generate"),
                )
                await self._run_generations([j for j in batch if isinstance(j, GenerateJob)])
            else:
                self._current = batch = await self._collect(
                    job,
                    lambda j: isinstance(j, ScoreJob),
                    lambda: self._announced,
                    self._shortage.caps.limit("score"),
                )
                await self._scoring.run([j for j in batch if isinstance(j, ScoreJob)])
            self._current = []

    # -- generation and calls -------------------------------------------------------------

    async def _run_generations(self, batch: list[GenerateJob]) -> None:
        for job in batch:
            if job.abandoned and not job.future.done():
                job.future.cancel()  # its client left before it ran: nobody waits for it
        live = [job for job in batch if not job.future.done()]
        if not live:
            return
        if self._sessions is not None and await self._sessions.run(live, self._current):
            return
        if self._batches is None:
            fail_jobs(live, RuntimeError("this queue was given no generate_batch"))
            return
        await self._batches.run(live)

    async def _run_call(self, job: CallJob) -> None:
        if job.future.done():
            return
        started = time.perf_counter()
        try:
            result = await self._thread.call(job.fn)
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
            return
        self._observer.call_done(time.perf_counter() - started)
        if not job.future.done():
            job.future.set_result(result)
