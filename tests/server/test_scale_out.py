"""API and worker roles sharing one database: analyses and answers go through the job queue.

Both apps run in this process here (on SQLite and PostgreSQL); test_scale_out_processes.py
runs them as separate processes over real HTTP.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from server_helpers import (
    AppClient,
    problem,
    run_sql,
    running,
    running_worker,
    unique_png,
    until,
    upload,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from server.app import create_app
from server.db.database import Database
from server.db.engine import create_engine
from server.jobs.store import JobOutcome, JobStore
from server.settings import Settings
from server.timefmt import utcnow


@pytest.fixture
def scale_settings(settings: Settings) -> Settings:
    return replace(settings, max_new_tokens=12, job_lease_s=1.5, batch_wait_ms=20.0)


@pytest.fixture
async def worker(scale_settings: Settings, tiny_model: Any) -> AsyncIterator[AppClient]:
    async with running_worker(scale_settings, tiny_model) as client:
        yield client


@pytest.fixture
async def api(scale_settings: Settings, tmp_path: Path) -> AsyncIterator[AppClient]:
    # Its own data directory, as on another machine.
    api_settings = replace(scale_settings, role="api", data_dir=tmp_path / "api-data")
    async with running(create_app(api_settings)) as client:
        yield client


async def _outcome(store: JobStore, job_id: int) -> JobOutcome | None:
    """The job's outcome once it has one (None after 15 s)."""
    for _ in range(300):
        outcome = (await store.outcomes([job_id])).get(job_id)
        if outcome is not None:
            return outcome
        await asyncio.sleep(0.05)
    return None


async def _api_ready(api: AppClient) -> dict[str, Any]:
    """/readyz once the API process has seen a live worker."""
    for _ in range(300):
        response = await api.get("/readyz")
        body: dict[str, Any] = response.json()
        if response.status_code == 200 and body["workers"] > 0:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"the API never saw a worker: {response.text}")


async def test_the_api_hands_analyses_to_the_worker(api, worker, tiny_model, settings) -> None:
    ready = await _api_ready(api)
    assert ready["mode"] == "api" and ready["workers"] == 1
    assert ready["model"]["id"] == tiny_model.info.id
    images = [unique_png() for _ in range(6)]
    responses = await asyncio.gather(*(api.post("/v1/analyze", **upload(i)) for i in images))
    assert [r.status_code for r in responses] == [200] * 6, responses[0].text
    for data, response in zip(images, responses, strict=True):
        body = response.json()
        assert response.headers["x-cache"] == "miss"
        assert body["mode"] == "model" and body["model"]["id"] == tiny_model.info.id
        # The worker ran the real model on these bytes: the same p_fake as here.
        expected = tiny_model.score([Image.open(io.BytesIO(data)).convert("RGB")])[0]
        assert body["p_fake"] == pytest.approx(expected, abs=1e-5)
    rows = await run_sql(settings.database_url, "SELECT state, image FROM jobs")
    assert rows and all(state == "done" and image is None for state, image in rows)
    jobs_before = len(rows)
    again = await api.post("/v1/analyze", **upload(images[0]))
    assert again.headers["x-cache"] == "hit"  # from the shared cache: no job
    # Image bytes are kept in the database, where every worker and API process reads them.
    stored = await run_sql(settings.database_url, "SELECT sha256 FROM stored_images")
    assert sorted(sha for (sha,) in stored) == sorted(r.json()["sha256"] for r in responses)
    for folder in (settings.image_store_dir, api.app.state.settings.image_store_dir):
        assert not folder.exists() or not any(folder.rglob("*"))
    assert len(await run_sql(settings.database_url, "SELECT id FROM jobs")) == jobs_before
    metrics = (await worker.get("/metrics")).text
    assert 'fakescope_jobs_total{kind="analyze",outcome="done"} 6.0' in metrics
    shared = (await api.get("/metrics")).text
    assert 'fakescope_jobs_in_state{state="done"} 6.0' in shared
    assert 'fakescope_jobs_in_state{state="queued"} 0.0' in shared
    assert "fakescope_workers_live 1.0" in shared


