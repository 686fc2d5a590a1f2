"""Certificate management on the station (stub: filled by the certificate-management work)."""

from __future__ import annotations


class CertificateHandlers16:
    """OCPP 1.6 security extension: certificate management handlers."""


class CertificateHandlers201:
    """OCPP 2.0.1 A02/A03/M03-M05: certificate management handlers."""
