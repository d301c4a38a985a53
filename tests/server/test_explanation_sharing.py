"""Plain and explained requests for one image share its verdict; added explanations are timed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import (
    GATE_S,
    AppClient,
    GatedModel,
    count_rows,
    in_flight,
    run_sql,
    running,
    unique_png,
    until,
    upload,
    wait_until_ready,
)

from server.app import create_app
from server.settings import Settings


def model_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        rate_limit=None,
        batch_wait_ms=5.0,
        max_new_tokens=8,
    )


@pytest.fixture
def gated(tiny_model: Any) -> GatedModel:
    return GatedModel(tiny_model)


@pytest.fixture
async def gated_client(sqlite_url: str, tmp_path: Path, gated: GatedModel) -> AsyncIterator[Any]:
    app = create_app(model_settings(sqlite_url, tmp_path), model_loader=lambda: gated)
    async with running(app) as client:
        await wait_until_ready(client)
        try:
            yield client
        finally:
            gated.open_gates()


async def test_a_plain_request_waits_for_the_verdict_an_explained_twin_is_scoring(
    gated_client: AppClient, gated: GatedModel, sqlite_url: str
) -> None:
    data = unique_png()
    gated.score_gate.clear()
    gated.generate_gate.clear()
    explained_request = asyncio.ensure_future(
        gated_client.post("/v1/analyze?explain=true", **upload(data))
    )
    await until(gated.scoring.is_set)
    plain_request = asyncio.ensure_future(gated_client.post("/v1/analyze", **upload(data)))
    await until(lambda: in_flight(gated_client, explain=False))
    gated.score_gate.set()

    # Answered once the verdict is stored, while the explanation is still being generated.
    plain = await asyncio.wait_for(plain_request, GATE_S)
    assert plain.status_code == 200, plain.text
    assert plain.json()["explanation"] is None
    assert not explained_request.done()
    gated.generate_gate.set()
    explained = await explained_request
    assert explained.status_code == 200, explained.text

    assert gated.score_calls == [1]  # one verdict pass for the pair
    assert isinstance(explained.json()["explanation"], str)
    assert explained.json()["p_fake"] == plain.json()["p_fake"]
    assert {"score", "explain"} <= set(explained.json()["timings_ms"])
    assert (await count_rows(sqlite_url))["analyses"] == 1


@pytest.mark.parametrize("explained_first", [True, False])
async def test_plain_and_explained_requests_sent_together_score_the_image_once(
    gated_client: AppClient, gated: GatedModel, sqlite_url: str, explained_first: bool
) -> None:
    images = [unique_png() for _ in range(4)]
    requests = []
    for data in images:
        pair = [
            gated_client.post("/v1/analyze?explain=true", **upload(data)),
            gated_client.post("/v1/analyze", **upload(data)),
        ]
        requests.extend(pair if explained_first else pair[::-1])
    responses = await asyncio.gather(*requests)
    assert [r.status_code for r in responses] == [200] * len(requests)

    assert sum(gated.score_calls) == len(images)
    by_image: dict[str, list[dict[str, Any]]] = {}
    for response in responses:
        by_image.setdefault(response.json()["sha256"], []).append(response.json())
    for pair in by_image.values():
        assert len({analysis["p_fake"] for analysis in pair}) == 1
        assert any(isinstance(analysis["explanation"], str) for analysis in pair)
    assert (await count_rows(sqlite_url))["analyses"] == len(images)


async def stored_timings(database_url: str, sha: str) -> dict[str, float]:
    (row,) = await run_sql(database_url, "SELECT timings FROM analyses WHERE sha256 = :s", s=sha)
    timings = row[0]
    return dict(json.loads(timings) if isinstance(timings, str) else timings)


async def test_an_explanation_added_to_a_cached_verdict_records_its_time(
    database_url: str, tmp_path: Path, tiny_model: Any
) -> None:
    app = create_app(model_settings(database_url, tmp_path), model_loader=lambda: tiny_model)
    async with running(app) as client:
        await wait_until_ready(client)
        data = unique_png()
        plain = (await client.post("/v1/analyze", **upload(data))).json()
        assert "score" in plain["timings_ms"] and "explain" not in plain["timings_ms"]

        explained = await client.post("/v1/analyze?explain=true", **upload(data))
        assert explained.status_code == 200 and explained.headers["x-cache"] == "miss"
        timings = explained.json()["timings_ms"]
        assert isinstance(timings["explain"], float) and timings["explain"] >= 0
        # The verdict's own timings stay as they were measured.
        assert {k: v for k, v in timings.items() if k != "explain"} == plain["timings_ms"]
    assert await stored_timings(database_url, plain["sha256"]) == timings
