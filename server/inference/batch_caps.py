"""Batch sizes the inference queue keeps below its setting after the device ran short.

A batch that ran out of device memory is split and retried (`InferenceQueue`); the next
batches of that kind are then capped at the size that was retried, so that the queue does
not pay a failed forward pass for every batch. The cap lapses after `backoff_s`: memory
held by something else (another process, a long decoding) is usually given back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from server.inference.model_thread import ModelThread
from server.inference.queue_jobs import QueueObserver

logger = logging.getLogger("fakescope.server")
BACKOFF_S = 60.0


class BatchCaps:
    def __init__(
        self,
        batch_size: int,
        *,
        backoff_s: float = BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.batch_size = max(1, batch_size)
        self.backoff_s = backoff_s
        self._clock = clock
        self._caps: dict[str, tuple[int, float]] = {}  # stage -> (size, until)

    def limit(self, stage: str) -> int:
        """The largest batch of `stage` ("score", "generate") to collect now."""
        cap = self._caps.get(stage)
        if cap is None:
            return self.batch_size
        size, until = cap
        if self._clock() >= until:
            del self._caps[stage]
            logger.info("%s batches may again hold %d", stage, self.batch_size)
            return self.batch_size
        return size

    def lower(self, stage: str, failed: int) -> None:
        """A batch of `failed` rows of `stage` ran out of memory: cap at half of it."""
        size = max(1, min(failed // 2, self.limit(stage)))
        self._caps[stage] = (size, self._clock() + self.backoff_s)
        logger.warning(
            "out of device memory at %d %s rows: batches of at most %d for %g s",
            failed,
            stage,
            size,
            self.backoff_s,
        )


class MemoryShortage:
    """What follows a batch that ran out of device memory: smaller batches of that kind for
    a while (`BatchCaps`), the model's kept memory released on its thread, a metric."""

    def __init__(
        self,
        caps: BatchCaps,
        observer: QueueObserver,
        thread: ModelThread,
        release: Callable[[], None] | None,
    ) -> None:
        self.caps = caps
        self._observer = observer
        self._thread = thread
        self._release = release

    async def after(self, stage: str, rows: int) -> None:
        self._observer.out_of_memory(stage, rows)
        self.caps.lower(stage, rows)
        if self._release is not None:
            try:
                await self._thread.call(self._release)
            except Exception:
                logger.exception("the model could not release device memory")
