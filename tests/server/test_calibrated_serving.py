"""FAKESCOPE_CALIBRATION: the server's p_fake is calibrated, under a cache identity of its own."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from server_helpers import running, unique_png, upload, wait_until_ready

from fakescope.calibration import Calibration
from fakescope.loading import expected_model_key
from server.app import create_app
from server.inference.host import ModelState
from server.settings import Settings, SettingsError


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path, tiny_model_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        rate_limit=None,
        model=str(tiny_model_dir),
        quantization="none",
        device="cpu",
        batch_wait_ms=5.0,
        max_new_tokens=8,
    )


def _calibration(tmp_path: Path, key: str) -> Calibration:
    path = Calibration(-2.0, 0.5, key).save(tmp_path / "calibration.json")
    return Calibration.load(path)


async def test_a_calibrated_server_keys_its_cache_apart_and_serves_calibrated_p_fake(
    settings: Settings, tmp_path: Path
) -> None:
    image = unique_png()
    async with running(create_app(settings)) as client:
        await wait_until_ready(client)
        raw = (await client.post("/v1/analyze", **upload(image))).json()
        raw_key = client.app.state.model_host.identity.model_key
    assert raw["model"]["calibration"] is None

    calibration = _calibration(tmp_path, raw_key)
    calibrated_settings = replace(settings, calibration=calibration.source)
    async with running(create_app(calibrated_settings)) as client:
        host = client.app.state.model_host
        await wait_until_ready(client)
        assert host.identity.model_key == f"{raw_key}+cal-{calibration.digest}"
        response = await client.post("/v1/analyze", **upload(image))
        body = response.json()
        # The raw analysis of these bytes is cached, but not under this identity.
        assert response.headers["x-cache"] == "miss"
        margin = math.log(raw["p_fake"] / (1 - raw["p_fake"]))
        expected = 1 / (1 + math.exp(-(-2.0 * margin + 0.5)))
        assert body["p_fake"] == pytest.approx(expected, abs=1e-4)
        assert body["model"]["calibration"] == {
            "a": -2.0,
            "b": 0.5,
            "digest": calibration.digest,
            "method": "platt",
        }
        cached = await client.get(f"/v1/analyses/{body['sha256']}")
        assert cached.headers["x-cache"] == "hit" and cached.json()["p_fake"] == body["p_fake"]
        ready = (await client.get("/readyz")).json()
        assert ready["model"]["calibration"]["digest"] == calibration.digest
    assert (
        expected_model_key(
            settings.model or "", quantization="none", device="cpu", calibration=calibration
        )
        == f"{raw_key}+cal-{calibration.digest}"
    )


async def test_a_calibration_of_another_model_fails_the_load_naming_both_keys(
    settings: Settings, tmp_path: Path
) -> None:
    calibration = _calibration(tmp_path, "another@-:nf4")
    async with running(create_app(replace(settings, calibration=calibration.source))) as client:
        host = client.app.state.model_host
        await host.wait_ready(60)
        assert host.state is ModelState.FAILED
        assert "fitted for the model another@-:nf4, not " in (host.error or "")
        assert str(settings.model) in (host.error or "")


def test_a_file_that_is_no_calibration_is_refused_at_startup(tmp_path: Path) -> None:
    bad = tmp_path / "cal.json"
    bad.write_text("{}")
    with pytest.raises(SettingsError, match=r"^FAKESCOPE_CALIBRATION: .*not a calibration file"):
        Settings.from_env({"FAKESCOPE_DATA_DIR": str(tmp_path), "FAKESCOPE_CALIBRATION": str(bad)})
    good = Calibration(1.0, 0.0, "m@-:none").save(tmp_path / "good.json")
    settings = Settings.from_env(
        {"FAKESCOPE_DATA_DIR": str(tmp_path), "FAKESCOPE_CALIBRATION": str(good)}
    )
    assert settings.calibration == str(good)
