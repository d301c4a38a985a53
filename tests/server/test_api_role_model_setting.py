"""An `api` process ignores FAKESCOPE_MODEL (the workers' model decides), and says so.

It serves by the model of the newest live GPU worker. A FAKESCOPE_MODEL set on it anyway
is logged as ignored at startup, and a worker model that differs from it is named once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from server_helpers import running, until

from server.app import create_app
from server.settings import Settings

IGNORED = "is ignored: an api process (FAKESCOPE_ROLE=api) runs no model"
DIFFERS = "GPU workers serve the model"


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.said.append(record.getMessage())

    def saying(self, words: str) -> list[str]:
        return [message for message in self.said if words in message]


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    logger = logging.getLogger("fakescope.server")
    handler = Warnings()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def _api_beside_a_worker(
    settings: Settings, tmp_path: Path, tiny_model: Any, model: str | None
) -> None:
    """Start a worker of the tiny model and an API process configured with `model`; return
    once the API process has read the workers three times since it saw the worker."""
    worker = create_app(replace(settings, role="worker"), model_loader=lambda: tiny_model)
    api_settings = replace(settings, role="api", model=model, data_dir=tmp_path / "api")
    async with running(worker), running(create_app(api_settings)) as api:
        host = api.app.state.model_host
        await until(lambda: host.has_workers)
        for _ in range(2):
            await host.refresh()


async def test_an_api_process_says_it_ignores_fakescope_model_and_names_the_workers_model(
    settings: Settings, tmp_path: Path, tiny_model: Any, warnings: Warnings
) -> None:
    await _api_beside_a_worker(settings, tmp_path, tiny_model, "lingcco/fakeVLM")
    [ignored] = warnings.saying(IGNORED)
    assert ignored.startswith("FAKESCOPE_MODEL=lingcco/fakeVLM is ignored")
    [differs] = warnings.saying(DIFFERS)  # once, though the workers were read three times
    assert tiny_model.info.id in differs and "FAKESCOPE_MODEL=lingcco/fakeVLM" in differs


async def test_an_api_process_whose_fakescope_model_matches_the_workers_only_says_it_is_ignored(
    settings: Settings, tmp_path: Path, tiny_model: Any, warnings: Warnings
) -> None:
    await _api_beside_a_worker(settings, tmp_path, tiny_model, tiny_model.info.id)
    assert len(warnings.saying(IGNORED)) == 1
    assert warnings.saying(DIFFERS) == []


async def test_an_api_process_without_fakescope_model_says_nothing_of_it(
    settings: Settings, tmp_path: Path, tiny_model: Any, warnings: Warnings
) -> None:
    await _api_beside_a_worker(settings, tmp_path, tiny_model, None)
    assert warnings.saying("FAKESCOPE_MODEL") == []
