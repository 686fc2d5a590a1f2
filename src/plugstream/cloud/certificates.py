"""Certificate management on PlugStream Cloud: signing the stations' CSRs and renewing
their client certificates remotely (OCPP 2.0.1 part 2 A02/A03, 1.6 Security Whitepaper
A02/A03).

A station sends SignCertificate {csr}. The cloud signs it when it holds a PKI
(``config.pki_dir``, made by ``plugstream pki init``) with the CSMS root, CN kept (the
station's identity) and O set to the operator (A00.FR.509/511; the CN must be the
station id of the connection, so one station cannot get a certificate for another:
refused, logged and kept as a security event). It answers Accepted (A02.FR.11) or
Rejected (A02.FR.12) and, once the answer is sent, sends CertificateSigned with the
certificate (A02.FR.14: certificateType ChargingStationCertificate in 2.0.1).

REST (bearer-guarded, under ``/api/v1``):

- ``POST /stations/{id}/certificates/renew``: TriggerMessage(SignChargingStationCertificate)
  (2.0.1) or ExtendedTriggerMessage(SignChargePointCertificate) (1.6); 202 with the
  station's answer, 409 if it is not connected.
- ``GET /stations/{id}/certificates``: GetInstalledCertificateIds, the station's answer.
- ``GET /stations/{id}/certificates/signed``: serial and validity of the certificate the
  cloud signed last for the station.

Installing and deleting roots go through ``POST /stations/{id}/commands/{action}``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from plugstream.cloud.api import guarded_router
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.gateway import SecurityEvent, StationOffline
from plugstream.cloud.storage.security import add_security_event
from plugstream.ocpp import CallTimeout, OcppError, OcppVersion, after, on, v16, v201
from plugstream.pki.authority import PKIError
from plugstream.pki.keystore import PKIStore

if TYPE_CHECKING:
    from plugstream.cloud.gateway import Gateway
    from plugstream.cloud.storage import Store

__all__ = [
    "CertificateHandlers16",
    "CertificateHandlers201",
    "CsrRefused",
    "build_router",
    "sign_station_csr",
]

log = logging.getLogger("plugstream.cloud.certificates")

SECURITY_EVENT = "InvalidChargingStationCertificate"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class CsrRefused(ValueError):
    """A CSR the cloud does not sign; the message says why."""


def sign_station_csr(config: CloudConfig, station_id: str, csr_pem: str) -> bytes:
    """The PEM certificate for ``csr_pem`` of ``station_id``, signed by the CSMS root of
    ``config.pki_dir``; :class:`CsrRefused` if the cloud has no PKI, the CSR is invalid
    or its CN is not ``station_id`` (the gateway admits a profile-3 station by its CN,
    A00.FR.405/406)."""
    if config.pki_dir is None:
        raise CsrRefused("no PKI configured (start the cloud with --pki)")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise CsrRefused("not a PEM certificate signing request") from None
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    if cn != station_id:
        raise CsrRefused(f"CSR CN {cn!r} is not the station id {station_id!r}")
    pki = PKIStore(Path(config.pki_dir))
    try:
        authority = pki.csms_root()
        organization = config.tls_client_organization or authority.organization
        cert = authority.sign_csr(
            csr_pem.encode(), organization=organization, source=f"CSR of {station_id}"
        )
    except PKIError as exc:
        raise CsrRefused(str(exc)) from None
    pem = cert.public_bytes(serialization.Encoding.PEM)
    if _SAFE_NAME.match(station_id):  # the record of what was issued: `plugstream pki show`
        try:
            folder = Path(config.pki_dir) / "stations"
            folder.mkdir(mode=0o700, exist_ok=True)
            (folder / f"{station_id}.pem").write_bytes(pem)
        except OSError as exc:
            log.warning("station %s: signed certificate not kept: %s", station_id, exc)
    log.info(
        "station %s: certificate signed, serial %x, valid until %s",
        station_id,
        cert.serial_number,
        f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
    )
    return pem


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


# -- REST ----------------------------------------------------------------------------------

_RENEW = {
    OcppVersion.V16: ("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}),
    OcppVersion.V201: ("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}),
    OcppVersion.V21: ("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}),
}


def build_router(
    store_getter: Callable[[], Any], gateway_getter: Callable[[], Any], config: CloudConfig
) -> APIRouter | None:
    """The certificate routes of the REST API."""
    router = guarded_router(config.api_token)

    async def call(station_id: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        if await store_getter().get_station(station_id) is None:
            raise HTTPException(404, f"station {station_id!r} is not registered")
        gateway: Gateway = gateway_getter()
        try:
            result: dict[str, Any] = await gateway.call(station_id, action, payload)
        except StationOffline as exc:
            raise HTTPException(409, f"station {station_id!r} is not connected") from exc
        except CallTimeout as exc:
            raise HTTPException(504, f"station {station_id!r}: {exc.description}") from exc
        except OcppError as exc:
            raise HTTPException(
                502, f"station {station_id!r} refused {action}: {exc.description or exc.code.value}"
            ) from exc
        return result

    def version(station_id: str) -> OcppVersion:
        found: OcppVersion | None = gateway_getter().version_of(station_id)
        if found is None:
            raise HTTPException(409, f"station {station_id!r} is not connected")
        return found

    @router.post(
        "/stations/{station_id}/certificates/renew", status_code=202, tags=["certificates"]
    )
    async def renew(station_id: str) -> JSONResponse:
        """Ask the station to renew its client certificate: it makes a new key and sends a
        CSR, which the cloud signs and returns (A02). 202 with the station's answer to the
        trigger; the new certificate is in use from its next connection."""
        ocpp = version(station_id)
        action, payload = _RENEW[ocpp]
        answer = await call(station_id, action, dict(payload))
        return JSONResponse(
            status_code=202,
            content={
                "station_id": station_id,
                "ocpp_version": ocpp.value,
                "action": action,
                "requested_message": payload["requestedMessage"],
                "status": answer.get("status"),
            },
        )

    @router.get("/stations/{station_id}/certificates", tags=["certificates"])
    async def installed(
        station_id: str,
        certificate_type: Annotated[
            list[str] | None,
            Query(
                description="Types to list (2.0.1: any number, default all; 1.6: one, "
                "default CentralSystemRootCertificate)."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """GetInstalledCertificateIds: the station's answer (M03) as it sent it."""
        ocpp = version(station_id)
        payload: dict[str, Any] = {}
        if ocpp is OcppVersion.V16:
            types = certificate_type or ["CentralSystemRootCertificate"]
            if len(types) != 1:
                raise HTTPException(422, "a 1.6 charge point lists one certificate_type at a time")
            payload["certificateType"] = types[0]
        elif certificate_type:
            payload["certificateType"] = certificate_type
        return await call(station_id, "GetInstalledCertificateIds", payload)

    @router.get("/stations/{station_id}/certificates/signed", tags=["certificates"])
    async def last_signed(station_id: str) -> dict[str, Any]:
        """The certificate the cloud signed last for the station (from the PKI directory's
        ``stations/``): what to compare with what the station presents."""
        pem = _signed_file(config, station_id)
        if pem is None:
            raise HTTPException(404, f"no certificate signed for station {station_id!r}")
        cert = x509.load_pem_x509_certificate(pem)
        return {
            "station_id": station_id,
            "subject": cert.subject.rfc4514_string(),
            "serial_number": format(cert.serial_number, "x"),
            "not_valid_before": f"{cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}",
            "not_valid_after": f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
        }

    return router


def _signed_file(config: CloudConfig, station_id: str) -> bytes | None:
    if config.pki_dir is None or not _SAFE_NAME.match(station_id):
        return None
    try:
        return (Path(config.pki_dir) / "stations" / f"{station_id}.pem").read_bytes()
    except OSError:
        return None
