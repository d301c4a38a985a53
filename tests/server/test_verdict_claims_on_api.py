"""The per-(sha, model) verdict claim on an API process (FAKESCOPE_ROLE=api).

A GPU worker stores an explained job's verdict long before the job ends (the explanation
is generated after it), and the API process cannot tell when: a plain request must not wait
for an explained twin's whole job, or it is answered only once the explanation is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from server_helpers import (
    GATE_S,
    AppClient,
    GatedModel,
    in_flight,
    running,
    running_worker,
    unique_png,
    until,
    upload,
)

from server.app import create_app
from server.settings import Settings


@pytest.fixture
def gated(tiny_model: Any) -> GatedModel:
    return GatedModel(tiny_model)


@pytest.fixture
def scale_settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        max_new_tokens=8,
        job_lease_s=3.0,
        batch_wait_ms=5.0,
    )


@pytest.fixture
async def worker(scale_settings: Settings, gated: GatedModel) -> AsyncIterator[AppClient]:
    async with running_worker(scale_settings, gated) as client:
        try:
            yield client
        finally:
            gated.open_gates()


@pytest.fixture
async def api(
    scale_settings: Settings, tmp_path: Path, worker: AppClient
) -> AsyncIterator[AppClient]:
    api_settings = replace(scale_settings, role="api", data_dir=tmp_path / "api-data")
    async with running(create_app(api_settings)) as client:
        await until(lambda: client.app.state.model_host.has_workers)
        yield client


async def test_a_plain_request_on_an_api_process_does_not_wait_for_an_explained_twins_job(
    api: AppClient, worker: AppClient, gated: GatedModel
) -> None:
    data = unique_png()
    gated.score_gate.clear()
    gated.generate_gate.clear()
    explained_request = asyncio.ensure_future(api.post("/v1/analyze?explain=true", **upload(data)))
    await until(gated.scoring.is_set)  # the worker runs the explained job
    plain_request = asyncio.ensure_future(api.post("/v1/analyze", **upload(data)))
    await until(lambda: in_flight(api, explain=False))
    gated.score_gate.set()

    # Answered once the verdict is stored, while the explanation is still being generated.
    plain = await asyncio.wait_for(plain_request, GATE_S / 2)
    assert plain.status_code == 200, plain.text
    assert plain.json()["explanation"] is None
    assert not explained_request.done()
    gated.generate_gate.set()
    explained = await explained_request
    assert explained.status_code == 200, explained.text
    assert isinstance(explained.json()["explanation"], str)
    assert explained.json()["p_fake"] == plain.json()["p_fake"]
    assert gated.score_calls == [1]  # the worker scored the pair once
