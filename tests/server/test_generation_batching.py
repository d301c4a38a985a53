"""Concurrent generations share one batched call; verdict preprocessing runs off the model thread.

Batched answers equal lone answers on the tiny checkpoint: decoding is greedy, and the
left padding of a batch (prompts of different lengths) is masked, so each row decodes
what it would alone (checked here for explanations and for mixed questions).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from server_helpers import running, unique_png, upload, wait_until_ready

from fakescope.images import decode_image
from fakescope.prompts import ENHANCE_PROMPT, aspect_prompt, explain_prompt, question_prompt
from server.app import create_app
from server.inference.queue import InferenceQueue
from server.inference.queue_jobs import QueueFullError
from server.settings import Settings

N_REQUESTS = 6
MAX_NEW_TOKENS = 24


class SpyModel:
    """The tiny ForensicModel, recording which thread runs each stage and when."""

    def __init__(self, model: Any) -> None:
        self.inner = model
        self.info = model.info
        self.generate_batch_sizes: list[int] = []
        self.streamed_batches: list[bool] = []
        self.threads: dict[str, set[str]] = {"prepare": set(), "forward": set(), "generate": set()}
        self.intervals: dict[str, list[tuple[float, float]]] = {"prepare": [], "generate": []}
        self._lock = threading.Lock()

    def _record(self, stage: str) -> None:
        with self._lock:
            self.threads[stage].add(threading.current_thread().name)

    def prepare_detect(self, images: Sequence[Any]) -> Any:
        self._record("prepare")
        started = time.perf_counter()
        try:
            return self.inner.prepare_detect(images)
        finally:
            self.intervals["prepare"].append((started, time.perf_counter()))

    def score_inputs(self, inputs: Any) -> list[float]:
        self._record("forward")
        return list(self.inner.score_inputs(inputs))

    def score(self, images: Sequence[Any]) -> list[float]:
        return self.score_inputs(self.prepare_detect(images))

    def generate_batch(
        self,
        images: Sequence[Any],
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        **streaming: Any,
    ) -> list[str]:
        self._record("generate")
        self.generate_batch_sizes.append(len(images))
        self.streamed_batches.append(streaming.get("on_text") is not None)
        started = time.perf_counter()
        try:
            return list(
                self.inner.generate_batch(
                    images, prompts, max_new_tokens=max_new_tokens, **streaming
                )
            )
        finally:
            self.intervals["generate"].append((started, time.perf_counter()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def batching_settings(sqlite_url: str, tmp_path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        batch_wait_ms=30.0,
        max_new_tokens=MAX_NEW_TOKENS,
    )


@pytest.fixture
def spy(tiny_model: Any) -> SpyModel:
    return SpyModel(tiny_model)


@pytest.fixture
async def spy_client(batching_settings: Settings, spy: SpyModel) -> AsyncIterator[Any]:
    async with running(create_app(batching_settings, model_loader=lambda: spy)) as client:
        await wait_until_ready(client)
        yield client


def lone_explanation(model: Any, data: bytes) -> str:
    image = decode_image(data).rgb
    return str(model.generate(image, explain_prompt("inference"), max_new_tokens=MAX_NEW_TOKENS))


async def test_concurrent_explanations_share_generate_batch_calls_and_match_lone_answers(
    spy_client: Any, spy: SpyModel, tiny_model: Any
) -> None:
    images = [unique_png() for _ in range(N_REQUESTS)]
    expected = [lone_explanation(tiny_model, data) for data in images]
    responses = await asyncio.gather(
        *(spy_client.post("/v1/analyze?explain=true", **upload(data)) for data in images)
    )
    assert [r.status_code for r in responses] == [200] * N_REQUESTS
    assert [r.json()["explanation"] for r in responses] == expected
    assert sum(spy.generate_batch_sizes) == N_REQUESTS
    assert len(spy.generate_batch_sizes) < N_REQUESTS
    metrics = (await spy_client.get("/metrics")).text
    samples = dict(
        line.rsplit(" ", 1)
        for line in metrics.splitlines()
        if line.startswith("fakescope_generation_batch_size_")
    )
    assert float(samples["fakescope_generation_batch_size_sum"]) == N_REQUESTS
    assert float(samples["fakescope_generation_batch_size_count"]) == len(spy.generate_batch_sizes)


async def test_verdict_preprocessing_runs_off_the_model_thread_with_unchanged_scores(
    spy_client: Any, spy: SpyModel, tiny_model: Any
) -> None:
    images = [unique_png() for _ in range(N_REQUESTS)]
    responses = await asyncio.gather(
        *(spy_client.post("/v1/analyze", **upload(data)) for data in images)
    )
    assert [r.status_code for r in responses] == [200] * N_REQUESTS
    assert spy.threads["prepare"] and spy.threads["forward"]
    assert all(name.startswith("fakescope-preprocess") for name in spy.threads["prepare"])
    assert all(name.startswith("fakescope-model") for name in spy.threads["forward"])
    for data, response in zip(images, responses, strict=True):
        alone = tiny_model.score([decode_image(data).rgb])[0]  # unpipelined, one image
        assert response.json()["p_fake"] == pytest.approx(alone, abs=1e-4)


async def test_preprocessing_never_overlaps_generation_so_the_tokenizer_has_one_user(
    spy_client: Any, spy: SpyModel
) -> None:
    images = [unique_png() for _ in range(N_REQUESTS)]
    responses = await asyncio.gather(
        *(
            spy_client.post("/v1/analyze" + ("?explain=true" if i % 2 else ""), **upload(data))
            for i, data in enumerate(images)
        )
    )
    assert [r.status_code for r in responses] == [200] * N_REQUESTS
    assert spy.intervals["prepare"] and spy.intervals["generate"]
    for p_start, p_end in spy.intervals["prepare"]:
        for g_start, g_end in spy.intervals["generate"]:
            assert p_end <= g_start or g_end <= p_start


Asked = list[tuple[dict[str, Any], str]]  # (request body, the prompt it asks)


async def analysed_with_questions(
    client: Any, model: Any, asked: Asked
) -> tuple[str, Asked, list[str]]:
    """A new analysed image, the questions, and the answer each gets asked alone."""
    data = unique_png()
    sha = (await client.post("/v1/analyze", **upload(data))).json()["sha256"]
    image = decode_image(data).rgb
    expected = [model.generate(image, prompt, max_new_tokens=MAX_NEW_TOKENS) for _, prompt in asked]
    return sha, asked, expected


async def test_concurrent_questions_are_answered_in_batches_as_they_would_be_alone(
    spy_client: Any, spy: SpyModel, tiny_model: Any
) -> None:
    sha, asked, expected = await analysed_with_questions(
        spy_client,
        tiny_model,
        [
            ({"aspect": "texture"}, aspect_prompt("texture")),
            (
                {"question": "Is the lighting consistent?"},
                question_prompt("Is the lighting consistent?"),
            ),
            ({"question": "Why?"}, question_prompt("Why?")),
            ({"aspect": "edge"}, aspect_prompt("edge")),
        ],
    )
    responses = await asyncio.gather(
        *(spy_client.post("/v1/ask", json={"sha256": sha, **body}) for body, _ in asked)
    )
    assert [r.status_code for r in responses] == [200] * len(asked)
    assert [r.json()["answer"] for r in responses] == expected
    assert sum(spy.generate_batch_sizes) == len(asked)
    assert len(spy.generate_batch_sizes) < len(asked)


def sse_tokens_and_answer(text: str) -> tuple[list[str], str]:
    tokens, answer = [], None
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields.get("event") == "token":
            tokens.append(json.loads(fields["data"])["text"])
        elif fields.get("event") == "done":
            answer = json.loads(fields["data"])["answer"]
    assert answer is not None, text[-500:]
    return tokens, answer


async def test_concurrent_streamed_answers_share_batches_and_each_gets_its_own_tokens(
    spy_client: Any, spy: SpyModel, tiny_model: Any
) -> None:
    sha, asked, expected = await analysed_with_questions(
        spy_client,
        tiny_model,
        [
            ({"aspect": "texture"}, aspect_prompt("texture")),
            ({"question": "Where is the light from?"}, question_prompt("Where is the light from?")),
            ({"question": "Why?"}, question_prompt("Why?")),
            ({"aspect": "layout"}, aspect_prompt("layout")),
            ({"enhance": True}, ENHANCE_PROMPT),
        ],
    )
    stream = {"Accept": "text/event-stream"}
    responses = await asyncio.gather(
        *(spy_client.post("/v1/ask", json={"sha256": sha, **b}, headers=stream) for b, _ in asked)
    )
    assert [r.status_code for r in responses] == [200] * len(asked)
    for response, answer in zip(responses, expected, strict=True):
        tokens, done = sse_tokens_and_answer(response.text)
        assert done == answer
        assert "".join(tokens).strip() == answer
        assert len(tokens) > 1 or len(answer.split()) <= 1  # piece by piece
    assert all(spy.streamed_batches) and sum(spy.generate_batch_sizes) == len(asked)
    assert max(spy.generate_batch_sizes) > 1  # streams shared a decode


# -- the queue alone, with fakes ---------------------------------------------------------


class FakeGenerator:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []

    def __call__(self, images: Sequence[Any], prompts: Sequence[str], tokens: int) -> list[str]:
        self.calls.append((list(prompts), tokens))
        return [f"{image}:{prompt}:{tokens}" for image, prompt in zip(images, prompts, strict=True)]


def unused_score(images: Sequence[Any]) -> list[float]:
    raise AssertionError("the two-stage path must not call score_batch")


async def test_generations_are_grouped_by_max_new_tokens_and_keep_their_own_results() -> None:
    generator = FakeGenerator()
    queue = InferenceQueue(
        unused_score, max_queue=16, batch_size=8, batch_wait_s=0.02, generate_batch=generator
    )
    queue.start()
    try:
        answers = await asyncio.gather(
            queue.generate(1, "a", max_new_tokens=8),
            queue.generate(2, "b", max_new_tokens=16),
            queue.generate(3, "c", max_new_tokens=8),
        )
    finally:
        await queue.stop()
    assert answers == ["1:a:8", "2:b:16", "3:c:8"]
    assert sorted(generator.calls) == [(["a", "c"], 8), (["b"], 16)]


async def test_twin_generations_for_the_same_image_and_prompt_share_one_row() -> None:
    generator = FakeGenerator()
    queue = InferenceQueue(
        unused_score, max_queue=16, batch_size=8, batch_wait_s=0.02, generate_batch=generator
    )
    queue.start()
    try:
        answers = await asyncio.gather(
            *(queue.generate("img", "same", max_new_tokens=8, key="sha-1") for _ in range(3)),
            queue.generate("img", "other", max_new_tokens=8, key="sha-1"),
        )
    finally:
        await queue.stop()
    assert answers == ["img:same:8"] * 3 + ["img:other:8"]
    assert generator.calls == [(["same", "other"], 8)]


async def test_the_batcher_waits_a_window_for_announced_generations() -> None:
    generator = FakeGenerator()
    queue = InferenceQueue(
        unused_score, max_queue=16, batch_size=8, batch_wait_s=2.0, generate_batch=generator
    )
    queue.start()
    try:
        coming = queue.announce_generation()
        first = asyncio.ensure_future(queue.generate(1, "a", max_new_tokens=8))
        await asyncio.sleep(0.1)
        second = queue.generate(2, "b", max_new_tokens=8, announcement=coming)
        assert await asyncio.gather(first, second) == ["1:a:8", "2:b:8"]
        coming.withdraw()  # already withdrawn by the submission: a no-op
        begun = time.perf_counter()
        assert await queue.generate(3, "c", max_new_tokens=8) == "3:c:8"
        assert time.perf_counter() - begun < 1.0  # nothing announced: no wait
    finally:
        await queue.stop()
    assert generator.calls == [(["a", "b"], 8), (["c"], 8)]


async def test_the_next_batch_is_prepared_while_the_model_runs_the_current_one() -> None:
    second_prepared = threading.Event()
    prepared: list[list[int]] = []
    overlapped: list[bool] = []

    def prepare(images: Sequence[int]) -> list[int]:
        prepared.append(list(images))
        if len(prepared) == 2:
            second_prepared.set()
        return list(images)

    def score_inputs(inputs: list[int]) -> list[float]:
        if inputs == [1]:  # hold the first forward until the second batch is prepared
            overlapped.append(second_prepared.wait(5))
        return [i / 100 for i in inputs]

    queue = InferenceQueue(
        unused_score,
        max_queue=8,
        batch_size=1,
        batch_wait_s=0.0,
        prepare=prepare,
        score_inputs=score_inputs,
    )
    queue.start()
    try:
        assert await asyncio.gather(queue.score(1), queue.score(2)) == [0.01, 0.02]
    finally:
        await queue.stop()
    assert overlapped == [True] and prepared == [[1], [2]]


class StreamingFake:
    """A generate_batch that streams each row word by word and obeys should_stop."""

    def __init__(self, words: int = 5) -> None:
        self.words = words
        self.rows: list[list[str]] = []
        self.stopped_after: list[int] = []
        self.step_done = threading.Event()
        self.go_on = threading.Event()

    def __call__(
        self,
        images: Sequence[Any],
        prompts: Sequence[str],
        tokens: int,
        *,
        on_text: Any = None,
        should_stop: Any = None,
    ) -> list[str]:
        self.rows.append(list(prompts))
        texts = [""] * len(prompts)
        for step in range(self.words):
            for row, prompt in enumerate(prompts):
                piece = f" {prompt}{step}"
                texts[row] += piece
                if on_text is not None:
                    on_text(row, piece)
            if step == 1:  # let the test act between two steps
                self.step_done.set()
                self.go_on.wait(5)
            if should_stop is not None and should_stop():
                self.stopped_after.append(step)
                break
        return [text.strip() for text in texts]


async def test_a_stream_gets_its_rows_pieces_and_the_batch_stops_when_nobody_listens() -> None:
    fake = StreamingFake()
    queue = InferenceQueue(
        unused_score, max_queue=8, batch_size=4, batch_wait_s=0.05, generate_batch=fake
    )
    queue.start()
    got: dict[str, list[str]] = {"a": [], "b": []}
    stops = {name: threading.Event() for name in got}
    try:
        futures = [
            queue.submit_stream(
                name,
                name,
                max_new_tokens=8,
                on_text=got[name].append,
                stop=stops[name],
            )
            for name in got
        ]
        await asyncio.to_thread(fake.step_done.wait, 5)
        stops["a"].set()  # a's client leaves: b still wants its answer
        fake.go_on.set()
        assert await futures[1] == "b0 b1 b2 b3 b4"
    finally:
        await queue.stop()
    assert fake.rows == [["a", "b"]]
    assert got["b"] == [" b0", " b1", " b2", " b3", " b4"]
    assert got["a"] == [" a0", " a1"]  # nothing after its client left
    assert fake.stopped_after == []  # b was still wanted: the batch went on

    fake, stop = StreamingFake(), threading.Event()
    queue = InferenceQueue(
        unused_score, max_queue=8, batch_size=4, batch_wait_s=0.0, generate_batch=fake
    )
    queue.start()
    try:
        future = queue.submit_stream("c", "c", max_new_tokens=8, on_text=list().append, stop=stop)
        await asyncio.to_thread(fake.step_done.wait, 5)
        stop.set()  # the only listener leaves: the decoding stops at the next step
        fake.go_on.set()
        assert await future == "c0 c1"
    finally:
        await queue.stop()
    assert fake.stopped_after == [1]


async def test_a_stream_abandoned_before_it_runs_costs_nothing() -> None:
    fake = StreamingFake()
    queue = InferenceQueue(
        unused_score, max_queue=8, batch_size=4, batch_wait_s=0.0, generate_batch=fake
    )
    stop = threading.Event()
    stop.set()
    future = queue.submit_stream("d", "d", max_new_tokens=8, on_text=list().append, stop=stop)
    queue.start()
    try:
        with pytest.raises(asyncio.CancelledError):
            await future
    finally:
        await queue.stop()
    assert fake.rows == []


async def test_stopping_fails_a_batch_the_model_is_still_working_on() -> None:
    release = threading.Event()

    def stuck(images: Sequence[Any], prompts: Sequence[str], tokens: int) -> list[str]:
        release.wait(5)
        return ["late"] * len(images)

    queue = InferenceQueue(
        unused_score, max_queue=4, batch_size=4, batch_wait_s=0.0, generate_batch=stuck
    )
    queue.start()
    pending = asyncio.ensure_future(queue.generate(1, "a", max_new_tokens=8))
    await asyncio.sleep(0.05)  # the batch is on the model thread now
    try:
        await queue.stop()
        with pytest.raises(QueueFullError):
            await pending
    finally:
        release.set()
        queue.executor.shutdown(wait=True)
