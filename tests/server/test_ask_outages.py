"""Questions and cache hits with a model, through database outages.

`POST /v1/ask` reads the image's row and the stored answer, then (on a miss) the analysed
image's bytes, and stores the answer; a cache hit of `POST /v1/analyze` keeps the image's
bytes again. With the bytes in the database (`FAKESCOPE_IMAGE_STORE=database`) each of
these used to answer 503 `database-unavailable` on the first dropped connection. All are
safe to repeat (reads; an answer insert that meets its own row is taken as stored; an
upsert of the bytes), so they go on on fresh connections for a retry budget. A database
that stays away still ends in 503 `database-unavailable` with Retry-After, never a 500. The
faults are real: the backend under the statement is terminated just before it runs.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from db_faults import TerminatedBackends
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

from server.app import create_app
from server.settings import Settings

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

IMAGE_ROW = "FROM images"  # the ask service's check that the image was analysed
ANSWER_READ = "FROM answers"
ANSWER_STORE = "INSERT INTO answers"
BYTES_READ = "FROM stored_images"
BYTES_KEPT = "UPDATE stored_images SET stored_at"  # a save of bytes kept already


@pytest.fixture
def model_settings(settings: Settings) -> Settings:
    return replace(settings, max_new_tokens=8, image_store="database")


@asynccontextmanager
async def _model_client(settings: Settings, tiny_model: Any) -> AsyncIterator[AppClient]:
    async with running(create_app(settings, model_loader=lambda: tiny_model)) as client:
        await until(lambda: client.app.state.analysis_service.host.ready)
        yield client


@pytest.fixture
async def client(model_settings: Settings, tiny_model: Any) -> AsyncIterator[AppClient]:
    async with _model_client(model_settings, tiny_model) as ready:
        yield ready


async def _analysed(client: AppClient, data: bytes | None = None) -> str:
    upload_of = upload(data or unique_png())
    response = await client.post("/v1/analyze", **upload_of)
    # Under a short request timeout the model's pass may outlast it on a busy machine (a
    # 503 `timeout`): the analysis goes on, and asking again joins it or finds it stored.
    for _ in range(100):
        if problem_type(response) != "timeout":
            break
        response = await client.post("/v1/analyze", **upload_of)
    assert response.status_code == 200, response.text
    sha: str = response.json()["sha256"]
    return sha


def problem_type(response: Any) -> str | None:
    """The problem type's last part of a 503 (None for any other answer)."""
    if response.status_code != 503:
        return None
    return str(response.json().get("type", "")).rsplit(":", 1)[-1]


def _terminating(client: AppClient, marker: str | Callable[[str], bool], times: int | None = 1):
    return TerminatedBackends(client.app.state.db.engine, marker, times=times)


def _database_unavailable(response: Any) -> None:
    body = problem(response)
    assert response.status_code == 503 and response.headers["retry-after"] == "2", body
    assert body["type"].endswith(":database-unavailable"), body


async def test_a_stored_answer_is_read_through_terminated_backends(client: AppClient) -> None:
    question = {"sha256": await _analysed(client), "aspect": "texture"}
    first = await client.post("/v1/ask", json=question)
    assert first.status_code == 200 and first.headers["x-cache"] == "miss", first.text
    faults = [_terminating(client, IMAGE_ROW), _terminating(client, ANSWER_READ)]
    try:
        again = await client.post("/v1/ask", json=question)
    finally:
        for fault in faults:
            fault.remove()
    assert again.status_code == 200, again.text
    assert again.headers["x-cache"] == "hit" and again.json()["answer"] == first.json()["answer"]
    # Both reads are one transaction: the answer's terminated read reads the row again too.
    assert [fault.seen for fault in faults] == [3, 2]


async def test_the_images_bytes_are_read_through_a_terminated_backend(client: AppClient) -> None:
    sha = await _analysed(client)
    faults = _terminating(client, BYTES_READ)
    try:
        asked = await client.post("/v1/ask", json={"sha256": sha, "aspect": "edge"})
    finally:
        faults.remove()
    assert asked.status_code == 200 and asked.headers["x-cache"] == "miss", asked.text
    assert faults.seen == 2