async def test_explanations_and_questions_are_generated_by_the_worker(api, worker) -> None:
    await _api_ready(api)
    data = unique_png()
    analysed = await api.post("/v1/analyze?explain=true", **upload(data))
    assert analysed.status_code == 200, analysed.text
    sha = analysed.json()["sha256"]
    assert analysed.json()["explanation"]
    asked = await api.post("/v1/ask", json={"sha256": sha, "aspect": "texture"})
    assert asked.status_code == 200, asked.text
    assert asked.json()["answer"] and asked.json()["model"]["untrained"] is True
    again = await api.post("/v1/ask", json={"sha256": sha, "aspect": "texture"})
    assert again.json()["answer"] == asked.json()["answer"]
    streamed = await api.post(
        "/v1/ask",
        json={"sha256": sha, "aspect": "edge"},
        headers={"Accept": "text/event-stream"},
    )
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [block for block in streamed.text.split("\n\n") if block.strip()]
    assert events[0].startswith("event: token") and events[-1].startswith("event: done")
    done = json.loads(events[-1].split("data: ", 1)[1])
    assert done["aspect"] == "edge" and done["answer"]
    # The API process measures the time its client waited for the first relayed text.
    metrics = (await api.get("/metrics")).text
    assert "fakescope_stream_first_token_seconds_count 1.0" in metrics


@pytest.mark.parametrize(("image_store", "status"), [("database", 200), ("files", 409)])
async def test_a_question_reaches_a_worker_that_never_saw_the_image(
    scale_settings: Settings, tiny_model: Any, tmp_path: Path, image_store: str, status: int
) -> None:
    """Workers on separate machines share image bytes through the database, not a disk."""
    shared = replace(scale_settings, image_store=image_store)
    api_app = create_app(replace(shared, role="api", data_dir=tmp_path / "api"))
    async with running(api_app) as api:
        first = create_app(
            replace(shared, role="worker", data_dir=tmp_path / "first"),
            model_loader=lambda: tiny_model,
        )
        async with running(first):
            await _api_ready(api)
            analysed = await api.post("/v1/analyze", **upload(unique_png()))
            assert analysed.status_code == 200, analysed.text
        second = create_app(
            replace(shared, role="worker", data_dir=tmp_path / "second"),
            model_loader=lambda: tiny_model,
        )
        async with running(second):
            await until(lambda: second.state.job_worker.registered.is_set())
            await _api_ready(api)
            question = {"sha256": analysed.json()["sha256"], "aspect": "texture"}
            asked = await api.post("/v1/ask", json=question)
    assert asked.status_code == status, asked.text
    if status == 409:  # the first worker's disk held the bytes
        assert problem(asked)["type"].endswith("image-not-stored")


async def test_an_image_url_is_fetched_by_the_api_and_analysed_by_the_worker(
    scale_settings: Settings, worker, tmp_path: Path
) -> None:
    from local_http import serve_site

    settings = replace(
        scale_settings, role="api", data_dir=tmp_path / "api-data", allow_private_urls=True
    )
    data = unique_png()
    async with running(create_app(settings)) as api:
        await _api_ready(api)
        with serve_site(data) as site:
            response = await api.post("/v1/analyze", json={"url": site.base + "/image"})
            refused = await api.post("/v1/analyze", json={"url": "http://10.0.0.1/x.png"})
    assert response.status_code == 200, response.text
    assert response.json()["mode"] == "model" and response.json()["p_fake"] is not None
    body = problem(refused)  # the SSRF guard runs where the URL came in: nothing queued
    assert body["status"] == 422 and body["type"].endswith("url-refused")
    rows = await run_sql(settings.database_url, "SELECT state FROM jobs")
    assert rows == [("done",)]


async def test_bad_images_are_refused_by_the_api_and_never_queued(api, worker, settings) -> None:
    await _api_ready(api)
    response = await api.post("/v1/analyze", **upload(b"not an image at all"))
    assert problem(response)["status"] == 415
    assert await run_sql(settings.database_url, "SELECT id FROM jobs") == []


async def test_without_a_worker_the_api_says_so_and_still_serves_lookups(api) -> None:
    # Ready all the same: it serves cached results, lookups and reviews without one.
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["state"] == "no-workers"
    assert ready.json()["workers"] == 0
    response = await api.post("/v1/analyze", **upload(unique_png()))
    body = problem(response)
    assert body["status"] == 503 and "worker" in body["detail"]
    assert response.headers["retry-after"] == "5"
    lookup = await api.post("/v1/lookup", json={"sha256": ["a" * 64]})
    assert lookup.status_code == 200


