"""How long the server's database work goes on through an outage, and whose budget is whose.

A terminated backend, a failover or a restarting PostgreSQL drops the pool's connections
and may refuse new ones for a second or more. Three tries within about 0.6 s were not
enough: with backends terminated 0.7 s apart, 4 of 40 requests got 503
`database-unavailable`; a shared read of cached analyses that was not tried again failed
every request of its batch. Work safe to repeat is now tried again on fresh connections,
with doubling, jittered pauses (`retry_connection_errors` in `server/db/database.py`), for
a budget of seconds:

- a request's (queueing a job, waiting for its outcome, reading and storing analyses):
  `RETRY_BUDGET_S`, at most half the request's own time (the rest is for its work);
- a GPU worker's writes (finishing or giving back a job, renewing its leases): as long,
  at most a sixth of a job's lease, so that a finished job is not run again because its
  `finish` met a few seconds of outage.
"""

from __future__ import annotations

from server.db.database import RETRY_BUDGET_S, Backoff, retry_connection_errors

__all__ = [
    "RETRY_BUDGET_S",
    "Backoff",
    "request_budget_s",
    "retry_connection_errors",
    "worker_budget_s",
]


def request_budget_s(request_timeout_s: float) -> float:
    """How long a request's database work goes on through an outage."""
    return min(RETRY_BUDGET_S, request_timeout_s / 2)


def worker_budget_s(lease_s: float) -> float:
    """How long a worker's writes go on through an outage.

    Leases are renewed every third of one: a renewal round that fails throughout and the
    next, trying as long, both end before the lease lapses when each tries for less than a
    sixth of it.
    """
    return min(RETRY_BUDGET_S, lease_s / 6)
