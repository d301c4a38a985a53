"""With a model: batched scoring, shared computations, explanations, questions, overload."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from server_helpers import (
    CountingModel,
    count_rows,
    problem,
    running,
    unique_png,
    until,
    upload,
    wait_until_ready,
)

from server.analyze.service import SERVER_SHUTDOWN_CANCEL, answered_when_cancelled
from server.app import create_app
from server.problems import ProblemError
from server.settings import Settings


@pytest.fixture
def sqlite_settings(sqlite_url: str, tmp_path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        batch_wait_ms=30.0,
        max_new_tokens=24,
    )


@pytest.fixture
def counting(tiny_model: Any) -> CountingModel:
    return CountingModel(tiny_model)


@pytest.fixture
async def model_client(sqlite_settings: Settings, counting: CountingModel) -> AsyncIterator[Any]:
    async with running(create_app(sqlite_settings, model_loader=lambda: counting)) as client:
        await wait_until_ready(client)
        yield client


async def test_model_mode_reports_p_fake_and_marks_untrained_models(model_client, counting) -> None:
    response = await model_client.post("/v1/analyze", **upload(unique_png()))
    body = response.json()
    assert response.status_code == 200 and response.headers["x-cache"] == "miss"
    assert body["mode"] == "model" and body["decided_by"] == "model"
    assert 0.0 <= body["p_fake"] <= 1.0
    assert body["untrained"] is True and body["model"]["untrained"] is True
    assert counting.score_calls == [1]
    ready = (await model_client.get("/readyz")).json()
    assert ready["mode"] == "model" and ready["state"] == "ready"


async def test_concurrent_uncached_requests_share_forward_passes(model_client, counting) -> None:
    images = [unique_png() for _ in range(16)]
    responses = await asyncio.gather(
        *(model_client.post("/v1/analyze", **upload(d)) for d in images)
    )
    assert all(r.status_code == 200 for r in responses)
    assert sum(counting.score_calls) == 16
    assert max(counting.score_calls) > 1
    metrics = (await model_client.get("/metrics")).text
    count = next(
        line for line in metrics.splitlines() if line.startswith("fakescope_batch_size_count")
    )
    assert float(count.split()[-1]) < 16


async def test_concurrent_requests_for_the_same_image_run_the_model_once(
    model_client, counting, sqlite_settings
) -> None:
    data = unique_png()
    responses = await asyncio.gather(
        *(model_client.post("/v1/analyze", **upload(data)) for _ in range(8))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["p_fake"] for r in responses}) == 1
    assert sum(counting.score_calls) == 1
    assert (await count_rows(sqlite_settings.database_url))["analyses"] == 1


async def test_second_request_is_a_cache_hit_without_the_model(model_client, counting) -> None:
    data = unique_png()
    await model_client.post("/v1/analyze", **upload(data))
    again = await model_client.post("/v1/analyze", **upload(data))
    assert again.headers["x-cache"] == "hit"
    assert sum(counting.score_calls) == 1


async def test_lookup_never_runs_the_model(model_client, counting) -> None:
    sha = (await model_client.post("/v1/analyze", **upload(unique_png()))).json()["sha256"]
    calls = len(counting.score_calls)
    found = await model_client.post("/v1/lookup", json={"sha256": [sha, "ab" * 32]})
    assert set(found.json()["results"]) == {sha}
    assert len(counting.score_calls) == calls


async def test_explanation_is_added_to_a_cached_verdict_on_request(
    model_client, sqlite_settings
) -> None:
    data = unique_png()
    plain = (await model_client.post("/v1/analyze", **upload(data))).json()
    assert plain["explanation"] is None
    explained = await model_client.post("/v1/analyze?explain=true", **upload(data))
    assert explained.status_code == 200
    assert isinstance(explained.json()["explanation"], str)
    assert explained.json()["p_fake"] == plain["p_fake"]
    assert (await count_rows(sqlite_settings.database_url))["analyses"] == 1
    cached = await model_client.post("/v1/analyze", data={"explain": "true"}, **upload(data))
    assert cached.headers["x-cache"] == "hit"


async def test_an_explanation_asked_while_the_plain_verdict_runs_scores_the_image_once(
    model_client, counting, sqlite_settings
) -> None:
    counting.score_delay_s = 0.3
    inflight = model_client.app.state.analysis_service._inflight
    data = unique_png()
    plain_request = asyncio.ensure_future(model_client.post("/v1/analyze", **upload(data)))
    await until(lambda: any(explain is False for _sha, _model, explain in inflight))
    explained, plain = await asyncio.gather(
        model_client.post("/v1/analyze?explain=true", **upload(data)), plain_request
    )
    assert plain.status_code == explained.status_code == 200
    assert plain.json()["explanation"] is None
    assert isinstance(explained.json()["explanation"], str)
    assert explained.json()["p_fake"] == plain.json()["p_fake"]
    assert sum(counting.score_calls) == 1
    assert (await count_rows(sqlite_settings.database_url))["analyses"] == 1


async def test_ask_answers_aspects_and_caches_the_answer(model_client, sqlite_settings) -> None:
    sha = (await model_client.post("/v1/analyze", **upload(unique_png()))).json()["sha256"]
    first = await model_client.post("/v1/ask", json={"sha256": sha, "aspect": "Light & Shadow"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert first.headers["x-cache"] == "miss"
    assert body["kind"] == "aspect" and body["aspect"] == "light_and_shadow"
    assert isinstance(body["answer"], str) and body["untrained"] is True
    second = await model_client.post("/v1/ask", json={"sha256": sha, "aspect": "light_and_shadow"})
    assert second.headers["x-cache"] == "hit" and second.json()["answer"] == body["answer"]
    enhance = await model_client.post("/v1/ask", json={"sha256": sha, "enhance": True})
    assert enhance.status_code == 200 and enhance.json()["kind"] == "enhance"
    assert (await count_rows(sqlite_settings.database_url))["answers"] == 2


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_ask_streams_server_sent_events_and_caches_the_whole_answer(model_client) -> None:
    sha = (await model_client.post("/v1/analyze", **upload(unique_png()))).json()["sha256"]
    question = {"sha256": sha, "question": "Are the shadows consistent?"}
    streamed = await model_client.post(
        "/v1/ask", json=question, headers={"Accept": "text/event-stream"}
    )
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_events(streamed.text)
    assert events[-1][0] == "done"
    tokens = "".join(data["text"] for name, data in events if name == "token")
    assert events[-1][1]["answer"] == tokens.strip()
    again = await model_client.post("/v1/ask", json=question)
    assert again.headers["x-cache"] == "hit"
    assert again.json()["answer"] == events[-1][1]["answer"]
    # Its time to first text is measured; the cached replay below is not a generation.
    await model_client.post("/v1/ask", json=question, headers={"Accept": "text/event-stream"})
    metrics = (await model_client.get("/metrics")).text
    assert "fakescope_stream_first_token_seconds_count 1.0" in metrics
    generated = next(
        line for line in metrics.splitlines() if line.startswith("fakescope_generated_tokens_total")
    )
    assert float(generated.split()[-1]) >= len(tokens.split())


async def test_a_streamed_answer_that_cannot_be_stored_still_ends_with_done(
    model_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client has every piece already: the stream ends properly, not cut off."""
    sha = (await model_client.post("/v1/analyze", **upload(unique_png()))).json()["sha256"]

    async def database_down(*_: Any) -> Any:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(model_client.app.state.ask_service, "_store", database_down)
    question = {"sha256": sha, "aspect": "texture"}
    streamed = await model_client.post(
        "/v1/ask", json=question, headers={"Accept": "text/event-stream"}
    )
    events = sse_events(streamed.text)
    assert streamed.status_code == 200 and events[-1][0] == "done"
    tokens = "".join(data["text"] for name, data in events if name == "token")
    assert events[-1][1]["answer"] == tokens.strip() and events[-1][1]["created_at"]


