"""The OCPP side of certificate management: a station's SignCertificate is signed
(A02.FR.11 Accepted / A02.FR.12 Rejected) and, once the answer is sent, the certificate is
sent back with CertificateSigned (A02.FR.14: certificateType ChargingStationCertificate
in 2.0.1). A CSR for another station's identity is refused, logged and kept as a security
event. A 2.0.1 V2GCertificate CSR is signed by the V2G sub-CA (:mod:`.v2g`) and sent back
as a V2GCertificate with its sub-CA (TC_A_12_CSMS).
"""

from __future__ import annotations

import logging
from typing import Any

from plugstream.cloud.certificates.signing import CsrRefused, sign_station_csr
from plugstream.cloud.certificates.v2g import V2G_CERTIFICATE, sign_v2g_csr
from plugstream.cloud.context import SecurityEvent
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.cloud.stations import StationOffline
from plugstream.ocpp import OcppError, after, on, v16, v201

__all__ = ["SECURITY_EVENT", "CertificateHandlers16", "CertificateHandlers201"]

log = logging.getLogger("plugstream.cloud.certificates")

SECURITY_EVENT = "InvalidChargingStationCertificate"


class _SignCertificate(StationHandlers):
    """What both versions share."""

    _signed: bytes | None = None  # the certificate for the CSR just answered

    async def _sign(self, csr: str) -> str:
        """Sign now (fast), send later: the status of the SignCertificateResponse."""
        self._signed = None
        try:
            self._signed = sign_station_csr(self.context.config, self.station_id, csr)
        except CsrRefused as exc:
            log.warning("station %s: SignCertificate rejected: %s", self.station_id, exc)
            if "CN" in str(exc):  # a station asking for another's identity
                await self._security_event(str(exc))
            return "Rejected"
        return "Accepted"

    async def _security_event(self, tech_info: str) -> None:
        now = self.now()
        await self.context.store.security.add_event(
            self.station_id, SECURITY_EVENT, now, tech_info, "gateway"
        )
        self.context.events.security_event(
            SecurityEvent(now, self.station_id, SECURITY_EVENT, tech_info)
        )

    async def _send_signed(self, extra: dict[str, Any]) -> None:
        pem, self._signed = self._signed, None
        if pem is None:
            return
        payload = {"certificateChain": pem.decode(), **extra}
        try:
            answer = await self.context.commands.call(self.station_id, "CertificateSigned", payload)
        except (OcppError, StationOffline) as exc:
            log.warning("station %s: CertificateSigned not delivered: %s", self.station_id, exc)
            return
        status = answer.get("status")
        if status == "Accepted":
            log.info("station %s: new certificate installed", self.station_id)
        else:
            log.warning("station %s: CertificateSigned %s", self.station_id, status)


class CertificateHandlers16(_SignCertificate):
    """SignCertificate from a 1.6 charge point (security extension)."""

    @on(v16.Action.SignCertificate)
    async def sign_certificate(
        self, payload: v16.SignCertificateRequest
    ) -> v16.SignCertificateResponse:
        return {
            "status": "Accepted" if await self._sign(payload["csr"]) == "Accepted" else "Rejected"
        }

    @after(v16.Action.SignCertificate)
    async def sign_certificate_done(self, payload: v16.SignCertificateRequest) -> None:
        await self._send_signed({})


class CertificateHandlers201(_SignCertificate):
    """SignCertificate from a 2.0.1 charging station (A02, A03), of either type."""

    _signed_type = "ChargingStationCertificate"

    @on(v201.Action.SignCertificate)
    async def sign_certificate(self, payload: v201.SignCertificateRequest) -> dict[str, Any]:
        kind = payload.get("certificateType", "ChargingStationCertificate")
        self._signed_type = kind
        if kind == V2G_CERTIFICATE:
            return await self._sign_v2g(payload["csr"])
        return {"status": await self._sign(payload["csr"])}

    async def _sign_v2g(self, csr: str) -> dict[str, Any]:
        """A02.FR.11: signed by the V2G sub-CA and recorded (for OCSP) before the answer."""
        self._signed = None
        try:
            self._signed = await sign_v2g_csr(
                self.context.store, self.context.config, self.station_id, csr, self.now()
            )
        except CsrRefused as exc:
            log.warning("station %s: V2G SignCertificate rejected: %s", self.station_id, exc)
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "InvalidCSR", "additionalInfo": str(exc)[:512]},
            }
        return {"status": "Accepted"}

    @after(v201.Action.SignCertificate)
    async def sign_certificate_done(self, payload: v201.SignCertificateRequest) -> None:
        await self._send_signed({"certificateType": self._signed_type})
