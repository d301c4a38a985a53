"""Failed admin logins made through one API process count on every other one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from admin_helpers import Tokens, bearer, problem
from litestar.testing import AsyncTestClient

from server.app import create_app
from server.settings import Settings


def _api(settings: Settings, tmp_path: Path, name: str, limits: str) -> AsyncTestClient:
    api = replace(settings, role="api", limits_store=limits, data_dir=tmp_path / name)
    return AsyncTestClient(app=create_app(api), timeout=60)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_wrong_tokens_sent_to_one_process_block_the_address_on_another(
    settings: Settings, tokens: Tokens, tmp_path: Path
) -> None:
    async with (
        _api(settings, tmp_path, "a", "database") as first,
        _api(settings, tmp_path, "b", "database") as second,
    ):
        for i in range(10):  # the limit, split across both processes
            guess = await (first, second)[i % 2].get("/v1/admin/queue", headers=bearer("fs_x"))
            problem(guess, 401)
        for client in (first, second):
            limited = await client.get("/v1/admin/queue", headers=bearer(tokens.admin))
            problem(limited, 429)  # even a good token, on either process
            assert 1 <= int(limited.headers["retry-after"]) <= 60


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_with_limits_in_memory_each_process_counts_only_its_own_failures(
    settings: Settings, tokens: Tokens, tmp_path: Path
) -> None:
    async with (
        _api(settings, tmp_path, "a", "memory") as first,
        _api(settings, tmp_path, "b", "memory") as second,
    ):
        for i in range(10):
            guess = await (first, second)[i % 2].get("/v1/admin/queue", headers=bearer("fs_x"))
            problem(guess, 401)
        for client in (first, second):  # five failures each: below the limit of ten
            allowed = await client.get("/v1/admin/queue", headers=bearer(tokens.admin))
            assert allowed.status_code == 200, allowed.text
