"""A review decision made through one server process is served at once by the others."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from admin_helpers import Tokens, bearer, reported_image
from litestar.testing import AsyncTestClient

from server.app import create_app
from server.settings import Settings


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_decision_reaches_another_process_before_its_cache_expires(
    settings: Settings, tokens: Tokens
) -> None:
    # A served-analyses cache that would hold the old verdict for five minutes.
    long_lived = replace(settings, cache_ttl_s=300.0)
    one, other = create_app(long_lived), create_app(long_lived)
    async with (
        AsyncTestClient(app=one, timeout=60) as first,
        AsyncTestClient(app=other, timeout=60) as second,
    ):
        sha = await reported_image(first)
        assert (await first.get(f"/v1/analyses/{sha}")).json()["label"] == "uncertain"
        await asyncio.wait_for(one.state.decision_feed.connected.wait(), 10)
        decided = await second.post(
            f"/v1/admin/items/{sha}/decision",
            json={"label": "fake", "note": "seen elsewhere"},
            headers=bearer(tokens.reviewer),
        )
        assert decided.status_code == 201, decided.text
        for _ in range(100):
            served = (await first.get(f"/v1/analyses/{sha}")).json()
            if served["label"] == "fake":
                break
            await asyncio.sleep(0.05)
        assert served["label"] == "fake" and served["decided_by"] == "review"
