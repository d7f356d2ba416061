"""UTC timestamps in the wire format: ISO 8601 with a ``Z`` suffix."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as ``2024-05-01T12:00:00.123Z``."""
    utc = moment.astimezone(timezone.utc)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_timestamp() -> str:
    return format_timestamp(utc_now())


def timestamp_after(moment: datetime, delta: timedelta) -> str:
    return format_timestamp(moment + delta)
