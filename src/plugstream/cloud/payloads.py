"""Reading fields of a station's payload that a lenient station may have sent wrong: an odd
value reads as absent (or the default) instead of failing the whole message."""

from __future__ import annotations

import re

__all__ = ["int_or", "is_printable_token", "str_or_none"]

#: control characters (C0, DEL, C1): never part of an id token (1.6 CiString and
#: 2.0.1 identifier strings are printable text); NUL is also refused by PostgreSQL
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def str_or_none(value: object) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def int_or(value: object, default: int) -> int:
    """An integer (not a bool, which JSON keeps apart), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def is_printable_token(value: str) -> bool:
    """An id token without control characters (NUL, newline, ...), which no idTag or
    idToken may carry: such a token is answered Invalid and never stored as one."""
    return _CONTROL.search(value) is None
