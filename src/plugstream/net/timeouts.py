"""One way to give an await a time limit, in the station's network stack."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["within"]


async def within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``await awaitable``, or TimeoutError after ``timeout`` s (None: no limit).

    Not ``asyncio.wait_for``: on Python 3.11 a cancel that arrives as the awaited answer
    does is swallowed by it (CPython gh-86296), and a station stopped mid-lookup then
    went on retrying for ever. ``asyncio.timeout`` lets the cancel through.
    """
    async with asyncio.timeout(timeout):
        return await awaitable
