"""Certificate management on PlugStream Cloud (stub: filled by the certificate work)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from plugstream.cloud.config import CloudConfig


class CertificateHandlers16:
    """SignCertificate from a 1.6 charge point (security extension)."""


class CertificateHandlers201:
    """SignCertificate from a 2.0.1 charging station (A02, A03)."""


def build_router(
    store_getter: Callable[[], Any], gateway_getter: Callable[[], Any], config: CloudConfig
) -> APIRouter | None:
    """The certificate routes of the REST API (None: none yet)."""
    return None
