"""PostgreSQL LISTEN where there is one, plain polling elsewhere: who hears of a change.

A `Wakeups` object serves one waiting loop (a job worker's claim loop, an API process's
poller), or hands each notification's payload to a callback (a review decision made in
another process: the served-analyses cache forgets that image). On PostgreSQL a
dedicated asyncpg connection LISTENs on its channels and sets its event whenever a NOTIFY
arrives on any of them (senders NOTIFY inside their transaction, delivered on commit);
if that connection drops, it is opened again. A loop always waits with a timeout, so a
lost notification costs one polling interval, and SQLite (one machine, no NOTIFY) simply
polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import make_url

from server.background import cancel_and_wait

log = logging.getLogger("fakescope.server")
RECONNECT_S = 2.0


def asyncpg_connect_args(url: str) -> dict[str, Any]:
    """asyncpg.connect() keywords for a SQLAlchemy PostgreSQL URL."""
    parsed = make_url(url)
    args: dict[str, Any] = {
        "user": parsed.username,
        "password": parsed.password,
        "host": parsed.host,
        "port": parsed.port,
        "database": parsed.database,
    }
    return {key: value for key, value in args.items() if value is not None}


class Wakeups:
    def __init__(
        self,
        database_url: str,
        channels: Sequence[str],
        on_payload: Callable[[str], None] | None = None,
    ) -> None:
        self.channels = tuple(channels)
        self.event = asyncio.Event()
        self._on_payload = on_payload
        self._url = database_url
        self._listens = make_url(database_url).get_backend_name() == "postgresql"
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set while LISTEN is active (tests wait on it)

    async def wait(self, timeout_s: float) -> None:
        """Return when a channel was notified since the last wait, or after `timeout_s`."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the event is set, and the cancelled task then runs on.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.event.wait()
        self.event.clear()

    def poke(self) -> None:
        """Wake the loop now (for work this process itself made)."""
        self.event.set()

    def start(self) -> None:
        if self._listens and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen_forever())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _listen_forever(self) -> None:
        import asyncpg

        def heard(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            self.event.set()
            if self._on_payload is not None:
                try:
                    self._on_payload(payload)
                except Exception:  # a listener's bug must not end the listening
                    log.exception("a notification's handler failed")

        while True:
            try:
                conn = await asyncpg.connect(**asyncpg_connect_args(self._url))
            except Exception as exc:  # refused, timed out, authentication, a dying server
                log.warning("job notifications unavailable (%s); polling", exc)
                await asyncio.sleep(RECONNECT_S)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            try:
                for channel in self.channels:
                    await conn.add_listener(channel, heard)
                self.connected.set()
                self.event.set()  # anything notified while we were not listening
                await lost.wait()
                log.warning("job notification connection lost; reconnecting")
            except Exception as exc:
                # Not only OSError and PostgresError: a connection terminated while LISTEN
                # is set up raises asyncpg's InterfaceError or InternalClientError ("another
                # operation is in progress"). Whatever it was, listen again: a listener that
                # ended here would leave this process polling (and, for review decisions,
                # serving stale verdicts) until it restarts.
                log.warning("job notifications failed (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2.0)
            await asyncio.sleep(RECONNECT_S)
