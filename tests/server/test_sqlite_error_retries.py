"""Only SQLite errors that pass on their own are tried again through the retry budget.

Every SQLite `OperationalError` used to count as a dropped connection: "no such table",
"no such column" and syntax errors (bugs, or a table gone since the startup check) were
tried again for the whole budget, up to 4 s, and then answered 503 `database-unavailable`,
as if the database would come back. SQLite has no connection to drop; what passes is a
lock another connection holds ("database is locked"). That is still tried again; the rest
is raised at once (a logged 500 `internal-error` in a request). The errors are SQLite's
own, from real statements on real files.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from server_helpers import problem, run_sql, running
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.app import create_app
from server.db.database import is_transient, retry_connection_errors
from server.settings import Settings


class Clock:
    """A clock that moves only when the retry sleeps; the pauses it was asked for."""

    def __init__(self, on_sleep: Callable[[], object] = lambda: None) -> None:
        self.now = 0.0
        self.pauses: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds
        self.on_sleep()


def _engine(path: Path) -> AsyncEngine:
    """An engine on the file that does not wait for locks (SQLite's busy timeout 0)."""
    return create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0})


@pytest.fixture
def table_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    return path


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SELECT * FROM missing", "no such table"),
        ("SELECT missing FROM t", "no such column"),
        ("SELEC x FROM t", "syntax error"),
    ],
)
async def test_a_sqlite_error_that_is_a_bug_is_raised_at_once(
    table_file: Path, statement: str, message: str
) -> None:
    engine, clock, tries = _engine(table_file), Clock(), 0

    async def work() -> None:
        nonlocal tries
        tries += 1
        async with engine.connect() as conn:
            await conn.execute(text(statement))

    try:
        with pytest.raises(OperationalError, match=message):
            await retry_connection_errors(work, budget_s=4.0, clock=clock, sleep=clock.sleep)
    finally:
        await engine.dispose()
    assert (tries, clock.pauses) == (1, [])


def test_a_sqlite_file_that_cannot_be_opened_is_no_passing_outage(tmp_path: Path) -> None:
    # A missing directory or a permission: it stays until someone acts. (Opened through
    # sqlite3 itself: aiosqlite leaves the thread of a failed connect behind.)
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file") as error:
        sqlite3.connect(tmp_path / "no-such-dir" / "t.db")
    assert not is_transient(OperationalError("connect", {}, error.value))


async def test_a_locked_sqlite_database_is_tried_again_until_the_lock_is_gone(
    table_file: Path,
) -> None:
    holder = sqlite3.connect(table_file, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing
    clock = Clock(on_sleep=lambda: holder.execute("ROLLBACK") if holder.in_transaction else None)
    engine, tries = _engine(table_file), 0

    async def work() -> int:
        nonlocal tries
        tries += 1
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            return (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()

    try:
        stored = await retry_connection_errors(work, budget_s=4.0, clock=clock, sleep=clock.sleep)
    finally:
        await engine.dispose()
        holder.close()
    assert (stored, tries, len(clock.pauses)) == (1, 2, 1)


async def test_a_request_meeting_a_missing_table_on_sqlite_is_a_500_at_once_not_a_503(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = replace(
        Settings(data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None),
        require_token=True,
    )
    async with running(create_app(settings)) as client:
        await run_sql(sqlite_url, "DROP TABLE admin_sessions")  # it refers to api_tokens
        await run_sql(sqlite_url, "DROP TABLE api_tokens")
        lookups = 0

        def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            nonlocal lookups
            lookups += "FROM api_tokens" in statement

        engine = client.app.state.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            response = await client.post(
                "/v1/lookup", json={"sha256": []}, headers={"Authorization": "Bearer secret"}
            )
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 500, response.text
    assert problem(response)["type"].endswith(":internal-error")
    assert lookups == 1
