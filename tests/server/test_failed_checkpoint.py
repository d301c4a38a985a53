"""A checkpoint that fails to load: its cache still answers when its identity is known.

The identity (`ModelHost.expected_key`) is read from the checkpoint's files before the
weights load. The results stored under it are what this checkpoint said when it loaded
before, so cached reads serve them; new work is refused (503 `model-failed`) and the
health routes say the model failed.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from server_helpers import AppClient, problem, running, unique_png, upload, wait_until_ready

from fakescope.loading import expected_model_key
from server.analyze.service import RETRY_AFTER_MODEL_FAILED_S
from server.app import create_app
from server.inference.host import ModelState
from server.settings import Settings


@pytest.fixture
def checkpoint(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny checkpoint that this test may corrupt."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "checkpoint"))


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path, checkpoint: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        model=str(checkpoint),
        quantization="none",
        device="cpu",
        batch_wait_ms=5.0,
        max_new_tokens=8,
    )


def corrupt_weights(checkpoint: Path) -> None:
    """Overwrite the weights with garbage of the same size: the safetensors header no
    longer parses, and the checkpoint's identity (config and file sizes) is unchanged."""
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(b"\xff" * weights.stat().st_size)


async def wait_until_failed(client: AppClient) -> None:
    host = client.app.state.model_host
    await host.wait_ready(60)
    assert host.state is ModelState.FAILED, host.describe()


async def test_a_corrupt_checkpoint_serves_what_it_said_before_and_refuses_new_work(
    settings: Settings, checkpoint: Path
) -> None:
    known, unexplained = unique_png(), unique_png()
    async with running(create_app(settings)) as client:
        await wait_until_ready(client)
        analysed = await client.post("/v1/analyze?explain=true", **upload(known))
        assert analysed.status_code == 200, analysed.text
        plain = await client.post("/v1/analyze", **upload(unexplained))
        assert plain.status_code == 200 and plain.json()["explanation"] is None
        question = {"sha256": analysed.json()["sha256"], "aspect": "texture"}
        answered = await client.post("/v1/ask", json=question)
        assert answered.status_code == 200, answered.text
    stored = analysed.json()
    sha = stored["sha256"]
    identity = expected_model_key(str(checkpoint), quantization="none", device="cpu")

    corrupt_weights(checkpoint)
    assert expected_model_key(str(checkpoint), quantization="none", device="cpu") == identity

    async with running(create_app(settings)) as client:
        await wait_until_failed(client)
        assert client.app.state.model_host.expected_key == identity

        cached = await client.get(f"/v1/analyses/{sha}")
        assert cached.status_code == 200, cached.text
        assert cached.headers["x-cache"] == "hit"
        assert cached.json()["p_fake"] == stored["p_fake"]
        assert cached.json()["explanation"] == stored["explanation"]
        assert (await client.head(f"/v1/analyses/{sha}")).status_code == 200
        unknown = await client.get("/v1/analyses/" + "cd" * 32)
        assert unknown.status_code == 404
        looked_up = await client.post("/v1/lookup", json={"sha256": [sha, "cd" * 32]})
        assert looked_up.status_code == 200 and set(looked_up.json()["results"]) == {sha}
        again = await client.post("/v1/analyze?explain=true", **upload(known))
        assert again.status_code == 200 and again.headers["x-cache"] == "hit"
        assert again.json()["p_fake"] == stored["p_fake"]
        asked = await client.post("/v1/ask", json=question)
        assert asked.status_code == 200 and asked.json()["answer"] == answered.json()["answer"]

        # What the cache cannot answer needs the model: new bytes, an explanation not
        # stored yet, a new question.
        for refused in (
            await client.post("/v1/analyze", **upload(unique_png())),
            await client.post("/v1/analyze?explain=true", **upload(unexplained)),
            await client.post("/v1/ask", json={"sha256": sha, "aspect": "edge"}),
        ):
            assert refused.status_code == 503, refused.text
            assert problem(refused)["type"].endswith(":model-failed")
            assert refused.headers["retry-after"] == str(RETRY_AFTER_MODEL_FAILED_S)

        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["state"] == "failed" and ready.json()["status"] == "unready"
        assert ready.json()["error"]  # the load's exception, for the operator
        assert (await client.get("/healthz")).status_code == 200


async def test_a_checkpoint_whose_identity_cannot_be_read_refuses_cached_reads(
    settings: Settings,
) -> None:
    """Without the identity, nothing tells which stored results are this checkpoint's."""
    async with running(create_app(settings)) as client:
        await wait_until_ready(client)
        analysed = await client.post("/v1/analyze", **upload(unique_png()))
        assert analysed.status_code == 200, analysed.text
    sha = analysed.json()["sha256"]

    # An unknown quantization: reading the identity fails, then the load fails the same way.
    async with running(create_app(replace(settings, quantization="q3"))) as client:
        await wait_until_failed(client)
        assert client.app.state.model_host.expected_key is None
        for response in (
            await client.get(f"/v1/analyses/{sha}"),
            await client.head(f"/v1/analyses/{sha}"),
            await client.post("/v1/lookup", json={"sha256": [sha]}),
            await client.post("/v1/analyze", **upload(unique_png())),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == str(RETRY_AFTER_MODEL_FAILED_S)
            if response.request.method != "HEAD":
                assert problem(response)["type"].endswith(":model-failed")
