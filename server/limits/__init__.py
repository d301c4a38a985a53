"""Limits on clients: the request rate limit and the failed-login limit of the admin routes.

One all-in-one process (FAKESCOPE_ROLE=all) counts both in memory. API processes on
several machines (FAKESCOPE_LIMITS_STORE=database, the default for the api and worker
roles) count them in SQL, so that together they allow the configured rate, not N times it:
the rate limit in ``limiter_entries`` (``store.py``, ``rate_limit.py``), failed logins in
``auth_failures`` (``failed_auth.py``). Windows there end at stored UTC times, so the
machines' clocks must agree, as for the job queue's leases. A database error in a limit's
path lets the request through and is logged (``fail_open.py``).
"""

from server.limits.failed_auth import (
    DatabaseFailedAuthLimiter,
    FailedAuthLimiter,
    MemoryFailedAuthLimiter,
    failed_auth_limiter_for,
)
from server.limits.rate_limit import SharedRateLimitMiddleware
from server.limits.store import DatabaseStore, Hit

__all__ = [
    "DatabaseFailedAuthLimiter",
    "DatabaseStore",
    "FailedAuthLimiter",
    "Hit",
    "MemoryFailedAuthLimiter",
    "SharedRateLimitMiddleware",
    "failed_auth_limiter_for",
]
