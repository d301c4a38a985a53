"""`POST /v1/ask` spends one retry budget on a dead database, not one per step.

A question that misses the cache reads the stored answer, loads the image's bytes and
stores the new answer: three database steps, each tried again through dropped connections.
Each used to get its own full budget, so a database that went away step by step kept one
request retrying for several budgets (more than half its time) before its 503. The steps
now share one allowance. The faults are injected in front of the database and the clock
is fake (it moves only by the retries' pauses): nothing here depends on the machine's speed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from db_faults import dropped_connection
from server_helpers import AppClient, problem, running, unique_png, until, upload
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from server.app import create_app
from server.db.database import Database
from server.jobs.retry import request_budget_s
from server.settings import Settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class FaultyDatabase:
    """A `Database` whose reads, bare connections and writes drop while their test says so;
    `tries` counts each kind."""

    def __init__(self, db: Database, **down: Callable[[], bool]) -> None:
        self.db = db
        self.down = down
        self.tries = {"read": 0, "connect": 0, "write": 0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    def _try(self, kind: str) -> None:
        self.tries[kind] += 1
        if self.down.get(kind, lambda: False)():
            raise dropped_connection()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        self._try("read")
        async with self.db.read() as session:
            yield session

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        self._try("connect")
        async with self.db.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        self._try("write")
        async with self.db.write() as session:
            yield session


@pytest.fixture
async def client(settings: Settings, tiny_model: Any) -> AsyncIterator[AppClient]:
    model_settings = replace(settings, max_new_tokens=8, image_store="database")
    app = create_app(model_settings, model_loader=lambda: tiny_model)
    async with running(app) as ready:
        await until(lambda: ready.app.state.analysis_service.host.ready)
        yield ready


async def test_a_question_whose_database_goes_away_step_by_step_retries_for_one_budget(
    client: AppClient, settings: Settings
) -> None:
    response = await client.post("/v1/analyze", **upload(unique_png()))
    assert response.status_code == 200, response.text
    sha = response.json()["sha256"]

    ask = client.app.state.ask_service
    images = client.app.state.analysis_service.images
    budget_s = request_budget_s(settings.request_timeout_s)
    clock = FakeClock()
    ask.clock, ask.sleep = clock.time, clock.sleep
    # The answer read comes back half a budget in, the bytes a quarter later; the store
    # never: each step alone would have had time left in a budget of its own.
    faults = FaultyDatabase(
        ask.db,
        read=lambda: clock.now < budget_s / 2,
        write=lambda: True,
    )
    bytes_faults = FaultyDatabase(images.db, connect=lambda: clock.now < budget_s * 3 / 4)
    ask.db, images.db = faults, bytes_faults
    try:
        asked = await client.post("/v1/ask", json={"sha256": sha, "aspect": "texture"})
    finally:
        ask.db, images.db = faults.db, bytes_faults.db

    body = problem(asked)
    assert asked.status_code == 503 and asked.headers["retry-after"] == "2", body
    assert body["type"].endswith(":database-unavailable"), body
    # Every step was reached and tried again, and all of it took one budget in all.
    assert faults.tries["read"] > 1 and bytes_faults.tries["connect"] > 1
    assert faults.tries["write"] > 1
    assert clock.now <= budget_s
