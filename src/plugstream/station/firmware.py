"""Signed firmware updates on the station (stub: filled by the firmware work)."""

from __future__ import annotations


class FirmwareHandlers16:
    """OCPP 1.6 security extension: SignedUpdateFirmware."""


class FirmwareHandlers201:
    """OCPP 2.0.1 L01: UpdateFirmware."""
