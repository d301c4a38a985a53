"""Stopping background work at shutdown: work in flight may finish, hung work is cancelled."""

from __future__ import annotations

import asyncio

from server.background import settle


async def test_settle_lets_work_in_flight_finish_and_cancels_what_hangs() -> None:
    stored: list[str] = []

    async def store_soon() -> None:
        await asyncio.sleep(0.05)
        stored.append("answer")

    async def fail_soon() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("the queue stopped")

    finishing = asyncio.create_task(store_soon())
    failing = asyncio.create_task(fail_soon())
    hung = asyncio.create_task(asyncio.sleep(3600))
    await settle([finishing, failing, hung], timeout_s=0.5)
    assert stored == ["answer"]  # finished on its own, not cancelled
    assert isinstance(failing.exception(), RuntimeError)  # its error stays its own
    assert hung.cancelled()


async def test_settle_with_nothing_in_flight_returns_at_once() -> None:
    await asyncio.wait_for(settle([], timeout_s=60), timeout=1)
