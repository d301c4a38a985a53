"""Time in UTC: the current moment, and timestamps as the API writes them (ISO-8601, Z).

SQLite hands datetimes back without their zone, PostgreSQL with it; every stored time is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """The same instant as an aware UTC datetime (naive values are stored as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_z(moment: datetime | None) -> str | None:
    """ISO-8601 with a ``Z`` suffix, or None."""
    if moment is None:
        return None
    return as_utc(moment).isoformat().replace("+00:00", "Z")
