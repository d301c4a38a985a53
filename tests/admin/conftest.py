"""Fixtures for the review tests: the running app, tokens, flagged images.

The migrated databases and the settings come from tests/conftest.py; the helpers the
tests import live in admin_helpers.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from admin_helpers import Tokens, make_tokens
from litestar import Litestar
from litestar.testing import AsyncTestClient

from server.app import create_app
from server.settings import Settings


@pytest.fixture
def sqlite_only(sqlite_url: str) -> str:
    """For tests whose subject does not depend on the database engine."""
    return sqlite_url


@pytest.fixture
def tokens(settings: Settings) -> Tokens:
    return asyncio.run(make_tokens(settings.database_url))


@pytest.fixture
async def client(settings: Settings, tokens: Tokens) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings), timeout=60) as test_client:
        yield test_client
