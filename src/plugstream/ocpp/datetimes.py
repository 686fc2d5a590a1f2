"""OCPP's ``dateTime``: one way to write it and one way to read it, for both ends."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_time", "format_whole_seconds", "parse_time"]


def format_time(at: datetime, *, always_ms: bool = False) -> str:
    """RFC 3339 in UTC with a ``Z`` (a naive datetime is taken as UTC).

    Milliseconds only when there are any, which saves bytes on a station's metered
    link; ``always_ms`` writes them always, for a fixed width (the cloud's answers).
    """
    utc = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if utc.microsecond or always_ms:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_whole_seconds(at: datetime) -> str:
    """:func:`format_time` of ``at`` truncated to the second: what a station writes in the
    messages it sends. OCPP 2.0.1 (part 2, 2.1.x dateTime) RECOMMENDS omitting fractional
    seconds, "because it is of limited use and omitting it reduces data usages"; 1.6
    (3.15) lets senders omit insignificant fractions. On a metered uplink a minute's
    sample then repeats most of the previous one's timestamp, which permessage-deflate
    turns into a back-reference. Truncated, not rounded: times never move forward, so
    the order of a station's own messages is kept."""
    return format_time(at.replace(microsecond=0))


def parse_time(text: str) -> datetime:
    """An OCPP ``dateTime`` as an aware UTC datetime; raises ValueError.

    Offsets are converted (``+01:00`` → UTC); a time without an offset is read as
    UTC, which is what OCPP requires peers to send.
    """
    value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
