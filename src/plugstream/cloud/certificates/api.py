"""The certificate routes of the REST API (bearer-guarded, under ``/api/v1``):

- ``POST /stations/{id}/certificates/renew``: TriggerMessage(SignChargingStationCertificate)
  (2.0.1) or ExtendedTriggerMessage(SignChargePointCertificate) (1.6); 202 with the
  station's answer, 409 if it is not connected.
- ``GET /stations/{id}/certificates``: GetInstalledCertificateIds, the station's answer.
- ``GET /stations/{id}/certificates/signed``: serial and validity of the certificate the
  cloud signed last for the station.

Installing and deleting roots go through ``POST /stations/{id}/commands/{action}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from cryptography import x509
from fastapi import HTTPException, Query
from fastapi.responses import JSONResponse

from plugstream.cloud.api.common import ConfigDep, StoreDep, guarded_router
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.station_calls import call_station
from plugstream.cloud.api.stations import station_or_404
from plugstream.cloud.certificates.signing import signed_file
from plugstream.ocpp import OcppVersion

if TYPE_CHECKING:
    from plugstream.cloud.gateway import Gateway
    from plugstream.cloud.storage import Store

__all__ = ["router"]


_RENEW = {
    OcppVersion.V16: ("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}),
    OcppVersion.V201: ("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}),
    OcppVersion.V21: ("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}),
}


async def _call(
    store: Store, gateway: Gateway, station_id: str, action: str, payload: dict[str, Any]
) -> dict[str, Any]:
    await station_or_404(store, station_id)
    return await call_station(gateway, station_id, action, payload)


def _version(gateway: Gateway, station_id: str) -> OcppVersion:
    found = gateway.version_of(station_id)
    if found is None:
        raise HTTPException(409, f"station {station_id!r} is not connected")
    return found


router = guarded_router(tags=["certificates"])


@router.post("/stations/{station_id}/certificates/renew", status_code=202)
async def renew(station_id: str, store: StoreDep, gateway: GatewayDep) -> JSONResponse:
    """Ask the station to renew its client certificate: it makes a new key and sends a
    CSR, which the cloud signs and returns (A02). 202 with the station's answer to the
    trigger; the new certificate is in use from its next connection."""
    ocpp = _version(gateway, station_id)
    action, payload = _RENEW[ocpp]
    answer = await _call(store, gateway, station_id, action, dict(payload))
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


@router.get("/stations/{station_id}/certificates")
async def installed(
    station_id: str,
    store: StoreDep,
    gateway: GatewayDep,
    certificate_type: Annotated[
        list[str] | None,
        Query(
            description="Types to list (2.0.1: any number, default all; 1.6: one, "
            "default CentralSystemRootCertificate)."
        ),
    ] = None,
) -> dict[str, Any]:
    """GetInstalledCertificateIds: the station's answer (M03) as it sent it."""
    ocpp = _version(gateway, station_id)
    payload: dict[str, Any] = {}
    if ocpp is OcppVersion.V16:
        types = certificate_type or ["CentralSystemRootCertificate"]
        if len(types) != 1:
            raise HTTPException(422, "a 1.6 charge point lists one certificate_type at a time")
        payload["certificateType"] = types[0]
    elif certificate_type:
        payload["certificateType"] = certificate_type
    return await _call(store, gateway, station_id, "GetInstalledCertificateIds", payload)


@router.get("/stations/{station_id}/certificates/signed")
async def last_signed(station_id: str, config: ConfigDep) -> dict[str, Any]:
    """The certificate the cloud signed last for the station (from the PKI directory's
    ``stations/``): what to compare with what the station presents."""
    pem = signed_file(config, station_id)
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
