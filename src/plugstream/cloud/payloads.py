"""Reading fields of a station's payload that a lenient station may have sent wrong: an odd
value reads as absent (or the default) instead of failing the whole message."""

from __future__ import annotations

__all__ = ["int_or", "str_or_none"]


def str_or_none(value: object) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def int_or(value: object, default: int) -> int:
    """An integer (not a bool, which JSON keeps apart), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default
