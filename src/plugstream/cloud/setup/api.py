"""The setup service's routes (stub: filled by the setup-service work)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from plugstream.cloud.config import CloudConfig


def build_router(
    store_getter: Callable[[], Any], gateway_getter: Callable[[], Any], config: CloudConfig
) -> APIRouter | None:
    """The setup and claim routes (None: none yet)."""
    return None
