"""A batch that runs out of device memory is run again in halves, not failed.

The model functions here raise torch's own `OutOfMemoryError` (what CUDA raises) above a
number of rows, so the queue's handling runs on the CPU exactly as it would on a GPU.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from server_helpers import (
    CountingModel,
    count_rows,
    problem,
    running,
    unique_png,
    upload,
    wait_until_ready,
)

from fakescope.joining import AnswerRequest, JoinInbox
from server.app import create_app
from server.inference.batch_caps import BatchCaps
from server.inference.queue import InferenceQueue
from server.inference.queue_jobs import DeviceMemoryError, NullObserver, QueueFullError
from server.settings import Settings


def out_of_memory(rows: int) -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {rows} GiB")


class Device:
    """Model functions that fit at most `fits` rows; records every call's rows."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.calls: list[list[Any]] = []
        self.released = 0
        self.lock = threading.Lock()

    def _use(self, rows: Sequence[Any]) -> None:
        with self.lock:
            self.calls.append(list(rows))
        if len(rows) > self.fits:
            raise out_of_memory(len(rows))

    def score(self, images: Sequence[int]) -> list[float]:
        self._use(images)
        return [image / 100 for image in images]

    def prepare(self, images: Sequence[int]) -> list[int]:
        return list(images)

    def generate(
        self,
        images: Sequence[int],
        prompts: Sequence[str],
        max_new_tokens: int,
        *,
        on_text: Any = None,
        should_stop: Any = None,
    ) -> list[str]:
        if on_text is not None:  # the first token of every row reaches its client first
            for row, image in enumerate(images):
                on_text(row, f"<{image}>")
        self._use(images)
        return [
            f"<{image}> answer to {prompt}" for image, prompt in zip(images, prompts, strict=True)
        ]

    def release(self) -> None:
        self.released += 1


class Observer(NullObserver):
    """Records each batch that ran out of memory: (stage, rows)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def out_of_memory(self, stage: str, size: int) -> None:
        self.events.append((stage, size))


def queue_for(device: Device, observer: Observer, *, two_stage: bool = False) -> InferenceQueue:
    stages: dict[str, Any] = {}
    if two_stage:
        stages = {"prepare": device.prepare, "score_inputs": device.score}
    return InferenceQueue(
        device.score,
        max_queue=64,
        batch_size=8,
        batch_wait_s=0.05,
        observer=observer,
        generate_batch=device.generate,
        release_memory=device.release,
        **stages,
    )


async def score_together(queue: InferenceQueue, images: Sequence[int]) -> list[Any]:
    for _ in images:
        queue.announce()  # all of them arrive within one batch window
    return await asyncio.gather(
        *(queue.score(image, announced=True) for image in images), return_exceptions=True
    )


@pytest.mark.parametrize("two_stage", [False, True], ids=["one-stage", "pipelined"])
async def test_a_batch_that_runs_out_of_memory_is_scored_in_halves(two_stage: bool) -> None:
    device, observer = Device(fits=2), Observer()
    queue = queue_for(device, observer, two_stage=two_stage)
    queue.start()
    try:
        scores = await score_together(queue, range(8))
        assert scores == [i / 100 for i in range(8)]
        # 8 failed, then 4 (failed) and its halves, then the other 4 likewise.
        assert [len(call) for call in device.calls] == [8, 4, 2, 2, 4, 2, 2]
        assert sorted(i for call in device.calls if len(call) <= 2 for i in call) == list(range(8))
        assert observer.events == [("score", 8), ("score", 4), ("score", 4)]
        assert device.released == 3

        # The next batches are capped at the size that fitted: no failed forward pass.
        device.calls.clear()
        assert await score_together(queue, range(10, 16)) == [i / 100 for i in range(10, 16)]
        assert [len(call) for call in device.calls] == [2, 2, 2]
        assert len(observer.events) == 3
    finally:
        await queue.stop()


async def test_an_image_that_does_not_fit_alone_fails_with_a_503_error_not_the_others() -> None:
    device, observer = Device(fits=0), Observer()
    queue = queue_for(device, observer)
    queue.start()
    try:
        results = await score_together(queue, range(2))
        assert all(isinstance(r, DeviceMemoryError) for r in results)
        assert all(isinstance(r, QueueFullError) for r in results)  # answered 503 + Retry-After
        assert [len(call) for call in device.calls] == [2, 1, 1]

        device.fits = 8  # memory came back: the queue serves again (capped for a while)
        assert await queue.score(7) == 0.07
    finally:
        await queue.stop()


async def test_other_failures_fail_the_batch_at_once_without_retries() -> None:
    calls: list[int] = []

    def broken(images: Sequence[int]) -> list[float]:
        calls.append(len(images))
        raise ValueError("not a memory problem")

    queue = InferenceQueue(broken, max_queue=8, batch_size=8, batch_wait_s=0.05)
    queue.start()
    try:
        results = await score_together(queue, range(4))
    finally:
        await queue.stop()
    assert all(isinstance(r, ValueError) for r in results)
    assert calls == [4]


async def test_generations_run_again_in_halves_and_started_streams_fail_alone() -> None:
    device, observer = Device(fits=1), Observer()
    queue = queue_for(device, observer)
    queue.start()
    try:
        for _ in range(3):
            queue.announce_generation()
        plain = [
            queue.submit_generation(i, f"q{i}", max_new_tokens=4, key=f"image-{i}")
            for i in range(2)
        ]
        pieces: list[str] = []
        streamed = queue.submit_stream(
            9, "q9", max_new_tokens=4, on_text=pieces.append, stop=threading.Event()
        )
        results = await asyncio.gather(*plain, streamed, return_exceptions=True)
    finally:
        await queue.stop()
    assert results[:2] == ["<0> answer to q0", "<1> answer to q1"]
    # The streamed answer had reached its client when the batch failed: it cannot restart.
    assert isinstance(results[2], DeviceMemoryError) and pieces == ["<9>"]
    assert [len(call) for call in device.calls] == [3, 1, 1]
    assert observer.events == [("generate", 3)]


def test_batch_caps_halve_on_failure_and_lapse_after_the_backoff() -> None:
    now = [0.0]
    caps = BatchCaps(32, backoff_s=60.0, clock=lambda: now[0])
    assert caps.limit("score") == 32
    caps.lower("score", 32)
    assert caps.limit("score") == 16 and caps.limit("generate") == 32
    caps.lower("score", 16)
    caps.lower("score", 1)
    assert caps.limit("score") == 1
    now[0] = 59.9
    assert caps.limit("score") == 1
    now[0] = 60.0
    assert caps.limit("score") == 32


class ShortOfMemory(CountingModel):
    """The tiny model on a device that holds `fits` images per forward pass."""

    def __init__(self, model: Any, fits: int) -> None:
        super().__init__(model)
        self.fits = fits

    def score(self, images: Any) -> list[float]:
        self.score_calls.append(len(images))
        if len(images) > self.fits:
            raise out_of_memory(len(images))
        return list(self.inner.score(images))


async def test_the_service_answers_every_request_when_a_batch_runs_out_of_memory(
    sqlite_url: str, tmp_path: Path, tiny_model: Any
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None, batch_wait_ms=50.0
    )
    model = ShortOfMemory(tiny_model, fits=2)
    async with running(create_app(settings, model_loader=lambda: model)) as client:
        await wait_until_ready(client)
        images = [unique_png() for _ in range(8)]
        responses = await asyncio.gather(
            *(client.post("/v1/analyze", **upload(data)) for data in images)
        )
        assert [r.status_code for r in responses] == [200] * 8
        assert max(model.score_calls) > 2, "the test needs a batch larger than what fits"
        metrics = (await client.get("/metrics")).text
        assert 'fakescope_device_out_of_memory_total{stage="score"}' in metrics

        model.fits = 0  # nothing fits: a clear 503 the client may retry, and no row
        before = await count_rows(sqlite_url)
        response = await client.post("/v1/analyze", **upload(unique_png()))
        body = problem(response)
        assert response.status_code == 503 and response.headers["retry-after"]
        assert "out of memory" in body["detail"] and body["type"].endswith(":gpu-out-of-memory")
        assert await count_rows(sqlite_url) == before


@pytest.mark.parametrize("where", ["session", "row"])
async def test_a_continuous_session_short_of_memory_answers_503_errors(where: str) -> None:
    """A session's failure, or one row's, as the queue's callers see it: a DeviceMemoryError."""
    observer = Observer()

    def decode(requests: Sequence[AnswerRequest], inbox: JoinInbox) -> bool:
        inbox.close()
        if where == "session":
            raise out_of_memory(len(requests))
        for request in requests:
            request.fail(out_of_memory(1))
        return True

    queue = InferenceQueue(
        Device(fits=8).score,
        max_queue=8,
        batch_size=8,
        batch_wait_s=0.05,
        observer=observer,
        generate_continuously=decode,
    )
    queue.start()
    try:
        results = await asyncio.gather(
            *(queue.generate(i, "why?", max_new_tokens=4) for i in range(2)),
            return_exceptions=True,
        )
    finally:
        await queue.stop()
    assert all(isinstance(r, DeviceMemoryError) for r in results), results
    assert observer.events == ([("generate", 2)] if where == "session" else [])


