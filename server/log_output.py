"""The server's log output: records go on a queue, and a thread writes them to stderr.

Writing to stderr can block (a pipe read slowly, a slow terminal); the event loop only
puts a record on the queue. The output belongs to the app's lifespan: its startup installs
it on the root logger and starts the thread, its shutdown removes it, writes out what is
queued and stops the thread. (Litestar's own logging setup started a thread whenever an
app was built, never stopped it before the interpreter exited, and replaced the root
logger's handlers; a thread left writing to a stream that was closed since printed
"--- Logging error ---" in test runs, whose captured streams close after each test.)

The server's loggers (`fakescope.*`) log from INFO up; other libraries' from WARNING up,
unless the root logger was set otherwise. Apps in one process (the tests run several)
share one output, stopped when the last of them shuts down.

The test suite turns the stderr writing off (`SHARED.to_stderr = False`, tests/conftest.py):
pytest keeps every record already (its own handler on the root logger, shown with a failed
test), and what the thread wrote once a test's capture had ended landed in the run's
output between the test dots.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from logging.handlers import QueueHandler, QueueListener

FORMAT = "%(levelname)s - %(asctime)s - %(name)s - %(module)s - %(message)s"
SERVER_LOGGER = "fakescope"


class StderrHandler(logging.Handler):
    """Writes to the `sys.stderr` of the moment a record is written, not of its creation."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _SharedOutput:
    """The process's one queued output, held by each app between its startup and shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._running: tuple[QueueHandler, QueueListener] | None = None
        self._set_level = False
        self.to_stderr = True  # read when the output starts

    def hold(self) -> None:
        with self._lock:
            self._holders += 1
            if self._running is not None:
                return
            records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
            writer = StderrHandler() if self.to_stderr else logging.NullHandler()
            writer.setFormatter(logging.Formatter(FORMAT))
            listener = QueueListener(records, writer)
            listener.start()
            handler = QueueHandler(records)
            logging.getLogger().addHandler(handler)
            self._running = handler, listener
            server = logging.getLogger(SERVER_LOGGER)
            self._set_level = server.level == logging.NOTSET
            if self._set_level:
                server.setLevel(logging.INFO)

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders > 0 or self._running is None:
                return
            handler, listener = self._running
            self._running = None
            logging.getLogger().removeHandler(handler)
            if self._set_level:
                logging.getLogger(SERVER_LOGGER).setLevel(logging.NOTSET)
            listener.stop()  # writes what is queued, then ends the thread


SHARED = _SharedOutput()


class LogOutput:
    """One app's hold on the log output: `start` from its startup, `stop` from its shutdown
    (also run when a startup hook failed; a stop without a start gives nothing back)."""

    def __init__(self) -> None:
        self._holding = False

    async def start(self) -> None:
        if not self._holding:
            SHARED.hold()
            self._holding = True

    async def stop(self) -> None:
        if self._holding:
            self._holding = False
            SHARED.release()