async def test_ask_about_an_image_never_analysed_is_a_404(model_client) -> None:
    response = await model_client.post("/v1/ask", json={"sha256": "12" * 32, "enhance": True})
    assert response.status_code == 404
    problem(response)


async def test_healthz_answers_while_the_model_loads_and_readyz_says_loading(
    sqlite_settings: Settings, tiny_model: Any
) -> None:
    release = threading.Event()

    def slow_loader() -> Any:
        release.wait(30)
        return tiny_model

    async with running(create_app(sqlite_settings, model_loader=slow_loader)) as client:
        try:
            assert (await client.get("/healthz")).status_code == 200
            loading = await client.get("/readyz")
            assert loading.status_code == 503 and loading.json()["state"] == "loading"
            probed = await client.head("/readyz")
            assert probed.status_code == 503 and probed.headers["retry-after"] == "5"
            busy = await client.post("/v1/analyze", **upload(unique_png()))
            assert busy.status_code == 503 and "retry-after" in busy.headers
            problem(busy)
        finally:
            release.set()
        await wait_until_ready(client)
        assert (await client.post("/v1/analyze", **upload(unique_png()))).status_code == 200


class SlowCheckpoint:
    """A loader that tells its model's cache identity at once and loads when released."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.release = threading.Event()

    def expected_key(self) -> str:
        return str(self.model.info.key)

    def __call__(self) -> Any:
        self.release.wait(30)
        return self.model


async def test_a_restarting_server_serves_its_cache_while_the_model_loads(
    sqlite_settings: Settings, tiny_model: Any
) -> None:
    """A 7B checkpoint loads for minutes: cached verdicts and lookups go on meanwhile."""
    data = unique_png()
    async with running(create_app(sqlite_settings, model_loader=lambda: tiny_model)) as client:
        await wait_until_ready(client)
        analysed = (await client.post("/v1/analyze", **upload(data))).json()
        question = {"sha256": analysed["sha256"], "aspect": "texture"}
        answered = (await client.post("/v1/ask", json=question)).json()
    sha = analysed["sha256"]

    checkpoint = SlowCheckpoint(tiny_model)
    async with running(create_app(sqlite_settings, model_loader=checkpoint)) as client:
        try:
            host = client.app.state.model_host
            await until(lambda: host.expected_key is not None)
            assert (await client.get("/readyz")).status_code == 503  # new work must wait
            cached = await client.get(f"/v1/analyses/{sha}")
            assert cached.status_code == 200 and cached.json()["p_fake"] == analysed["p_fake"]
            looked_up = await client.post("/v1/lookup", json={"sha256": [sha, "cd" * 32]})
            assert looked_up.status_code == 200 and set(looked_up.json()["results"]) == {sha}
            again = await client.post("/v1/analyze", **upload(data))
            assert again.status_code == 200 and again.headers["x-cache"] == "hit"
            asked = await client.post("/v1/ask", json=question)
            assert asked.status_code == 200 and asked.json()["answer"] == answered["answer"]
            # What the cache cannot answer waits for the model: new bytes, an explanation,
            # a new question.
            for refused in (
                await client.post("/v1/analyze", **upload(unique_png())),
                await client.post("/v1/analyze?explain=true", **upload(data)),
                await client.post("/v1/ask", json={"sha256": sha, "aspect": "edge"}),
            ):
                assert refused.status_code == 503 and problem(refused)["type"].endswith("loading")
        finally:
            checkpoint.release.set()
        await wait_until_ready(client)
        explained = await client.post("/v1/analyze?explain=true", **upload(data))
        assert explained.status_code == 200 and explained.json()["explanation"]


async def test_a_model_that_fails_to_load_makes_the_server_unready(
    sqlite_settings: Settings,
) -> None:
    def broken() -> Any:
        raise OSError("checkpoint not found")

    async with running(create_app(sqlite_settings, model_loader=broken)) as client:
        # Until the load has failed on the model thread (a fixed 0.2 s stood in for it).
        await client.app.state.model_host.wait_ready(within_s=30)
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "checkpoint not found" in ready.json()["error"]
        for response in (
            await client.post("/v1/analyze", **upload(unique_png())),
            await client.get("/v1/analyses/" + "ab" * 32),
            await client.post("/v1/lookup", json={"sha256": ["ab" * 32]}),
        ):
            # Like every 503 of the API, it says when to try again (it said nothing).
            assert response.status_code == 503, response.text
            assert problem(response)["type"].endswith(":model-failed")
            assert int(response.headers["retry-after"]) > 0
        assert (await client.get("/healthz")).status_code == 200


async def test_overload_answers_503_with_retry_after_and_stays_healthy(
    sqlite_settings: Settings, tiny_model: Any, sqlite_url: str
) -> None:
    slow = CountingModel(tiny_model, score_delay_s=0.4)
    settings = replace(sqlite_settings, queue_size=2, batch_size=1, batch_wait_ms=0)
    async with running(create_app(settings, model_loader=lambda: slow)) as client:
        await wait_until_ready(client)
        storm = [
            asyncio.ensure_future(client.post("/v1/analyze", **upload(unique_png())))
            for _ in range(12)
        ]
        await asyncio.sleep(0.2)
        assert (await client.get("/healthz")).status_code == 200
        responses = await asyncio.gather(*storm)
        codes = sorted(r.status_code for r in responses)
        refused = [r for r in responses if r.status_code == 503]
        assert refused and set(codes) <= {200, 503}
        assert all(r.headers["retry-after"].isdigit() for r in refused)
        problem(refused[0])
        accepted = codes.count(200)
        assert (await count_rows(sqlite_url))["analyses"] == accepted
        metrics = (await client.get("/metrics")).text
        assert f"fakescope_queue_rejected_total {float(len(refused))}" in metrics
        assert (await client.post("/v1/analyze", **upload(unique_png()))).status_code == 200


async def test_request_timeout_is_a_503_and_the_work_still_lands_in_the_cache(
    sqlite_settings: Settings, tiny_model: Any
) -> None:
    slow = CountingModel(tiny_model, score_delay_s=0.8)
    settings = replace(sqlite_settings, request_timeout_s=0.2)
    async with running(create_app(settings, model_loader=lambda: slow)) as client:
        await wait_until_ready(client)
        data = unique_png()
        late = await client.post("/v1/analyze", **upload(data))
        assert late.status_code == 503 and "retry-after" in late.headers
        # The work goes on after the 503: wait for its analysis to be stored (polled, not a
        # fixed sleep: on a busy machine the 0.8 s forward may take much longer).
        sha = hashlib.sha256(data).hexdigest()
        deadline = time.monotonic() + 60
        while (await client.get(f"/v1/analyses/{sha}")).status_code != 200:
            assert time.monotonic() < deadline, "the timed-out analysis was never stored"
            await asyncio.sleep(0.1)
        cached = await client.post("/v1/analyze", **upload(data))
        assert cached.status_code == 200 and cached.headers["x-cache"] == "hit"


async def test_concurrent_plain_and_explained_requests_both_get_what_they_asked_for(
    model_client, sqlite_settings
) -> None:
    data = unique_png()
    plain, explained = await asyncio.gather(
        model_client.post("/v1/analyze", **upload(data)),
        model_client.post("/v1/analyze?explain=true", **upload(data)),
    )
    assert plain.status_code == explained.status_code == 200
    assert isinstance(explained.json()["explanation"], str)
    assert (await count_rows(sqlite_settings.database_url))["analyses"] == 1


class SlowAnswers(CountingModel):
    """Answers questions slowly (one batch at a time, no continuous decoding)."""

    decodes_continuously = False

    def __init__(self, model: Any, answer_delay_s: float) -> None:
        super().__init__(model)
        self.answer_delay_s = answer_delay_s
        self.generations = 0

    def generate_batch(self, images: Any, prompts: Any, **kwargs: Any) -> list[str]:
        self.generations += 1
        time.sleep(self.answer_delay_s)
        return list(self.inner.generate_batch(images, prompts, **kwargs))


async def test_an_answer_that_times_out_is_still_cached_for_the_retry(
    sqlite_settings: Settings, tiny_model: Any
) -> None:
    # The generation goes on after the 503 (like an analysis does): its answer must be kept,
    # or every retry of a slow answer starts it over and times out again.
    slow = SlowAnswers(tiny_model, answer_delay_s=0.8)
    settings = replace(sqlite_settings, request_timeout_s=0.3)
    async with running(create_app(settings, model_loader=lambda: slow)) as client:
        await wait_until_ready(client)
        image = unique_png()
        # The verdict may outlast the 0.3 s timeout on a busy machine: it goes on, the retry
        # joins it or finds it stored.
        for _ in range(100):
            analysed = await client.post("/v1/analyze", **upload(image))
            if analysed.status_code == 200:
                break
            assert analysed.status_code == 503, analysed.text
        sha = analysed.json()["sha256"]
        ask = {"sha256": sha, "aspect": "texture"}
        late = await client.post("/v1/ask", json=ask)
        assert late.status_code == 503 and "retry-after" in late.headers, late.text
        await until(lambda: slow.generations == 1)
        for _ in range(300):  # the generation goes on after the 503; its answer is stored
            if (await count_rows(sqlite_settings.database_url))["answers"] == 1:
                break
            await asyncio.sleep(0.05)
        again = await client.post("/v1/ask", json=ask)
        assert again.status_code == 200, again.text
        assert again.headers["x-cache"] == "hit"
        assert slow.generations == 1
    assert (await count_rows(sqlite_settings.database_url))["answers"] == 1


@pytest.mark.parametrize("route", ["analyze", "ask"])
async def test_a_request_the_server_cancels_at_shutdown_is_a_503_not_a_bare_500(
    sqlite_settings: Settings, tiny_model: Any, route: str
) -> None:
    # uvicorn cancels the requests still running when its graceful shutdown times out (a
    # restart under load); it answered them with a text/plain 500 and a traceback each.
    slow = SlowAnswers(tiny_model, answer_delay_s=1.0)
    slow.score_delay_s = 1.0
    async with running(create_app(sqlite_settings, model_loader=lambda: slow)) as client:
        await wait_until_ready(client)
        if route == "analyze":
            waiting = asyncio.create_task(client.post("/v1/analyze", **upload(unique_png())))
            await until(lambda: slow.score_calls)
        else:
            slow.score_delay_s = 0.0
            sha = (await client.post("/v1/analyze", **upload(unique_png()))).json()["sha256"]
            ask = {"sha256": sha, "aspect": "texture"}
            waiting = asyncio.create_task(client.post("/v1/ask", json=ask))
            await until(lambda: slow.generations == 1)
        waiting.cancel(SERVER_SHUTDOWN_CANCEL)
        response = await waiting
        assert response.status_code == 503 and "retry-after" in response.headers
        assert problem(response)["type"].endswith(":shutting-down")


def test_the_shutdown_cancellation_answered_is_the_one_uvicorn_sends() -> None:
    import inspect

    import uvicorn.server

    assert SERVER_SHUTDOWN_CANCEL in inspect.getsource(uvicorn.server.Server.shutdown)


async def _waits_for_the_model() -> None:
    with answered_when_cancelled():
        await asyncio.sleep(30)


async def test_a_cancellation_that_is_not_the_servers_shutdown_is_not_answered() -> None:
    # Any cancellation was turned into a 503 `shutting-down` and uncancelled: an enclosing
    # timeout then raised that instead of TimeoutError, and a TaskGroup's cancellation of
    # a task (a sibling failed) came back as one more error.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await _waits_for_the_model()

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("sibling")

    with pytest.raises(ExceptionGroup) as group:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_waits_for_the_model())
            tasks.create_task(fails())
    assert [type(exc) for exc in group.value.exceptions] == [ValueError]

    plain = asyncio.create_task(_waits_for_the_model())
    await asyncio.sleep(0.01)
    plain.cancel()
    with pytest.raises(asyncio.CancelledError):
        await plain

    by_server = asyncio.create_task(_waits_for_the_model())
    await asyncio.sleep(0.01)
    by_server.cancel(SERVER_SHUTDOWN_CANCEL)
    with pytest.raises(ProblemError, match="shutting down"):
        await by_server


async def test_an_explanation_added_to_a_purged_image_keeps_its_bytes_again(model_client) -> None:
    # Re-sending an image whose bytes retention deleted keeps them again (so that /v1/ask
    # works); that held for a cache hit but not when the request adds an explanation.
    store = model_client.app.state["image_store"]
    data = unique_png()
    sha = (await model_client.post("/v1/analyze", **upload(data))).json()["sha256"]
    assert await store.purge(-60.0) == 1 and await store.load(sha) is None
    explained = await model_client.post("/v1/analyze?explain=true", **upload(data))
    assert explained.status_code == 200 and explained.json()["explanation"] is not None
    assert await store.load(sha) == data
    asked = await model_client.post("/v1/ask", json={"sha256": sha, "aspect": "texture"})
    assert asked.status_code == 200, asked.text