async def test_an_answer_is_stored_through_a_terminated_backend(
    client: AppClient, model_settings: Settings
) -> None:
    question = {"sha256": await _analysed(client), "question": "Is the lighting plausible?"}
    faults = _terminating(client, ANSWER_STORE)
    try:
        asked = await client.post("/v1/ask", json=question)
    finally:
        faults.remove()
    assert asked.status_code == 200, asked.text
    assert faults.seen == 2
    again = await client.post("/v1/ask", json=question)
    assert again.headers["x-cache"] == "hit" and again.json()["answer"] == asked.json()["answer"]
    stored = await run_sql(model_settings.database_url, "SELECT count(*) FROM answers")
    assert stored == [(1,)]


async def test_a_cache_hit_keeps_the_bytes_again_through_a_terminated_backend(
    client: AppClient, model_settings: Settings
) -> None:
    data = unique_png()
    sha = await _analysed(client, data)
    faults = _terminating(client, BYTES_KEPT)
    try:
        hit = await client.post("/v1/analyze", **upload(data))
    finally:
        faults.remove()
    assert hit.status_code == 200 and hit.headers["x-cache"] == "hit", hit.text
    assert faults.seen == 2
    kept = await run_sql(
        model_settings.database_url, "SELECT data FROM stored_images WHERE sha256 = :sha", sha=sha
    )
    assert [bytes(row[0]) for row in kept] == [data]


async def test_questions_and_cache_hits_of_a_database_that_stays_away_end_in_503_not_500(
    model_settings: Settings, tiny_model: Any
) -> None:
    # A request timeout of 2 s: the ask service's reads try again for half of it. With 1 s
    # (0.5 s of retries) a first try, which terminates a backend through a connection of
    # its own, could outlast the budget on a busy machine, and nothing was tried again.
    outage = replace(model_settings, request_timeout_s=2.0)
    async with _model_client(outage, tiny_model) as client:
        data = unique_png()
        sha = await _analysed(client, data)
        requests: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            (ANSWER_READ, lambda: client.post("/v1/ask", json={"sha256": sha, "aspect": "edge"})),
            (BYTES_READ, lambda: client.post("/v1/ask", json={"sha256": sha, "aspect": "shape"})),
            (BYTES_KEPT, lambda: client.post("/v1/analyze", **upload(data))),
        ]
        for marker, request in requests:
            faults = _terminating(client, marker, times=None)
            try:
                response = await request()
            finally:
                faults.remove()
            _database_unavailable(response)
            assert faults.seen > 1, marker  # tried again before giving up


def _second(marker: str) -> Callable[[str], bool]:
    """Picks the second statement holding `marker` (the first is let through)."""
    seen = itertools.count(1)
    return lambda statement: marker in statement and next(seen) == 2


@pytest.fixture
async def worker(model_settings: Settings, tiny_model: Any) -> AsyncIterator[AppClient]:
    async with running_worker(model_settings, tiny_model) as client:
        yield client


async def test_an_api_process_reads_the_workers_answer_through_a_terminated_backend(
    model_settings: Settings, worker: AppClient, tmp_path: Path
) -> None:
    api_settings = replace(model_settings, role="api", data_dir=tmp_path / "api-data")
    async with running(create_app(api_settings)) as api:
        await until(lambda: api.app.state.analysis_service.host.has_workers)
        sha = await _analysed(api)
        # The first read of answers is the cache's (a miss); the second reads the answer
        # the worker has just stored.
        faults = _terminating(api, _second(ANSWER_READ), times=None)
        try:
            asked = await api.post("/v1/ask", json={"sha256": sha, "aspect": "shape"})
        finally:
            faults.remove()
    assert asked.status_code == 200 and asked.headers["x-cache"] == "miss", asked.text
    assert faults.seen == 1
