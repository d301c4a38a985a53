"""UTC helpers: SQLite hands datetimes back without their zone, PostgreSQL with it."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """The same instant as an aware UTC datetime (naive values are stored as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_z(value: datetime | None) -> str | None:
    """ISO-8601 with a ``Z`` suffix, or None."""
    if value is None:
        return None
    return as_utc(value).isoformat().replace("+00:00", "Z")
