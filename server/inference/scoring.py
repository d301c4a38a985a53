"""Verdict batches on the model thread: one forward pass per batch of score jobs.

With a two-stage model (`prepare` + `score_inputs`), a batch's preprocessing runs on the
preprocessing thread while the model thread runs the previous batch's forward; otherwise
`score_batch` does both on the model thread. A batch that runs out of device memory runs
again in halves (`MemoryShortage` first makes later batches smaller and lets the model
release what it keeps); only an image that does not fit alone fails, with a
`DeviceMemoryError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fakescope.device_memory import is_out_of_memory
from server.inference.batch_caps import MemoryShortage
from server.inference.model_thread import ModelThread, preprocess_executor
from server.inference.queue_jobs import (
    OUT_OF_MEMORY_SCORING,
    DeviceMemoryError,
    QueueFullError,
    QueueObserver,
    ScoreJob,
    fail_jobs,
    succeed_jobs,
)

ScoreBatch = Callable[[Sequence[Any]], Sequence[float]]
Prepare = Callable[[Sequence[Any]], Any]
ScoreInputs = Callable[[Any], Sequence[float]]


class ScoringStage:
    def __init__(
        self,
        score_batch: ScoreBatch,
        *,
        thread: ModelThread,
        observer: QueueObserver,
        shortage: MemoryShortage,
        prepare: Prepare | None = None,
        score_inputs: ScoreInputs | None = None,
    ) -> None:
        if (prepare is None) != (score_inputs is None):
            raise ValueError("prepare and score_inputs come together")
        self._score_batch = score_batch
        self._prepare = prepare
        self._score_inputs = score_inputs
        self._thread = thread
        self._observer = observer
        self._shortage = shortage
        self._preprocessor = preprocess_executor() if prepare is not None else None
        self._forward: asyncio.Task[None] | None = None  # the batch on the model thread

    async def run(self, batch: list[ScoreJob]) -> None:
        """Score `batch`; with two stages, returns once its forward has begun (at most one
        batch then waits behind the running one, so the queue stays the bound)."""
        live = [job for job in batch if not job.future.done()]
        if not live:
            return
        if self._prepare is None or self._preprocessor is None:
            await self._run_batch(live)
            return
        loop = asyncio.get_running_loop()
        images = [job.image for job in live]
        try:
            # Overlaps with the previous batch's forward, still on the model thread.
            inputs = await loop.run_in_executor(
                self._preprocessor, self._thread.exclusive, self._prepare, images
            )
        except Exception as exc:
            fail_jobs(live, exc)
            return
        previous, self._forward = self._forward, loop.create_task(self._run_forward(live, inputs))
        if previous is not None:
            await previous

    async def stop(self) -> None:
        """Cancel the running forward (its jobs fail) and the preprocessing thread."""
        if self._forward is not None:
            self._forward.cancel()
            await asyncio.gather(self._forward, return_exceptions=True)
            self._forward = None
        if self._preprocessor is not None:
            self._preprocessor.shutdown(wait=False, cancel_futures=True)

    async def _run_forward(self, live: list[ScoreJob], inputs: Any) -> None:
        assert self._score_inputs is not None
        loop = asyncio.get_running_loop()
        # No tokenizer_lock: the forward pass does not tokenize, and this overlap with
        # the preprocessing thread is the point of the pipeline.
        forward = loop.run_in_executor(self._thread.executor, self._score_inputs, inputs)
        del inputs  # the batch's tensors: not kept on the device if it must run again
        try:
            if not await self._settle(live, forward):
                await self._in_halves(live)
        except asyncio.CancelledError:  # stopping: the queue no longer holds these jobs
            fail_jobs(live, QueueFullError("server is shutting down"))
            raise

    async def _run_batch(self, live: list[ScoreJob]) -> None:
        scoring = self._thread.call(self._score_batch, [job.image for job in live])
        if not await self._settle(live, scoring):
            await self._in_halves(live)

    async def _settle(self, live: list[ScoreJob], scoring: Awaitable[Sequence[Any]]) -> bool:
        """`live` settled with the scores `scoring` gives, or with its failure; False (and
        nothing settled) when it ran out of device memory."""
        started = time.perf_counter()
        try:
            scores = await scoring
        except Exception as exc:
            if is_out_of_memory(exc):
                return False
            fail_jobs(live, exc)
            return True
        self._observer.batch_done(len(live), time.perf_counter() - started)
        succeed_jobs(live, [float(score) for score in scores])
        return True

    async def _in_halves(self, live: list[ScoreJob]) -> None:
        """`live` ran out of device memory: each half again; a single image that does not
        fit fails."""
        await self._shortage.after("score", len(live))
        if len(live) == 1:
            fail_jobs(live, DeviceMemoryError(OUT_OF_MEMORY_SCORING))
            return
        half = len(live) // 2
        for part in (live[:half], live[half:]):
            if part := [job for job in part if not job.future.done()]:
                await self._run_batch(part)
