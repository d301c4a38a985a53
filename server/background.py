"""Stopping the server's background asyncio tasks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel each task and wait until it has ended (its cancellation is not re-raised)."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    for task in live:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle(tasks: list[asyncio.Task[Any]], timeout_s: float) -> None:
    """Let work already started end on its own (its errors are its own), within
    `timeout_s`; cancel what is still running then and wait for it."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    await cancel_and_wait(*pending)
