"""Generations that arrive while an answer decodes join it, and answer as they would alone.

The tiny checkpoint decodes through its graph decoder here (eagerly on the CPU), which is
what lets rows join; the model thread is held at chosen points so each test knows that
a job arrived while the decode was running.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any
from unittest import mock

import numpy as np
import pytest
from PIL import Image
from server_helpers import running, unique_png, upload, wait_until_ready

from fakescope.cuda_graphs import GraphDecoder
from fakescope.images import decode_image
from fakescope.joining import AnswerRequest, JoinInbox
from fakescope.prompts import question_prompt
from server.app import create_app
from server.inference.queue import InferenceQueue
from server.settings import Settings


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (40 + 3 * seed, 48, 3), dtype=np.uint8))


def unused_score(images: Sequence[Any]) -> list[float]:
    raise AssertionError("no verdicts here")


@pytest.fixture()
def model(graph_decoding: Any) -> Any:
    return graph_decoding  # what CUDA gets; eager steps on the CPU


class Sessions:
    """The model's continuous decoding as the host adapts it, recording each session."""

    def __init__(self, model: Any, rows: int = 4) -> None:
        self.model = model
        self.rows = rows
        self.joined: list[int] = []
        self.first_rows: list[int] = []

    def __call__(self, requests: Sequence[AnswerRequest], inbox: JoinInbox) -> bool:
        self.first_rows.append(len(requests))
        self.joined.append(self.model.answer_continuously(requests, inbox, rows=self.rows))
        return True


def queue_for(sessions: Any) -> InferenceQueue:
    return InferenceQueue(
        unused_score,
        max_queue=16,
        batch_size=4,
        batch_wait_s=0.0,
        generate_continuously=sessions,
    )


@contextlib.asynccontextmanager
async def started(queue: InferenceQueue) -> AsyncIterator[InferenceQueue]:
    """The queue running; stopped (its jobs failed or answered) on the way out."""
    queue.start()
    try:
        yield queue
    finally:
        await queue.stop()


async def until_taken(queue: InferenceQueue) -> None:
    """Until the batcher has taken everything queued (offered it to the session)."""
    for _ in range(1000):  # 5 s at most
        if queue._queue.empty():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the batcher never took the job")


async def model_thread_idle(queue: InferenceQueue) -> None:
    """Until the model thread has returned from the session (rows answer before that)."""
    await asyncio.get_running_loop().run_in_executor(queue.executor, lambda: None)


class Stream:
    """A streamed job's client: its pieces, and a hook run on the first one."""

    def __init__(self, on_first: threading.Event | None = None) -> None:
        self.pieces: list[str] = []
        self.stop = threading.Event()
        self.hold = on_first  # the model thread waits for it after the first piece
        self.started = threading.Event()

    def __call__(self, piece: str) -> None:
        self.pieces.append(piece)
        if not self.started.is_set():
            self.started.set()
            if self.hold is not None:
                assert self.hold.wait(5)


def alone(model: Any, image: Image.Image, prompt: str, tokens: int) -> str:
    return str(model.generate(image, prompt, max_new_tokens=tokens))


async def test_a_stream_arriving_mid_decode_joins_it_and_each_answers_as_alone(
    model: Any,
) -> None:
    sessions = Sessions(model)
    release = threading.Event()
    first, second = Stream(on_first=release), Stream()
    asks = [(_image(1), question_prompt("Why?"), 14), (_image(2), question_prompt("Is it?"), 9)]
    async with started(queue_for(sessions)) as queue:
        a = queue.submit_stream(*asks[0][:2], max_new_tokens=14, on_text=first, stop=first.stop)
        await asyncio.to_thread(first.started.wait, 5)  # decoding, held after its first piece
        b = queue.submit_stream(*asks[1][:2], max_new_tokens=9, on_text=second, stop=second.stop)
        await until_taken(queue)
        release.set()
        answers = await asyncio.wait_for(asyncio.gather(a, b), 30)
        await model_thread_idle(queue)
    assert sessions.joined == [1] and sessions.first_rows == [1]  # one decode, joined
    assert answers == [alone(model, *ask) for ask in asks]
    for stream, answer in zip((first, second), answers, strict=True):
        assert "".join(stream.pieces).strip() == answer


