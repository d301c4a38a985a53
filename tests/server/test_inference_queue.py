"""The batcher: groups concurrent detect requests, uses one thread, refuses when full."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from server.inference.queue import InferenceQueue
from server.inference.queue_jobs import QueueFullError


class Recorder:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s

    def score(self, images: Sequence[int]) -> list[float]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(images))
        time.sleep(self.delay_s)
        return [image / 100 for image in images]


async def started(recorder: Recorder, **kwargs: float) -> InferenceQueue:
    options = {"max_queue": 64, "batch_size": 8, "batch_wait_s": 0.02, **kwargs}
    queue = InferenceQueue(recorder.score, **options)  # type: ignore[arg-type]
    queue.start()
    return queue


async def test_concurrent_requests_are_scored_in_batches_with_their_own_results() -> None:
    recorder = Recorder()
    queue = await started(recorder)
    try:
        scores = await asyncio.gather(*(queue.score(i) for i in range(20)))
    finally:
        await queue.stop()
    assert scores == [i / 100 for i in range(20)]
    assert max(len(b) for b in recorder.batches) == 8
    assert len(recorder.batches) == 3
    assert sorted(i for b in recorder.batches for i in b) == list(range(20))


async def test_a_lone_request_does_not_wait_for_the_batch_window() -> None:
    queue = await started(Recorder(), batch_wait_s=2.0)
    try:
        begun = time.perf_counter()
        assert await queue.score(42) == 0.42
        # Well under the 2 s window, with room for a busy machine's thread hand-offs.
        assert time.perf_counter() - begun < 1.5
    finally:
        await queue.stop()


async def test_the_batcher_waits_for_announced_requests_within_the_window() -> None:
    recorder = Recorder()
    queue = await started(recorder, batch_wait_s=2.0)
    try:
        queue.announce()  # a second request is decoding its image
        first = asyncio.ensure_future(queue.score(1))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(queue.score(2, announced=True))
        assert await asyncio.gather(first, second) == [0.01, 0.02]
    finally:
        await queue.stop()
    assert recorder.batches == [[1, 2]]


async def test_a_withdrawn_announcement_stops_the_wait_at_the_window() -> None:
    queue = await started(Recorder(), batch_wait_s=0.2)
    try:
        queue.announce()
        begun = time.perf_counter()
        task = asyncio.ensure_future(queue.score(1))
        await asyncio.sleep(0.05)
        queue.withdraw()  # that image failed to decode
        assert await task == 0.01
        assert time.perf_counter() - begun < 1.0
    finally:
        await queue.stop()


async def test_every_model_call_runs_on_the_one_model_thread() -> None:
    recorder = Recorder()
    queue = await started(recorder)
    try:
        names = await asyncio.gather(
            *(queue.call(lambda: threading.current_thread().name) for _ in range(5)),
            *(queue.score(i) for i in range(5)),
        )
    finally:
        await queue.stop()
    assert len(set(names[:5]) | recorder.threads) == 1


async def test_a_full_queue_refuses_new_work_immediately() -> None:
    recorder = Recorder(delay_s=0.3)
    queue = await started(recorder, max_queue=2, batch_size=1, batch_wait_s=0.0)
    try:
        first = asyncio.ensure_future(queue.score(1))
        await asyncio.sleep(0.05)  # the batcher has taken job 1; the queue is empty again
        waiting = [asyncio.ensure_future(queue.score(i)) for i in (2, 3)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError):
            await queue.score(4)
        assert await asyncio.gather(first, *waiting) == [0.01, 0.02, 0.03]
    finally:
        await queue.stop()


async def test_a_failing_batch_fails_each_of_its_requests_and_the_queue_goes_on() -> None:
    calls = {"n": 0}

    def flaky(images: Sequence[int]) -> list[float]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory")
        return [0.5 for _ in images]

    queue = InferenceQueue(flaky, max_queue=8, batch_size=4, batch_wait_s=0.02)
    queue.start()
    try:
        results = await asyncio.gather(queue.score(1), queue.score(2), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert await queue.score(3) == 0.5
    finally:
        await queue.stop()


async def test_calls_queued_during_a_batch_window_run_after_the_batch() -> None:
    recorder = Recorder()
    queue = await started(recorder, batch_wait_s=0.05)
    order: list[str] = []
    try:
        score = asyncio.ensure_future(queue.score(1))
        await asyncio.sleep(0)
        call = asyncio.ensure_future(queue.call(lambda: order.append("call")))
        await asyncio.gather(score, call)
    finally:
        await queue.stop()
    assert recorder.batches == [[1]] and order == ["call"]


async def test_stopping_fails_waiting_jobs_instead_of_hanging_them() -> None:
    queue = InferenceQueue(Recorder(delay_s=0.2).score, max_queue=8, batch_size=1, batch_wait_s=0)
    pending = asyncio.ensure_future(queue.score(1))  # never started: nobody drains the queue
    await asyncio.sleep(0)
    await queue.stop()
    with pytest.raises(QueueFullError):
        await pending
