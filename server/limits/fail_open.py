"""A limit whose database fails lets requests through, and says so in the log.

The limits protect the service against floods and guessing; when their database fails,
refusing every request (or answering 500) would do the attacker's work for them. So the
request goes on unlimited, and the log says so: at once, then at most once a minute.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("fakescope.server")
# What a database outage raises: SQLAlchemy's errors, and the driver's own when it cannot
# connect at all (asyncpg raises OSError, such as ConnectionRefusedError, or TimeoutError).
DATABASE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, OSError, TimeoutError)
LOG_EVERY_S = 60.0


class FailOpen:
    """Counts one limit's database failures and logs them without flooding the log."""

    def __init__(self, limit: str) -> None:
        self.limit = limit
        self.failures = 0
        self._quiet_until = 0.0

    def note(self, exc: Exception) -> None:
        self.failures += 1
        now = time.monotonic()
        if now < self._quiet_until:
            return
        self._quiet_until = now + LOG_EVERY_S
        first_line = (str(exc).splitlines() or [""])[0]  # SQLAlchemy appends the whole SQL
        log.warning(
            "%s: the database failed (%s: %s); the limit is not applied (%d failures so far)",
            self.limit,
            type(exc).__name__,
            first_line,
            self.failures,
        )