async def test_a_row_that_ends_answers_while_the_others_decode_on(model: Any) -> None:
    sessions = Sessions(model)
    release = threading.Event()
    long_stream = Stream(on_first=release)
    seen_when_short_done: list[bool] = []
    async with started(queue_for(sessions)) as queue:
        long = queue.submit_stream(
            _image(3), "Describe", max_new_tokens=40, on_text=long_stream, stop=long_stream.stop
        )
        await asyncio.to_thread(long_stream.started.wait, 5)
        short = queue.submit_generation(_image(4), "Why?", max_new_tokens=2)
        short.add_done_callback(lambda _: seen_when_short_done.append(long.done()))
        await until_taken(queue)
        release.set()
        await asyncio.wait_for(asyncio.gather(long, short), 30)
        await model_thread_idle(queue)
    assert sessions.joined == [1]
    assert short.result() == alone(model, _image(4), "Why?", 2)
    assert long.result() == alone(model, _image(3), "Describe", 40)
    if len(long_stream.pieces) > 3:  # the long answer did not end at once (random weights)
        assert seen_when_short_done == [False]


async def test_an_abandoned_stream_leaves_and_the_other_rows_are_unchanged(model: Any) -> None:
    sessions = Sessions(model)
    release = threading.Event()
    leaving, staying = Stream(on_first=release), Stream()
    async with started(queue_for(sessions)) as queue:
        gone = queue.submit_stream(
            _image(5), "Why?", max_new_tokens=30, on_text=leaving, stop=leaving.stop
        )
        await asyncio.to_thread(leaving.started.wait, 5)
        kept = queue.submit_stream(
            _image(6), "Is it?", max_new_tokens=10, on_text=staying, stop=staying.stop
        )
        await until_taken(queue)
        leaving.stop.set()  # its client left while the model thread was held
        release.set()
        answer = await asyncio.wait_for(kept, 30)
        await asyncio.wait_for(gone, 30)
    assert answer == alone(model, _image(6), "Is it?", 10)
    assert len(leaving.pieces) == 1  # nothing after its client left


async def test_a_joiner_whose_answer_does_not_fit_the_cache_runs_next(model: Any) -> None:
    sessions = Sessions(model)
    release = threading.Event()
    first = Stream(on_first=release)
    async with started(queue_for(sessions)) as queue:
        a = queue.submit_stream(_image(7), "Why?", max_new_tokens=8, on_text=first, stop=first.stop)
        await asyncio.to_thread(first.started.wait, 5)
        # A longer answer than the running decode's cache holds: refused, run afterwards.
        b = queue.submit_generation(_image(8), "Why?", max_new_tokens=400)
        await until_taken(queue)
        release.set()
        await asyncio.wait_for(asyncio.gather(a, b), 60)
        await model_thread_idle(queue)
    assert sessions.joined == [0, 0] and sessions.first_rows == [1, 1]
    assert b.result() == alone(model, _image(8), "Why?", 400)


async def test_a_generation_set_aside_for_its_other_length_joins_the_session(
    model: Any,
) -> None:
    sessions = Sessions(model)
    release = threading.Event()
    first = Stream(on_first=release)
    async with started(queue_for(sessions)) as queue:
        a = queue.submit_stream(
            _image(14), "Why?", max_new_tokens=12, on_text=first, stop=first.stop
        )
        b = queue.submit_generation(_image(15), "Is it?", max_new_tokens=5)  # set aside
        await asyncio.to_thread(first.started.wait, 5)
        await asyncio.sleep(0.05)  # the batcher offers b to the session meanwhile
        release.set()
        await asyncio.wait_for(asyncio.gather(a, b), 30)
        await model_thread_idle(queue)
    assert sessions.joined == [1] and sessions.first_rows == [1]
    assert b.result() == alone(model, _image(15), "Is it?", 5)


async def test_waiting_work_of_another_kind_is_not_overtaken_by_joiners(model: Any) -> None:
    sessions = Sessions(model)
    release = threading.Event()
    first = Stream(on_first=release)
    order: list[str] = []
    async with started(queue_for(sessions)) as queue:
        a = queue.submit_stream(_image(9), "Why?", max_new_tokens=6, on_text=first, stop=first.stop)
        await asyncio.to_thread(first.started.wait, 5)
        call = queue.submit(lambda: order.append("call"))
        b = queue.submit_generation(_image(10), "Is it?", max_new_tokens=6)
        b.add_done_callback(lambda _: order.append("late generation"))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.wait_for(asyncio.gather(a, b, call), 30)
        await model_thread_idle(queue)
    assert sessions.joined == [0, 0]
    assert order == ["call", "late generation"]


