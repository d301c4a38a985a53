"""Generation jobs answered together by one `generate_batch` call (where the model does
not decode continuously; see generation_sessions.py for sessions).

Greedy decoding gives each row what it would get alone. A streamed job hands each new
piece of its row's text to its own `on_text` as it is decoded; the batch stops early once
no job wants its answer. A batch that runs out of device memory runs again in halves, but
a streamed job whose client already has part of its answer cannot start over: it fails
(`DeviceMemoryError`), as does a job that does not fit alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fakescope.device_memory import is_out_of_memory
from server.inference.batch_caps import MemoryShortage
from server.inference.model_thread import ModelThread
from server.inference.queue_jobs import (
    OUT_OF_MEMORY_ANSWERING,
    DeviceMemoryError,
    GenerateJob,
    QueueObserver,
    fail_jobs,
    succeed_jobs,
    text_router,
)

# generate_batch(images, prompts, max_new_tokens, *, on_text=None, should_stop=None):
# on_text(row, piece) streams each row's text, should_stop() ends the decoding early.
GenerateBatch = Callable[..., Sequence[str]]


class GenerationBatches:
    def __init__(
        self,
        generate_batch: GenerateBatch,
        *,
        thread: ModelThread,
        observer: QueueObserver,
        shortage: MemoryShortage,
    ) -> None:
        self._generate_batch = generate_batch
        self._thread = thread
        self._observer = observer
        self._shortage = shortage

    async def run(self, live: list[GenerateJob]) -> None:
        """One `generate_batch` call for `live`; in halves where it runs out of memory."""
        extra: dict[str, Any] = {}
        streamed: set[int] = set()  # rows whose client has text: they cannot start again
        if any(job.on_text is not None for job in live):
            route = text_router(live)

            def on_text(row: int, piece: str) -> None:
                if live[row].on_text is not None:
                    streamed.add(row)
                route(row, piece)

            extra["on_text"] = on_text
            extra["should_stop"] = lambda: all(job.abandoned for job in live)
        started = time.perf_counter()
        try:
            texts = await self._thread.call(
                self._generate_batch,
                [job.image for job in live],
                [job.prompt for job in live],
                live[0].max_new_tokens,
                **extra,
            )
        except Exception as exc:
            if not is_out_of_memory(exc):
                fail_jobs(live, exc)
                return
        else:
            self._observer.generation_done(len(live), time.perf_counter() - started)
            succeed_jobs(live, [str(text) for text in texts])
            return
        await self._shortage.after("generate", len(live))
        begun = [job for row, job in enumerate(live) if row in streamed or len(live) == 1]
        fail_jobs(begun, DeviceMemoryError(OUT_OF_MEMORY_ANSWERING))
        rest = [job for job in live if not job.future.done()]
        half = (len(rest) + 1) // 2
        for part in (rest[:half], rest[half:]):
            if part := [job for job in part if not job.future.done()]:
                await self.run(part)
