"""OCPP's ``dateTime``: one way to write it and one way to read it, for both ends."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_time", "parse_time"]


def format_time(at: datetime, *, always_ms: bool = False) -> str:
    """RFC 3339 in UTC with a ``Z`` (a naive datetime is taken as UTC).

    Milliseconds only when there are any, which saves bytes on a station's metered
    link; ``always_ms`` writes them always, for a fixed width (the cloud's answers).
    """
    utc = at if at.tzinfo is UTC or at.tzinfo is None else at.astimezone(UTC)
    # sliced from isoformat (YYYY-MM-DDTHH:MM:SS[.ffffff][+00:00]): half strftime's cost,
    # and a fleet writes ten thousand time stamps a minute
    text = utc.isoformat()
    if utc.microsecond:
        return text[:23] + "Z"
    return text[:19] + (".000Z" if always_ms else "Z")


def parse_time(text: str) -> datetime:
    """An OCPP ``dateTime`` as an aware UTC datetime; raises ValueError.

    Offsets are converted (``+01:00`` → UTC); a time without an offset is read as
    UTC, which is what OCPP requires peers to send.
    """
    value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