async def test_a_failing_step_fails_every_row_of_the_session_and_the_queue_goes_on(
    model: Any,
) -> None:
    sessions = Sessions(model)
    first = Stream()
    broken = mock.patch.object(GraphDecoder, "step", side_effect=RuntimeError("device lost"))
    async with started(queue_for(sessions)) as queue:
        with broken:
            a = queue.submit_stream(
                _image(11), "Why?", max_new_tokens=8, on_text=first, stop=first.stop
            )
            b = queue.submit_generation(_image(12), "Is it?", max_new_tokens=8)
            results = await asyncio.wait_for(asyncio.gather(a, b, return_exceptions=True), 30)
        after = await asyncio.wait_for(queue.generate(_image(13), "Why?", max_new_tokens=4), 30)
    assert [str(r) for r in results] == ["device lost", "device lost"]
    assert after == alone(model, _image(13), "Why?", 4)


async def test_a_session_that_raises_fails_its_rows_instead_of_hanging() -> None:
    def crashing(requests: Sequence[AnswerRequest], inbox: JoinInbox) -> bool:
        raise RuntimeError("out of memory")

    async with started(queue_for(crashing)) as queue:
        results = await asyncio.wait_for(
            asyncio.gather(
                queue.generate(1, "a", max_new_tokens=4),
                queue.generate(2, "b", max_new_tokens=4),
                return_exceptions=True,
            ),
            10,
        )
    assert [str(r) for r in results] == ["out of memory", "out of memory"]


async def test_a_model_that_cannot_join_answers_in_batches_as_before() -> None:
    calls: list[list[str]] = []

    def cannot(requests: Sequence[AnswerRequest], inbox: JoinInbox) -> bool:
        return False

    def batch(images: Sequence[Any], prompts: Sequence[str], tokens: int) -> list[str]:
        calls.append(list(prompts))
        return [f"{p}!" for p in prompts]

    queue = InferenceQueue(
        unused_score,
        max_queue=8,
        batch_size=4,
        batch_wait_s=0.02,
        generate_batch=batch,
        generate_continuously=cannot,
    )
    async with started(queue):
        answers = await asyncio.gather(
            queue.generate(1, "a", max_new_tokens=4), queue.generate(2, "b", max_new_tokens=4)
        )
    assert answers == ["a!", "b!"] and calls == [["a", "b"]]


# -- the whole service: streamed /v1/ask answers through the host's adapter --------------


class Recorder:
    """The tiny model, counting its continuous sessions and batch calls."""

    def __init__(self, model: Any) -> None:
        self.inner = model
        self.info = model.info
        self.sessions = 0
        self.batches = 0

    def answer_continuously(self, *args: Any, **kwargs: Any) -> int:
        self.sessions += 1
        return int(self.inner.answer_continuously(*args, **kwargs))

    def generate_batch(self, *args: Any, **kwargs: Any) -> list[str]:
        self.batches += 1
        return list(self.inner.generate_batch(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
async def recorded(sqlite_url: str, tmp_path: Any, model: Any) -> AsyncIterator[tuple[Any, Any]]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        batch_wait_ms=30.0,
        max_new_tokens=12,
    )
    recorder = Recorder(model)
    async with running(create_app(settings, model_loader=lambda: recorder)) as client:
        await wait_until_ready(client)
        yield client, recorder


async def test_streamed_answers_decode_continuously_through_the_host(
    recorded: tuple[Any, Any], model: Any
) -> None:
    client, recorder = recorded
    data = unique_png()
    sha = (await client.post("/v1/analyze", **upload(data))).json()["sha256"]
    image = decode_image(data).rgb
    questions = ["Why?", "Where is the light from?", "Is the edge sharp?"]
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/ask",
                json={"sha256": sha, "question": q},
                headers={"Accept": "text/event-stream"},
            )
            for q in questions
        )
    )
    assert [r.status_code for r in responses] == [200] * len(questions)
    for response, question in zip(responses, questions, strict=True):
        expected = alone(model, image, question_prompt(question), 12)
        assert f'"answer": {__import__("json").dumps(expected)}' in response.text
    assert recorder.sessions >= 1 and recorder.batches == 0
