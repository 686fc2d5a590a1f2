"""Firmware status from stations (stub: filled by the firmware-repository work)."""

from __future__ import annotations


class FirmwareStatus16:
    """1.6 SignedFirmwareStatusNotification / FirmwareStatusNotification."""


class FirmwareStatus201:
    """2.0.1 FirmwareStatusNotification."""
