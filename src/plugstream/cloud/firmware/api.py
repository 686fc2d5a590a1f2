"""The firmware repository's routes (stub: filled by the firmware-repository work)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from plugstream.cloud.config import CloudConfig


def build_router(
    store_getter: Callable[[], Any], gateway_getter: Callable[[], Any], config: CloudConfig
) -> APIRouter | None:
    """The firmware routes (None: none yet)."""
    return None