async def test_stopping_while_halves_run_again_fails_them_instead_of_hanging() -> None:
    entered, gate = threading.Event(), threading.Event()

    class SlowAfterFailing(Device):
        def score(self, images: Sequence[int]) -> list[float]:
            if len(images) <= self.fits:  # a retried half: on the model thread at stop()
                entered.set()
                gate.wait(5)
            return super().score(images)

    queue = queue_for(SlowAfterFailing(fits=1), Observer(), two_stage=True)
    queue.start()
    scoring = asyncio.ensure_future(score_together(queue, range(2)))
    assert await asyncio.to_thread(entered.wait, 5)
    await queue.stop()
    gate.set()
    results = await asyncio.wait_for(scoring, 5)
    assert all(isinstance(r, QueueFullError) for r in results), results


class NoRoomToAnswer(CountingModel):
    """The tiny model on a device with room for verdicts but not for any answer."""

    decodes_continuously = False

    def generate_batch(self, images: Any, prompts: Any, **kwargs: Any) -> list[str]:
        raise out_of_memory(len(images))


async def test_a_question_that_runs_out_of_memory_is_a_503_to_retry_not_a_500(
    sqlite_url: str, tmp_path: Path, tiny_model: Any
) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None)
    model = NoRoomToAnswer(tiny_model)
    async with running(create_app(settings, model_loader=lambda: model)) as client:
        await wait_until_ready(client)
        sha = (await client.post("/v1/analyze", **upload(unique_png()))).json()["sha256"]
        before = await count_rows(sqlite_url)
        response = await client.post("/v1/ask", json={"sha256": sha, "aspect": "texture"})
        body = problem(response)
        assert response.status_code == 503 and response.headers["retry-after"], response.text
        assert body["type"].endswith(":gpu-out-of-memory")
        assert await count_rows(sqlite_url) == before
