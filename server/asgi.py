"""ASGI entry point for uvicorn and other servers: `uvicorn --factory server.asgi:create_app`."""

from __future__ import annotations

from litestar import Litestar

from server.app import create_app as _create_app
from server.settings import Settings


def create_app() -> Litestar:
    """The app configured from FAKESCOPE_* environment variables."""
    return _create_app(Settings.from_env())
