"""The setup service (the article's ``setup.plugstream.co.uk``) and the owners' claims.

- ``POST /setup/v1/provision``: a new station's setup call over mutual TLS. The station
  is who its manufacturer certificate says (issued by the manufacturer root, CN = its
  serial number); until an owner has claimed that serial it is told so (404, with
  ``Retry-After``) and calls again later. Once claimed, it gets where to go: the CSMS URL,
  the OCPP version, the security profile and the credentials for it -- a fresh Basic-auth
  password (profile 2, 1.6 security whitepaper AuthorizationKey / 2.0.1
  BasicAuthPassword, 16-40 characters) or a ChargingStationCertificate signed by the CSMS
  root from the station's own CSR (profile 3, 2.0.1 A00.FR.509/511: CN = serial number,
  O = the operator), with the CSMS root to trust. When the CSMS is PlugStream Cloud the
  station is registered with those credentials before the answer goes out.
This is the 1.6 security whitepaper's §2.6.4 (installation): the factory credentials
(A00.FR.801/804, the manufacturer's certificate) are replaced by the CPO's right after
installation (A00.FR.805), and the station's new key never leaves it (A02.FR.05).

- ``GET /setup/v1/health``: the service is up (and its database answers).
- ``/api/v1/claims``: the owners' claims (bearer-guarded, like the rest of the REST API).
"""

from __future__ import annotations

import logging
import secrets
import string
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Body, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import ConfigDep, StoreDep, guarded_router
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.stations import valid_station_id
from plugstream.cloud.storage.setup import ClaimRecord
from plugstream.pki.authority import PKIError
from plugstream.pki.keystore import PKIStore

if TYPE_CHECKING:
    pass

__all__ = [
    "PASSWORD_LENGTH",
    "RETRY_AFTER_S",
    "SETUP_PREFIX",
    "claims",
    "ocpp_url",
    "router",
]

log = logging.getLogger("plugstream.cloud.setup")

SETUP_PREFIX = "/setup/v1"
RETRY_AFTER_S = 300  # what an unclaimed station is told to wait before it calls again
PASSWORD_LENGTH = 32  # generated Basic-auth passwords (whitepaper: 16..40 characters)
PASSWORD_MIN, PASSWORD_MAX = 16, 40
_PASSWORD_ALPHABET = string.ascii_letters + string.digits

OcppVersionName = Literal["1.6", "2.0.1"]


# -- JSON bodies -----------------------------------------------------------------------


class ProvisionRequest(BaseModel):
    """What a station tells the setup service about itself."""

    model_config = ConfigDict(extra="forbid")

    serial_number: Annotated[str, Field(min_length=1, max_length=48)]
    model: Annotated[str, Field(min_length=1, max_length=50)]
    firmware_version: Annotated[str, Field(min_length=1, max_length=50)]
    ocpp_versions: Annotated[list[OcppVersionName], Field(min_length=1)]
    csr: str | None = None  # PEM, for security profile 3: the key stays on the station


class ProvisionResponse(BaseModel):
    """Where the station goes, and how it proves itself there."""

    serial_number: str
    csms_url: str  # ws(s) base URL; the station appends "/" and its serial number
    ocpp_version: OcppVersionName
    security_profile: int
    password: str | None = None  # profile 2
    certificate_chain: str | None = None  # profile 3: PEM, leaf first
    csms_root_certificates: list[str] = []  # PEM roots to trust for the CSMS's TLS


class ClaimIn(BaseModel):
    """An owner's claim: where the station with this serial number is to go."""

    model_config = ConfigDict(extra="forbid")

    owner: Annotated[str, Field(min_length=1, max_length=255)]
    csms_url: str | None = None  # None: PlugStream Cloud; else a wss:// third-party CSMS
    ocpp_version: OcppVersionName = "1.6"
    security_profile: Literal[2, 3] = 2
    password: str | None = None  # third-party CSMS at profile 2: the station's password


class ClaimOut(BaseModel):
    serial_number: str
    owner: str
    csms_url: str | None
    ocpp_version: str
    security_profile: int
    password_set: bool  # a third-party password is kept; it is never shown
    claimed_at: datetime
    provisioned_at: datetime | None  # the station's last setup call since this claim


def _claim_out(claim: ClaimRecord) -> ClaimOut:
    return ClaimOut(
        serial_number=claim.serial_number,
        owner=claim.owner,
        csms_url=claim.csms_url,
        ocpp_version=claim.ocpp_version,
        security_profile=claim.security_profile,
        password_set=claim.password is not None,
        claimed_at=claim.claimed_at,
        provisioned_at=claim.provisioned_at,
    )