async def test_cached_results_are_served_while_no_worker_is_live(api, worker, settings) -> None:
    await _api_ready(api)
    data = unique_png()
    sha = (await api.post("/v1/analyze", **upload(data))).json()["sha256"]
    asked = {"sha256": sha, "aspect": "texture"}
    assert (await api.post("/v1/ask", json=asked)).status_code == 200
    # The only worker is gone as far as the API can tell.
    await run_sql(settings.database_url, "UPDATE workers SET stopped_at = :t", t=utcnow())
    for _ in range(200):
        if (await api.get("/readyz")).json()["workers"] == 0:
            break
        await asyncio.sleep(0.05)
    again = await api.post("/v1/analyze", **upload(data))
    assert again.status_code == 200 and again.headers["x-cache"] == "hit"
    assert (await api.get(f"/v1/analyses/{sha}")).status_code == 200
    assert (await api.post("/v1/ask", json=asked)).headers["x-cache"] == "hit"
    for refused in (
        await api.post("/v1/analyze", **upload(unique_png())),
        await api.post("/v1/ask", json={"sha256": sha, "aspect": "edge"}),
        await api.post(
            "/v1/ask",
            json={"sha256": sha, "enhance": True},
            headers={"Accept": "text/event-stream"},
        ),
    ):
        body = problem(refused)
        assert body["status"] == 503 and body["type"].endswith("no-workers")


async def test_a_dead_workers_job_is_finished_by_a_live_worker(worker, settings) -> None:
    identity = worker.app.state.model_host.identity
    # A job a dead worker ("ghost") claimed: its lease ran out a while ago.
    await run_sql(
        settings.database_url,
        "INSERT INTO jobs (kind, sha256, model_key, prompt_version, explain, image, state,"
        " attempts, worker_id, lease_until, created_at) VALUES ('analyze', :sha, :model,"
        " :prompts, :no, :image, 'running', 1, 'ghost', :lapsed, :lapsed)",
        sha="0" * 64,
        model=identity.model_key,
        prompts=identity.prompt_version,
        no=False,
        image=unique_png(),
        lapsed=utcnow() - timedelta(minutes=5),
    )
    db = Database(create_engine(settings.database_url))
    store = JobStore(db, lease_s=30, attempts=3)
    try:
        [[job_id]] = await run_sql(settings.database_url, "SELECT id FROM jobs")
        # The live worker's keep-alive queues it again, then claims and runs it.
        outcome = await _outcome(store, job_id)
        assert outcome is not None and outcome.state == "done"
        rows = await run_sql(settings.database_url, "SELECT attempts, worker_id FROM jobs")
        assert rows[0][0] == 2 and rows[0][1] != "ghost"
        assert len(await run_sql(settings.database_url, "SELECT id FROM analyses")) == 1
    finally:
        await db.dispose()


async def test_a_job_the_worker_cannot_run_fails_with_its_reason(worker, settings) -> None:
    db = Database(create_engine(settings.database_url))
    store = JobStore(db, lease_s=30, attempts=3)
    try:
        identity = worker.app.state.model_host.identity
        job_id = await store.enqueue("analyze", "0" * 64, identity, image=b"junk", max_queued=9)
        outcome = await _outcome(store, job_id)
        assert outcome is not None and outcome.state == "failed"
        assert outcome.error_status == 415 and outcome.error_detail
    finally:
        await db.dispose()


async def test_a_ready_worker_says_so_in_its_metrics(worker) -> None:
    # `fakescope_model_ready == 0 for minutes` is an alert README recommends: a worker
    # (or an all-in-one server) whose model has loaded must not report 0 forever.
    metrics = (await worker.get("/metrics")).text
    assert "fakescope_model_ready 1.0" in metrics


