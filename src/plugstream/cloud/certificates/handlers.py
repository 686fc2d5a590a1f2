"""The OCPP side of certificate management: a station's SignCertificate is signed
(A02.FR.11 Accepted / A02.FR.12 Rejected) and, once the answer is sent, the certificate is
sent back with CertificateSigned (A02.FR.14: certificateType ChargingStationCertificate
in 2.0.1). A CSR for another station's identity is refused, logged and kept as a security
event.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plugstream.cloud.certificates.signing import CsrRefused, sign_station_csr
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.gateway import SecurityEvent, StationOffline
from plugstream.cloud.storage.security import add_security_event
from plugstream.ocpp import OcppError, after, on, v16, v201

if TYPE_CHECKING:
    from plugstream.cloud.gateway import Gateway
    from plugstream.cloud.storage import Store

__all__ = ["SECURITY_EVENT", "CertificateHandlers16", "CertificateHandlers201"]

log = logging.getLogger("plugstream.cloud.certificates")

SECURITY_EVENT = "InvalidChargingStationCertificate"


class _SignCertificate:
    """What both versions share; the attributes come from StationHandlers."""

    station_id: str
    store: Store
    config: CloudConfig
    gateway: Gateway | None
    _signed: bytes | None = None  # the certificate for the CSR just answered

    if TYPE_CHECKING:  # StationHandlers.now; not defined here, which would shadow it

        def now(self) -> datetime: ...

    async def _sign(self, csr: str) -> str:
        """Sign now (fast), send later: the status of the SignCertificateResponse."""
        self._signed = None
        try:
            self._signed = sign_station_csr(self.config, self.station_id, csr)
        except CsrRefused as exc:
            log.warning("station %s: SignCertificate rejected: %s", self.station_id, exc)
            if "CN" in str(exc):  # a station asking for another's identity
                await self._security_event(str(exc))
            return "Rejected"
        return "Accepted"

    async def _security_event(self, tech_info: str) -> None:
        now = self.now()
        await add_security_event(
            self.store, self.station_id, SECURITY_EVENT, now, tech_info, "gateway"
        )
        if self.gateway is not None:
            self.gateway.security_events.append(
                SecurityEvent(now, self.station_id, SECURITY_EVENT, tech_info)
            )

    async def _send_signed(self, extra: dict[str, Any]) -> None:
        pem, self._signed = self._signed, None
        if pem is None or self.gateway is None:
            return
        payload = {"certificateChain": pem.decode(), **extra}
        try:
            answer = await self.gateway.call(self.station_id, "CertificateSigned", payload)
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
    """SignCertificate from a 2.0.1 charging station (A02, A03)."""

    @on(v201.Action.SignCertificate)
    async def sign_certificate(self, payload: v201.SignCertificateRequest) -> dict[str, Any]:
        kind = payload.get("certificateType", "ChargingStationCertificate")
        if kind != "ChargingStationCertificate":  # V2G certificates: not this CA's
            log.warning("station %s: SignCertificate for %s rejected", self.station_id, kind)
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnsupportedCertType"}}
        return {"status": await self._sign(payload["csr"])}

    @after(v201.Action.SignCertificate)
    async def sign_certificate_done(self, payload: v201.SignCertificateRequest) -> None:
        await self._send_signed({"certificateType": "ChargingStationCertificate"})