# -- helpers ---------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def new_password() -> str:
    """A Basic-auth password for a station: 32 letters and digits (~190 bits)."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def ocpp_url(config: CloudConfig) -> str:
    """PlugStream Cloud's OCPP base URL as a station is told it: ``public_url`` with
    https -> wss and ``/ocpp`` (with ``--setup``, ``--public-url`` names the cloud the
    stations go to), else built from this server's host, port and TLS."""
    if config.public_url:
        parts = urlsplit(config.public_url)
        scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
        path = parts.path.rstrip("/")
        if not path.endswith("/ocpp"):
            path += "/ocpp"
        return f"{scheme}://{parts.netloc}{path}"
    host = f"[{config.host}]" if ":" in config.host else config.host
    scheme = "wss" if config.tls_cert is not None else "ws"
    return f"{scheme}://{host}:{config.port}/ocpp"


def _check_claim(serial: str, claim: ClaimIn) -> None:
    """Refuse a claim a station could not follow, with the reason (422)."""
    if not valid_station_id(serial):
        raise HTTPException(
            422, f"not a serial number: {serial!r} (1-48 letters, digits or *-_=+|@.)"
        )
    if claim.csms_url is None:
        if claim.password is not None:
            raise HTTPException(
                422, "PlugStream Cloud makes the station's password itself: give no password"
            )
        return
    parts = urlsplit(claim.csms_url)
    if parts.scheme == "ws":
        raise HTTPException(
            422,
            f"ws:// is not TLS: security profile {claim.security_profile} needs a wss:// CSMS URL",
        )
    if parts.scheme != "wss" or not parts.hostname:
        raise HTTPException(422, f"csms_url must be a wss:// URL, not {claim.csms_url!r}")
    if parts.username is not None or parts.password is not None:
        raise HTTPException(422, "give the password in 'password', not in csms_url")
    if parts.query or parts.fragment:
        raise HTTPException(422, "csms_url takes no query or fragment")
    if claim.security_profile == 3:
        raise HTTPException(
            422,
            "security profile 3 with a third-party CSMS is not supported: that CSMS must sign "
            "the station's certificate itself (claim profile 2, or use PlugStream Cloud)",
        )
    if claim.password is None:
        raise HTTPException(
            422, "a third-party CSMS at security profile 2 needs the station's password"
        )
    if not PASSWORD_MIN <= len(claim.password) <= PASSWORD_MAX or not all(
        33 <= ord(c) <= 126 for c in claim.password
    ):
        raise HTTPException(
            422,
            f"password: {PASSWORD_MIN} to {PASSWORD_MAX} printable ASCII characters without "
            "spaces (1.6 security whitepaper AuthorizationKey)",
        )


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _refuse(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": reason}, headers=headers)


def client_certificate(scope: Any) -> x509.Certificate | None:
    """The (TLS-verified) client certificate of the request, from the ASGI TLS extension."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    try:
        return x509.load_pem_x509_certificate(chain[0].encode("ascii"))
    except ValueError:
        return None


def manufacturer_identity(cert: x509.Certificate, root: x509.Certificate) -> str | None:
    """The serial number (CN) of a certificate issued by the manufacturer root; None if the
    manufacturer root did not issue it."""
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else None


# -- routers ---------------------------------------------------------------------------

router = APIRouter(prefix=SETUP_PREFIX, tags=["setup"])
"""``/setup/v1``: the stations' setup call and the service's health (no bearer token:
a station proves itself with its manufacturer certificate)."""


@router.get("/health")
async def health(store: StoreDep) -> dict[str, str]:
    await store.setup.get_claim("")  # the database answers
    return {"status": "ok"}


@router.post(
    "/provision",
    response_model=ProvisionResponse,
    responses={
        403: {"description": "no manufacturer certificate, or not this serial number's"},
        404: {"description": "not claimed yet: call again after Retry-After seconds"},
        409: {"description": "the claim asks for what the station cannot do"},
    },
)
async def provision(
    request: Request, body: ProvisionRequest, store: StoreDep, config: ConfigDep
) -> Response:
    """A station's setup call: mutual TLS with its manufacturer certificate."""
    if config.pki_dir is None:
        return _refuse(503, "the setup service has no PKI (serve with --pki)")
    if request.url.scheme != "https":
        return _refuse(
            403, "the setup service needs HTTPS with the station's manufacturer certificate"
        )
    cert = client_certificate(request.scope)
    if cert is None:
        return _refuse(
            403,
            "no manufacturer certificate: the station must present the certificate its "
            "manufacturer installed (mutual TLS)",
        )
    pki = PKIStore(config.pki_dir)
    try:
        maker_root = pki.manufacturer_root().root.certificate
    except PKIError as exc:
        log.error("setup service: %s", exc)
        return _refuse(503, "the setup service cannot read its manufacturer root")
    serial = manufacturer_identity(cert, maker_root)
    if serial is None:
        return _refuse(
            403,
            "the client certificate is not issued by the manufacturer root "
            f"(issuer {cert.issuer.rfc4514_string()!r})",
        )
    if serial != body.serial_number:
        return _refuse(
            403,
            f"serial number mismatch: the certificate is for {serial!r}, "
            f"the request says {body.serial_number!r}",
        )
    claim = await store.setup.get_claim(serial)
    if claim is None:
        return _refuse(
            404,
            f"not claimed yet: ask the owner to claim serial {serial}",
            {"Retry-After": str(RETRY_AFTER_S)},
        )
    if claim.ocpp_version not in body.ocpp_versions:
        return _refuse(
            409,
            f"claimed for OCPP {claim.ocpp_version}, but the station speaks only "
            f"{', '.join(body.ocpp_versions)}",
        )
    answer = ProvisionResponse(
        serial_number=serial,
        csms_url=claim.csms_url if claim.csms_url is not None else ocpp_url(config),
        ocpp_version=claim.ocpp_version,
        security_profile=claim.security_profile,
    )
    if claim.csms_url is not None:  # a third-party CSMS: what the owner gave
        answer.password = claim.password
        if await store.stations.get(serial) is not None:
            # it leaves PlugStream Cloud: its credentials here stop working (a password
            # nobody knows, and profile 2 so that a certificate alone does not admit it)
            await store.stations.register(serial, password=new_password(), security_profile=2)
    elif claim.security_profile == 3:
        if body.csr is None:
            return _refuse(
                400, "claimed for security profile 3: send a CSR (csr) for your certificate"
            )
        try:
            csms = pki.csms_root()
            signed = csms.sign_csr(body.csr.encode("ascii", "replace"), organization=pki.operator)
        except PKIError as exc:
            return _refuse(400, f"csr: {exc}")
        signed_cn = signed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not signed_cn or signed_cn[0].value != serial:
            return _refuse(
                403, f"the CSR's CN must be the serial number {serial!r}, not {signed_cn!r}"
            )
        answer.certificate_chain = _pem(signed) + _pem(csms.root.certificate)
        answer.csms_root_certificates = [_pem(csms.root.certificate)]
        await store.stations.register(serial, security_profile=3)
    else:
        answer.password = new_password()
        answer.csms_root_certificates = [_pem(pki.csms_root().root.certificate)]
        await store.stations.register(serial, password=answer.password, security_profile=2)
    await store.setup.mark_provisioned(serial, _now())
    log.info(
        "station %s provisioned: %s, OCPP %s, profile %d",
        serial,
        answer.csms_url,
        answer.ocpp_version,
        answer.security_profile,
    )
    return JSONResponse(answer.model_dump(mode="json"))


claims = guarded_router(tags=["claims"])
"""The owners' claims, ``/api/v1/claims`` (bearer-guarded, like the rest of the REST API)."""


@claims.put("/claims/{serial_number}", response_model=ClaimOut)
async def claim_station(
    serial_number: str, claim: Annotated[ClaimIn, Body()], store: StoreDep
) -> ClaimOut:
    """Claim a station by its serial number (or change the claim): its next setup call
    sends it there."""
    _check_claim(serial_number, claim)
    record = await store.setup.put_claim(
        serial_number,
        owner=claim.owner,
        csms_url=claim.csms_url,
        ocpp_version=claim.ocpp_version,
        security_profile=claim.security_profile,
        password=claim.password,
        claimed_at=_now(),
    )
    return _claim_out(record)


@claims.get("/claims", response_model=list[ClaimOut])
async def claims_list(store: StoreDep) -> list[ClaimOut]:
    return [_claim_out(c) for c in await store.setup.list_claims()]


@claims.get("/claims/{serial_number}", response_model=ClaimOut)
async def claim_get(serial_number: str, store: StoreDep) -> ClaimOut:
    found = await store.setup.get_claim(serial_number)
    if found is None:
        raise HTTPException(404, f"serial {serial_number!r} is not claimed")
    return _claim_out(found)


@claims.delete("/claims/{serial_number}", status_code=204)
async def claim_delete(serial_number: str, store: StoreDep) -> Response:
    if not await store.setup.delete_claim(serial_number):
        raise HTTPException(404, f"serial {serial_number!r} is not claimed")
    return Response(status_code=204)