async def test_a_worker_that_could_not_register_tries_again(
    scale_settings: Settings, tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database was away (a failover) just as the model finished loading: the worker
    # must keep trying to register, not sit idle for good while its /readyz says ready.
    from server.jobs import registry
    from server.jobs import worker as worker_module

    real_register = registry.register
    refused: list[int] = []

    async def register(*args: Any, **kwargs: Any) -> None:
        if len(refused) < 2:
            refused.append(1)
            raise ConnectionRefusedError("the database is restarting")
        await real_register(*args, **kwargs)

    monkeypatch.setattr(registry, "register", register)
    monkeypatch.setattr(worker_module, "REGISTER_RETRY_S", 0.05)
    app = create_app(replace(scale_settings, role="worker"), model_loader=lambda: tiny_model)
    async with running(app):
        await until(lambda: app.state.job_worker.registered.is_set())
        assert len(refused) == 2
        workers = await registry.live_workers(app.state.db, scale_settings.job_lease_s)
        assert [w.id for w in workers] == [app.state.job_worker.id]


async def test_a_worker_whose_row_went_missing_registers_again(worker, settings) -> None:
    # Someone cleaned the workers table by hand: the next heartbeat finds no row, and
    # the worker registers again rather than stay invisible to every API process.
    from server.jobs import registry

    job_worker = worker.app.state.job_worker
    await run_sql(settings.database_url, "DELETE FROM workers")
    db = worker.app.state.db

    async def listed() -> bool:
        return job_worker.id in [w.id for w in await registry.live_workers(db, 60)]

    for _ in range(300):
        if await listed():
            break
        await asyncio.sleep(0.02)
    assert await listed()


async def test_a_worker_serves_no_public_api(worker) -> None:
    assert (await worker.get("/healthz")).status_code == 200
    assert (await worker.post("/v1/analyze", **upload(unique_png()))).status_code == 404


def test_a_worker_without_a_model_is_a_settings_error(settings: Settings) -> None:
    from server.settings import SettingsError

    with pytest.raises(SettingsError, match="FAKESCOPE_MODEL"):
        create_app(replace(settings, role="worker"))


async def _fake_worker(settings: Settings, api: AppClient) -> tuple[JobStore, Any, str]:
    """A worker registered by hand (the test plays its part) and an analysed image."""
    from server.db.analyses import Identity
    from server.jobs import registry

    db = Database(create_engine(settings.database_url))
    identity = Identity(
        model_key="fake@-:none", prompt_version=api.app.state.model_host.prompt_version
    )
    await registry.register(db, "fake", identity, {"id": "fake", "untrained": True}, 4)
    # Alive for as long as the test runs (it plays no heartbeat); `_stop` ends it.
    await run_sql(
        settings.database_url,
        "UPDATE workers SET heartbeat_at = :t WHERE id = 'fake'",
        t=utcnow() + timedelta(hours=1),
    )
    sha = "a" * 64
    await run_sql(
        settings.database_url,
        "INSERT INTO images (sha256, pdq, pdq_quality, format, width, height, bytes, n_frames,"
        " first_seen_at) VALUES (:sha, :pdq, 100, 'PNG', 8, 8, 100, 1, :now)",
        sha=sha,
        pdq="0" * 64,
        now=utcnow(),
    )
    await _api_ready(api)
    return JobStore(db, lease_s=30, attempts=3), identity, sha


async def _claimed(store: JobStore, identity: Any) -> Any:
    for _ in range(300):
        claimed = await store.claim("fake", identity, 1)
        if claimed:
            return claimed[0]
        await asyncio.sleep(0.02)
    raise AssertionError("the API never queued the job")


async def _relayed(api: AppClient, job_id: int, text: str) -> None:
    """Until the API process has read `text` (the job's whole text so far) and queued it for
    each stream on the job: what the worker writes next then reaches them as its own piece."""
    streams = api.app.state.model_host.queue.streams

    def relayed() -> bool:
        return bool(streams.get(job_id)) and all(s.sent == len(text) for s in streams[job_id])

    await until(relayed)


async def test_a_streamed_answer_is_relayed_as_the_worker_writes_it(api, settings) -> None:
    from server.db.answers import new_answer

    store, identity, sha = await _fake_worker(settings, api)
    question = {"sha256": sha, "aspect": "texture"}
    try:
        asking = asyncio.create_task(
            api.post("/v1/ask", json=question, headers={"Accept": "text/event-stream"})
        )
        job = await _claimed(store, identity)
        assert job.kind == "ask" and job.question["stream"] is True
        for text in ("The tex", "The texture is", "The texture is smooth."):
            assert await store.progress(job.id, "fake", text)
            await _relayed(api, job.id, text)  # the API relays each step before the next
        async with store.db.write() as session:
            session.add(
                new_answer(
                    sha,
                    identity,
                    "aspect",
                    question_prompt_hash(job.question),
                    "texture",
                    "The texture is smooth.",
                )
            )
        assert await store.finish(job.id, "fake", answer="The texture is smooth.")
        response = await asking
        assert response.status_code == 200, response.text
        events = [b for b in response.text.split("\n\n") if b.strip()]
        tokens = [json.loads(e.split("data: ", 1)[1])["text"] for e in events[:-1]]
        assert tokens == ["The tex", "ture is", " smooth."]
        done = json.loads(events[-1].split("data: ", 1)[1])
        assert events[-1].startswith("event: done") and done["answer"] == "The texture is smooth."
    finally:
        await store.db.dispose()


async def test_a_stream_whose_job_fails_first_is_a_problem_response(api, settings) -> None:
    store, identity, sha = await _fake_worker(settings, api)
    try:
        asking = asyncio.create_task(
            api.post(
                "/v1/ask",
                json={"sha256": sha, "enhance": True},
                headers={"Accept": "text/event-stream"},
            )
        )
        job = await _claimed(store, identity)
        await store.fail(job.id, "fake", status=409, code="image-not-stored", detail="gone")
        body = problem(await asking)
        assert (body["status"], body["detail"]) == (409, "gone")
        assert body["type"].endswith("image-not-stored")
    finally:
        await store.db.dispose()


def question_prompt_hash(question: dict[str, Any]) -> str:
    from server.jobs.worker import question_from_job

    return question_from_job(question).prompt_hash


def _dropped_connection() -> DBAPIError:
    return DBAPIError("SELECT", {}, ConnectionResetError("reset"), connection_invalidated=True)


async def _runs_again_after_a_dropped_connection(
    worker: AppClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    error: Callable[[], Exception] = _dropped_connection,
) -> None:
    """`owner.name` meets a dropped connection (or `error`) once: the job still ends done,
    on its second attempt, with `owner.name` called twice."""
    real = getattr(owner, name)
    calls: list[int] = []

    async def once_dropped(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error()
        return await real(*args, **kwargs)

    monkeypatch.setattr(owner, name, once_dropped)
    db = Database(create_engine(settings.database_url))
    store = JobStore(db, lease_s=30, attempts=3)
    try:
        identity = worker.app.state.model_host.identity
        job_id = await store.enqueue(
            "analyze", "0" * 64, identity, image=unique_png(), max_queued=9
        )
        outcome = await _outcome(store, job_id)
        assert outcome is not None and outcome.state == "done", outcome
        rows = await run_sql(settings.database_url, "SELECT attempts FROM jobs")
        assert rows[0][0] == 2 and len(calls) == 2
    finally:
        await db.dispose()


async def test_a_job_that_meets_a_dropped_connection_runs_again(
    worker, settings, monkeypatch
) -> None:
    # A terminated backend under a running job is not the job's fault: it goes back to
    # the queue and runs again (not a 503 `worker-error` for its client).
    analyses = worker.app.state.job_worker.analyses
    await _runs_again_after_a_dropped_connection(worker, settings, monkeypatch, analyses, "analyze")


async def test_a_job_that_waits_out_a_full_connection_pool_runs_again(
    worker, settings, monkeypatch
) -> None:
    # Every pooled connection of the worker stayed in use (SQLAlchemy's TimeoutError, not a
    # DBAPIError): busy, not broken. The job failed for good, 503 `worker-error`.
    analyses = worker.app.state.job_worker.analyses
    await _runs_again_after_a_dropped_connection(
        worker,
        settings,
        monkeypatch,
        analyses,
        "analyze",
        lambda: PoolTimeoutError("QueuePool limit of size 1 overflow 1 reached"),
    )


async def test_a_job_whose_finish_was_lost_is_not_left_running(
    worker, settings, monkeypatch
) -> None:
    # The worker ran the job but could not record it (the connection dropped each time
    # it tried). It must stop renewing that job's lease: the job lapses, goes back to
    # the queue and finishes, instead of staying 'running' for as long as the worker lives.
    jobs = worker.app.state.job_worker.jobs
    await _runs_again_after_a_dropped_connection(worker, settings, monkeypatch, jobs, "finish")


SSE = {"Accept": "text/event-stream"}


def _events(response: Any) -> list[tuple[str, dict[str, Any]]]:
    blocks = [b for b in response.text.split("\n\n") if b.strip()]
    return [
        (b.split("\n", 1)[0].removeprefix("event: "), json.loads(b.split("data: ", 1)[1]))
        for b in blocks
    ]


async def test_two_api_processes_asking_for_one_image_share_one_job(
    api, worker, scale_settings: Settings, tmp_path: Path, monkeypatch
) -> None:
    # Each API process dedupes its own requests; the job queue dedupes across them.
    jobs = worker.app.state.job_worker.jobs
    real_claim = jobs.claim
    gate = asyncio.Event()

    async def gated_claim(*args: Any, **kwargs: Any) -> Any:
        return await real_claim(*args, **kwargs) if gate.is_set() else []

    monkeypatch.setattr(jobs, "claim", gated_claim)
    other_settings = replace(scale_settings, role="api", data_dir=tmp_path / "api-2")
    async with running(create_app(other_settings)) as other:
        await _api_ready(api)
        await _api_ready(other)
        data = unique_png()
        pending = [
            asyncio.create_task(client.post("/v1/analyze?explain=true", **upload(data)))
            for client in (api, other)
        ]
        hosts = [client.app.state.model_host for client in (api, other)]

        def both_waiting() -> bool:
            for task in pending:  # one answered early: say how, not "never became true"
                assert not task.done() or task.exception(), task.result().text
            return all(host.queue.depth == 1 for host in hosts)

        await until(both_waiting)
        url = scale_settings.database_url
        assert await run_sql(url, "SELECT count(*) FROM jobs") == [(1,)]
        gate.set()
        responses = await asyncio.gather(*pending)
    assert [r.status_code for r in responses] == [200, 200], responses[0].text
    first, second = (r.json() for r in responses)
    assert first["sha256"] == second["sha256"] and first["p_fake"] == second["p_fake"]
    assert first["explanation"] and first["explanation"] == second["explanation"]
    assert await run_sql(url, "SELECT state FROM jobs") == [("done",)]
    metrics = (await worker.get("/metrics")).text
    assert 'fakescope_jobs_total{kind="analyze",outcome="done"} 1.0' in metrics


async def test_twin_questions_and_streams_share_one_job(api, settings) -> None:
    from server.db.answers import new_answer

    store, identity, sha = await _fake_worker(settings, api)
    host = api.app.state.model_host
    question = {"sha256": sha, "aspect": "texture"}
    try:
        first = asyncio.create_task(api.post("/v1/ask", json=question, headers=SSE))
        job = await _claimed(store, identity)
        assert await store.progress(job.id, "fake", "The tex")
        await asyncio.sleep(0.3)
        # A stream that comes late gets the text so far, then the rest; a plain
        # question waits for the streamed job's answer.
        late = asyncio.create_task(api.post("/v1/ask", json=question, headers=SSE))
        plain = asyncio.create_task(api.post("/v1/ask", json=question))
        await until(lambda: host.queue.depth == 3)
        assert await run_sql(settings.database_url, "SELECT count(*) FROM jobs") == [(1,)]
        answer = "The texture is smooth."
        assert await store.progress(job.id, "fake", "The texture is")
        await asyncio.sleep(0.3)
        async with store.db.write() as session:
            prompt_hash = question_prompt_hash(job.question)
            session.add(new_answer(sha, identity, "aspect", prompt_hash, "texture", answer))
        assert await store.finish(job.id, "fake", answer=answer)
        responses = await asyncio.gather(first, late, plain)
        assert [r.status_code for r in responses] == [200] * 3, responses[0].text
        for streamed in responses[:2]:
            events = _events(streamed)
            assert "".join(data["text"] for name, data in events if name == "token") == answer
            assert events[-1][0] == "done" and events[-1][1]["answer"] == answer
        assert responses[2].json()["answer"] == answer
        assert host.queue.depth == 0
    finally:
        await store.db.dispose()


async def test_the_relay_reads_only_the_text_its_streams_have_not_had(
    api, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each poll read every waiting stream's whole text: streams x length per poll. It now
    # reads from the least its streams have; streams that joined at other points of the
    # text (a twin asked later) each still get all of it, exactly once.
    from server.db.answers import new_answer

    store, identity, sha = await _fake_worker(settings, api)
    host = api.app.state.model_host
    reads: list[JobOutcome] = []
    real = host.jobs.outcomes

    async def recorded(*args: Any, **kwargs: Any) -> dict[int, JobOutcome]:
        found: dict[int, JobOutcome] = await real(*args, **kwargs)
        reads.extend(found.values())
        return found

    monkeypatch.setattr(host.jobs, "outcomes", recorded)
    question = {"sha256": sha, "aspect": "texture"}
    answer = "The texture is smooth — très lisse."
    try:
        first = asyncio.create_task(api.post("/v1/ask", json=question, headers=SSE))
        job = await _claimed(store, identity)
        assert await store.progress(job.id, "fake", answer[:7])
        await until(lambda: any(o.answer for o in reads))
        second = asyncio.create_task(api.post("/v1/ask", json=question, headers=SSE))
        await until(lambda: host.queue.depth == 2)
        assert await store.progress(job.id, "fake", answer[:14])
        await until(lambda: any(o.answer == answer[7:14] for o in reads))
        third = asyncio.create_task(api.post("/v1/ask", json=question, headers=SSE))
        await until(lambda: host.queue.depth == 3)
        assert await store.progress(job.id, "fake", answer[:27])
        await asyncio.sleep(0.3)
        async with store.db.write() as session:
            prompt_hash = question_prompt_hash(job.question)
            session.add(new_answer(sha, identity, "aspect", prompt_hash, "texture", answer))
        assert await store.finish(job.id, "fake", answer=answer)
        responses = await asyncio.gather(first, second, third)
        for streamed in responses:
            events = _events(streamed)
            assert "".join(data["text"] for name, data in events if name == "token") == answer
            assert events[-1][0] == "done" and events[-1][1]["answer"] == answer
        # Every read was of a part past what all the job's streams had then.
        assert all(o.answer_from + len(o.answer or "") <= len(answer) for o in reads)
        parts = {(o.answer_from, o.answer) for o in reads if o.answer}
        assert (7, answer[7:14]) in parts  # the first stream alone, past its 7 characters
        assert not any(start == 0 and text == answer[:27] for start, text in parts)
        assert host.queue.depth == 0
    finally:
        await store.db.dispose()


def test_streams_on_one_job_take_their_own_part_of_a_read_from_the_least() -> None:
    from server.jobs.remote_host import RemoteStream

    def queued(stream: RemoteStream) -> list[Any]:
        return [stream.items.get_nowait() for _ in range(stream.items.qsize())]

    ahead, behind, late = RemoteStream(1), RemoteStream(1), RemoteStream(1)
    assert not ahead.offer(JobOutcome(1, "running", "Hello wor"))
    assert not behind.offer(JobOutcome(1, "running", "Hel"))
    queued(ahead), queued(behind)
    read = JobOutcome(1, "running", "lo world", answer_from=3)  # from the least: 3
    assert not ahead.offer(read) and not behind.offer(read)
    assert (queued(ahead), ahead.sent) == (["ld"], 11)
    assert (queued(behind), behind.sent) == (["lo world"], 11)
    # One that joined while the read ran (it has nothing): that read is no use to it, even
    # the last; it stays for the next read, which starts where it is.
    finished = JobOutcome(1, "done", "!", answer_from=11)
    assert not late.offer(finished) and queued(late) == [] and late.sent == 0
    assert ahead.offer(finished) and queued(ahead) == ["!", finished]
    assert late.offer(JobOutcome(1, "done", "Hello world!"))
    assert queued(late)[0] == "Hello world!"


async def test_waiting_requests_get_no_workers_once_the_last_worker_is_gone(api, settings) -> None:
    # They do not wait out FAKESCOPE_REQUEST_TIMEOUT_S: one lease (1.5 s here) after the
    # API process last saw a worker, each gets 503 `no-workers`; the jobs stay queued.
    store, identity, sha = await _fake_worker(settings, api)
    host = api.app.state.model_host
    assert host.settings.request_timeout_s >= 60
    try:
        streaming = asyncio.create_task(
            api.post("/v1/ask", json={"sha256": sha, "aspect": "edge"}, headers=SSE)
        )
        job = await _claimed(store, identity)
        assert await store.progress(job.id, "fake", "The ed")
        analysing = asyncio.create_task(api.post("/v1/analyze", **upload(unique_png())))
        asking = asyncio.create_task(
            api.post("/v1/ask", json={"sha256": sha, "aspect": "texture"}, headers=SSE)
        )
        await until(lambda: host.queue.depth == 3)
        await _relayed(api, job.id, "The ed")  # the stream has relayed its text so far
        await run_sql(settings.database_url, "UPDATE workers SET stopped_at = :t", t=utcnow())
        async with asyncio.timeout(20):  # not the 120 s request timeout
            analysed, asked, streamed = await asyncio.gather(analysing, asking, streaming)
        for refused in (analysed, asked):
            body = problem(refused)
            assert body["status"] == 503 and body["type"].endswith("no-workers")
            assert refused.headers["retry-after"] == "5"
        assert streamed.status_code == 200  # its text had begun: it ends with an error event
        events = _events(streamed)
        assert events[0] == ("token", {"text": "The ed"})
        assert events[-1][0] == "error" and events[-1][1]["status"] == 503
        assert host.queue.depth == 0
        rows = await run_sql(settings.database_url, "SELECT kind, state FROM jobs")
        assert sorted(rows) == [("analyze", "queued"), ("ask", "queued"), ("ask", "running")]
    finally:
        await store.db.dispose()


async def test_requests_for_a_model_no_live_worker_serves_get_no_workers(api, settings) -> None:
    # A rolling upgrade: the old model's last worker leaves while a new model's runs. The
    # jobs waiting for the old model cannot be claimed by the new one's worker, so their
    # requests get 503 `no-workers` a lease later, not after the 120 s request timeout.
    from server.db.analyses import Identity
    from server.jobs import registry

    store, identity, _sha = await _fake_worker(settings, api)
    host = api.app.state.model_host
    try:
        analysing = asyncio.create_task(api.post("/v1/analyze", **upload(unique_png())))
        await until(lambda: host.queue.depth == 1)
        newer = Identity(model_key="newer@-:none", prompt_version=identity.prompt_version)
        await registry.register(store.db, "newer", newer, {"id": "newer"}, 4)
        await run_sql(
            settings.database_url,
            "UPDATE workers SET heartbeat_at = :t WHERE id = 'newer'",
            t=utcnow() + timedelta(hours=1),
        )
        await run_sql(
            settings.database_url,
            "UPDATE workers SET stopped_at = :t WHERE id = 'fake'",
            t=utcnow(),
        )
        async with asyncio.timeout(20):
            refused = await analysing
        body = problem(refused)
        assert body["status"] == 503 and body["type"].endswith("no-workers")
        assert "fake@-:none" in body["detail"]
        assert host.has_workers and host.identity.model_key == "newer@-:none"
        assert host.queue.depth == 0 and not host.queue.models
        rows = await run_sql(settings.database_url, "SELECT model_key, state FROM jobs")
        assert rows == [("fake@-:none", "queued")]  # a worker of that model still runs it
    finally:
        await store.db.dispose()


async def test_an_api_process_expires_jobs_while_no_worker_runs(api, settings) -> None:
    # A dead worker's job goes back to the queue, and one queued for over an hour fails
    # and drops its bytes, without waiting for a live worker to notice.
    long_ago = utcnow() - timedelta(hours=2)
    for state, worker_id, lease, created in (
        ("running", "ghost", utcnow() - timedelta(minutes=5), utcnow()),
        ("queued", None, None, long_ago),
    ):
        await run_sql(
            settings.database_url,
            "INSERT INTO jobs (kind, sha256, model_key, prompt_version, explain, image, state,"
            " attempts, worker_id, lease_until, created_at) VALUES ('analyze', :sha,"
            " :model, 'p1', :no, :image, :state, 1, :worker, :lease, :created)",
            sha="0" * 64,
            model="gone@-:none",
            no=False,
            image=b"bytes",
            state=state,
            worker=worker_id,
            lease=lease,
            created=created,
        )
    expected = [("queued", None, b"bytes", None), ("failed", None, None, "expired")]
    for _ in range(300):
        rows = await run_sql(
            settings.database_url,
            "SELECT state, worker_id, image, error_code FROM jobs ORDER BY id",
        )
        if rows == expected:
            break
        await asyncio.sleep(0.05)
    assert rows == expected
