"""The CSMS side of ISO 15118 certificate management in 2.0.1:

- GetCertificateStatus (M06): the cloud asks the OCSP responder the station named and
  returns its DER answer, base64 (M06.FR.02/03/08/09), or Failed (M06.FR.04);
- Get15118EVCertificate (M01, M02): the EV's EXI CertificateInstallationReq /
  CertificateUpdateReq goes to the contract certificate pool of ``contract_pool_url``
  (M01.FR.01 note, see :mod:`.contract_pool`), whose signed EXI answer is returned as it
  is (TC_M_26, TC_M_28). Without a pool, or when it fails or is late, the answer is
  Failed at once, with the reason: the EV then ends its 15118 session with FAILED within
  its 5 s instead of waiting them out; the CSMS has no EXI codec and makes no answer up,
  which the EV could not verify anyway;
- Authorize with contract certificate data (C07): :meth:`contract_authorize` checks each
  certificate with OCSP (see :mod:`.contract`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509

from plugstream.cloud.certificates.contract import (
    ChainError,
    OcspCheck,
    certificate_status,
    checks_for_chain,
    checks_for_hash_data,
)
from plugstream.cloud.certificates.contract_pool import (
    ContractPool,
    ContractPoolFailure,
    forward,
)
from plugstream.cloud.certificates.ocsp import fetch_ocsp
from plugstream.cloud.certificates.v2g import v2g_authority
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.ocpp import on, v201
from plugstream.pki.ocsp import (
    OcspAnswer,
    OcspFailure,
    b64,
    read_response,
    request_for_hash_data,
)

if TYPE_CHECKING:
    from plugstream.cloud.config import CloudConfig

__all__ = ["MO_ROOTS_DIR", "CertificateStatusHandlers201", "contract_pool_of"]

log = logging.getLogger("plugstream.cloud.certificates")

#: PEM files of mobility operators' roots the CSMS trusts for central validation (C07.FR.06),
#: in the PKI directory beside the cloud's own V2G root
MO_ROOTS_DIR = "mo-roots"


class CertificateStatusHandlers201(StationHandlers):
    """GetCertificateStatus, Get15118EVCertificate, and the C07 check of Authorize."""

    @on(v201.Action.GetCertificateStatus)
    async def get_certificate_status(
        self, payload: v201.GetCertificateStatusRequest
    ) -> v201.GetCertificateStatusResponse:
        data = payload["ocspRequestData"]
        url = data["responderURL"]
        try:
            der = request_for_hash_data(data)
            answer = await fetch_ocsp(url, der)
            read_response(answer, int(data["serialNumber"], 16))  # M06.FR.02: a real answer
        except (OcspFailure, ValueError) as exc:
            log.warning("station %s: GetCertificateStatus failed: %s", self.station_id, exc)
            return {
                "status": "Failed",  # M06.FR.04
                "statusInfo": {"reasonCode": "OCSPFailed", "additionalInfo": str(exc)[:512]},
            }
        return {"status": "Accepted", "ocspResult": b64(answer)}

    @on(v201.Action.Get15118EVCertificate)
    async def get_15118_ev_certificate(
        self, payload: v201.Get15118EVCertificateRequest
    ) -> v201.Get15118EVCertificateResponse:
        action, schema = payload["action"], payload["iso15118SchemaVersion"]
        pool = contract_pool_of(self.context.config)
        try:
            if pool is None:
                raise ContractPoolFailure(
                    "NoContractPool", "this CSMS is connected to no contract certificate pool"
                )
            exi = await forward(pool, schema, action, payload["exiRequest"])
        except ContractPoolFailure as exc:
            log.warning(
                "station %s: Get15118EVCertificate %s (schema %s) failed: %s",
                self.station_id,
                action,
                schema,
                exc,
            )
            return {
                "status": "Failed",
                "exiResponse": "",
                "statusInfo": {"reasonCode": exc.reason_code, "additionalInfo": str(exc)[:512]},
            }
        log.info(
            "station %s: Get15118EVCertificate %s answered by the pool", self.station_id, action
        )
        return {"status": "Accepted", "exiResponse": exi}

    # -- C07 ------------------------------------------------------------------------------

    async def contract_authorize(
        self, payload: v201.AuthorizeRequest, info: v201.IdTokenInfoType
    ) -> v201.AuthorizeResponse:
        """The AuthorizeResponse for ``payload`` whose idToken alone was answered ``info``:
        unchanged without contract certificate data; else with ``certificateStatus`` and
        the idToken's status as C07.FR.13-17 say."""
        hash_data = payload.get("iso15118CertificateHashData")
        chain = payload.get("certificate")
        if not hash_data and not chain:
            return {"idTokenInfo": info}
        try:
            if hash_data:
                checks = checks_for_hash_data(cast(Sequence[Mapping[str, Any]], hash_data))
            else:
                checks = checks_for_chain(str(chain), self._trusted_cas(), self.now())
        except ChainError as exc:
            log.info("station %s: contract certificate refused: %s", self.station_id, exc)
            if exc.expired:
                return _answer(info, "CertificateExpired", "Expired")  # C07.FR.15
            return _answer(info, "CertChainError", "Invalid")  # C07.FR.17
        trusted = self._trusted_cas()
        now = self.now()
        answers = await asyncio.gather(*(_ask(check, trusted, now) for check in checks))
        cert_status, id_status = certificate_status(answers, info["status"])
        return _answer(info, cert_status, id_status)

    def _trusted_cas(self) -> list[x509.Certificate]:
        """The V2G root and sub-CA of the cloud's PKI and the MO roots kept beside it:
        what a contract chain must end in, and who may sign an OCSP answer about it."""
        config = self.context.config
        roots = []
        authority = v2g_authority(config, self.now())
        if authority is not None:
            roots += [authority.root.certificate, authority.sub_ca.certificate]
        if config.pki_dir is not None:
            for path in sorted((Path(config.pki_dir) / MO_ROOTS_DIR).glob("*.pem")):
                try:
                    roots.extend(x509.load_pem_x509_certificates(path.read_bytes()))
                except (OSError, ValueError) as exc:
                    log.warning("%s: not a PEM root: %s", path, exc)
        return roots


def contract_pool_of(config: CloudConfig) -> ContractPool | None:
    """The contract certificate pool the configuration names, if any."""
    if not config.contract_pool_url:
        return None
    return ContractPool(
        config.contract_pool_url,
        token=config.contract_pool_token,
        ca_file=config.contract_pool_ca,
        timeout=config.contract_pool_timeout,
    )


async def _ask(
    check: OcspCheck, trusted: Sequence[x509.Certificate], now: dt.datetime
) -> OcspAnswer | OcspFailure:
    """The verified answer of the responder the check names (the station chose the URL:
    only an answer signed under a CA this CSMS trusts counts)."""
    try:
        der = request_for_hash_data(check.hash_data)
        answer = await fetch_ocsp(check.responder_url, der)
        return read_response(answer, check.serial, trusted=trusted, now=now)
    except OcspFailure as exc:
        return exc


def _answer(info: v201.IdTokenInfoType, cert_status: str, id_status: str) -> v201.AuthorizeResponse:
    out = cast(v201.IdTokenInfoType, {**info, "status": id_status})
    return {
        "idTokenInfo": out,
        "certificateStatus": cast(v201.AuthorizeCertificateStatusEnumType, cert_status),
    }
