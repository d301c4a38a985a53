"""Fixtures for the server tests: the app, running in-process on the parametrised database.

The migrated databases and the settings come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from server_helpers import AppClient, running

from server.app import create_app
from server.settings import Settings


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AppClient]:
    async with running(create_app(settings)) as test_client:
        yield test_client
