"""The V2G certificates the cloud issued, and their revocation (bearer-guarded, under
``/api/v1``); the OCSP responder (:mod:`.ocsp`) answers from the same rows.

- ``GET /certificates/issued``: what the V2G PKI issued (filter by station, revoked);
- ``GET /certificates/issued/{serial}``: one, by hex serial;
- ``POST /certificates/issued/{serial}/revoke``: revoke it (OCSP answers revoked from
  then on); the V2G sub-CA itself may be revoked too;
- ``GET /certificates/v2g-root``: the V2G root, PEM: what stations install as
  V2GRootCertificate (InstallCertificate, M05);
- ``POST /stations/{id}/certificates/renew-v2g``: TriggerMessage(SignV2GCertificate)
  (A02, TC_A_12_CSMS): the station sends a V2G CSR, which the V2G sub-CA signs; 409 if
  it is not connected.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import ConfigDep, StoreDep, UtcDateTime, guarded_router, responses
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.station_calls import CALL_RESPONSES, call_station, connected_station
from plugstream.cloud.certificates.v2g import issued_record, v2g_authority
from plugstream.cloud.storage.certificate_status import IssuedCertificate

__all__ = ["router"]

SERIAL = re.compile(r"^[0-9A-Fa-f]{1,40}$")
#: RFC 5280 CRLReason names, as cryptography's ReasonFlags spells them
Reason = Literal[
    "unspecified",
    "key_compromise",
    "ca_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
    "certificate_hold",
    "privilege_withdrawn",
    "aa_compromise",
]


class IssuedOut(BaseModel):
    serial_number: str = Field(description="Hex, no leading zeroes.")
    issuer_key_id: str = Field(description="SHA-256 of the issuer's public key, hex.")
    certificate_type: str = Field(description="V2GCertificate, V2GSubCA.")
    subject: str
    station_id: str | None
    issued_at: UtcDateTime
    not_valid_after: UtcDateTime
    revoked_at: UtcDateTime | None
    revocation_reason: str | None


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = "unspecified"


def _out(r: IssuedCertificate) -> IssuedOut:
    return IssuedOut.model_validate(r, from_attributes=True)


def _serial(serial: str) -> str:
    if not SERIAL.match(serial):
        raise HTTPException(422, f"serial {serial!r} is not 1-40 hex digits")
    return format(int(serial, 16), "x")


router = guarded_router(tags=["certificates"])


@router.get("/certificates/issued", response_model=list[IssuedOut])
async def list_issued(
    store: StoreDep,
    station_id: str | None = None,
    revoked: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[IssuedOut]:
    """The V2G certificates the cloud issued, newest first."""
    found = await store.certificate_status.listing(
        station_id=station_id, revoked=revoked, limit=limit
    )
    return [_out(r) for r in found]


@router.get(
    "/certificates/issued/{serial}", response_model=IssuedOut, responses=responses(404, 422)
)
async def get_issued(serial: str, store: StoreDep) -> IssuedOut:
    found = await store.certificate_status.find(_serial(serial))
    if not found:
        raise HTTPException(404, f"the cloud issued no certificate with serial {serial!r}")
    return _out(found[0])


@router.post(
    "/certificates/issued/{serial}/revoke",
    response_model=IssuedOut,
    responses=responses(404, 422),
)
async def revoke(
    serial: str, body: RevokeIn, store: StoreDep, config: ConfigDep, gateway: GatewayDep
) -> IssuedOut:
    """Revoke a V2G certificate (or the V2G sub-CA): the cloud's OCSP responder answers
    ``revoked`` for it from now on. Revoking again keeps the first time and reason."""
    hex_serial = _serial(serial)
    now = gateway.clock()
    found = await store.certificate_status.find(hex_serial)
    if not found:
        authority = v2g_authority(config)
        sub_ca = authority.sub_ca.certificate if authority is not None else None
        if sub_ca is None or format(sub_ca.serial_number, "x") != hex_serial:
            raise HTTPException(404, f"the cloud issued no certificate with serial {serial!r}")
        assert authority is not None
        record = issued_record(sub_ca, authority.root.certificate, "V2GSubCA", None, now)
        await store.certificate_status.record_issued(record)
        found = [record]
    revoked = await store.certificate_status.revoke(
        found[0].issuer_key_id, hex_serial, now, body.reason
    )
    if revoked is None:  # pragma: no cover - found a moment ago, rows are never deleted
        raise HTTPException(404, f"the cloud issued no certificate with serial {serial!r}")
    return _out(revoked)


@router.get(
    "/certificates/v2g-root",
    response_class=PlainTextResponse,
    responses={200: {"content": {"application/x-pem-file": {}}}, **responses(404)},
)
async def v2g_root(config: ConfigDep) -> PlainTextResponse:
    """The V2G root certificate, PEM (for InstallCertificate V2GRootCertificate)."""
    authority = v2g_authority(config)
    if authority is None:
        raise HTTPException(404, "no V2G PKI configured (plugstream pki init-v2g)")
    return PlainTextResponse(authority.root.cert_pem.decode(), media_type="application/x-pem-file")


@router.post(
    "/stations/{station_id}/certificates/renew-v2g",
    status_code=202,
    responses=CALL_RESPONSES,
)
async def renew_v2g(station_id: str, store: StoreDep, gateway: GatewayDep) -> JSONResponse:
    """Ask a 2.0.1 station for a new V2G (SECC) certificate: TriggerMessage
    SignV2GCertificate; 202 with its answer. Its CSR is signed by the V2G sub-CA."""
    await connected_station(
        store, gateway, station_id, why="no V2G certificates", wrong_version=422
    )
    payload = {"requestedMessage": "SignV2GCertificate"}
    answer = await call_station(gateway, station_id, "TriggerMessage", payload)
    return JSONResponse(
        status_code=202,
        content={
            "station_id": station_id,
            "requested_message": "SignV2GCertificate",
            "status": answer.get("status"),
        },
    )
