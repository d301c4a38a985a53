"""The app's log output lives as long as its lifespan, and leaves nothing behind.

Litestar's logging setup, run whenever an app was built, started a thread that wrote the
queued records to the `sys.stderr` of that moment, replaced the root logger's handlers with
its queue, and was stopped only when the interpreter exited. In a test run that stream is a
capture pytest closes after the test: every record logged later, by any test, reached the
thread and printed "--- Logging error ---" (ValueError: I/O operation on closed file). The
app now starts its output at startup and, at shutdown, writes out what is queued, stops
the thread and takes its handler off the root logger.

(The thread is found by its target: `logging.handlers.QueueListener` has no public way to
tell whether it runs.)
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from logging.handlers import QueueListener
from pathlib import Path

import pytest
from server_helpers import StartupFailed, running

from server import log_output
from server.app import create_app
from server.settings import Settings


@pytest.fixture(autouse=True)
def to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The output as users get it (the suite turns its stderr writing off: tests/conftest.py)."""
    monkeypatch.setattr(log_output.SHARED, "to_stderr", True)


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=sqlite_url, rate_limit=None)


def log_threads() -> list[threading.Thread]:
    """The running threads of queued log output (each a QueueListener's)."""
    return [
        thread
        for thread in threading.enumerate()
        if isinstance(getattr(getattr(thread, "_target", None), "__self__", None), QueueListener)
    ]


async def test_the_log_output_runs_with_the_app_and_is_gone_after_its_shutdown(
    settings: Settings,
) -> None:
    handlers, threads = list(logging.getLogger().handlers), log_threads()
    app = create_app(settings)
    assert log_threads() == threads  # building an app starts nothing
    async with running(app):
        assert len(log_threads()) == len(threads) + 1
    assert log_threads() == threads
    assert logging.getLogger().handlers == handlers  # pytest's own handlers untouched


async def test_what_the_app_logs_is_written_out_by_the_end_of_its_shutdown(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    async with running(create_app(settings)):
        logging.getLogger("fakescope.server").info("while the app runs")
    written = stream.getvalue()
    stream.close()  # as pytest closes a test's capture
    logging.getLogger("fakescope.server").warning("after the app")  # reaches no closed stream
    assert "INFO - " in written and "fakescope.server - " in written
    assert written.rstrip().endswith("while the app runs")


async def test_an_app_whose_startup_failed_leaves_no_log_output_running(tmp_path: Path) -> None:
    threads = log_threads()
    unmigrated = Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    )
    with pytest.raises(StartupFailed, match="fakescope db upgrade"):
        async with running(create_app(unmigrated)):
            pass
    assert log_threads() == threads
