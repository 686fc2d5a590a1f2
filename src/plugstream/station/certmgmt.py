"""Certificate management on the station: the renewal of its own certificate (OCPP 2.0.1
part 2 A02/A03, 1.6 Security Whitepaper A02/A03) and the roots it trusts (M03 get, M04
delete, M05 install).

Renewal: on a TriggerMessage(SignChargingStationCertificate) (2.0.1) or
ExtendedTriggerMessage(SignChargePointCertificate) (1.6) the station makes a new EC P-256
key, keeps it in ``certs/pending.key`` (0600; it never leaves the station, A02.FR.05) and
sends its CSR in SignCertificate. The CertificateSigned that follows is checked
(:func:`check_certificate_chain`, A02.FR.06): the leaf carries the pending key, its CN is
the station's identity, it is valid by the station's clock and it chains to an installed
CSMS root. A bad one is discarded with Rejected and an InvalidChargingStationCertificate
(1.6: InvalidChargePointCertificate) security event (A02.FR.07). A good one is installed
and the station reconnects once it is valid, so that the next TLS session presents it
(A02.FR.08).

The checks are plain functions (no I/O but the store's files); the handlers are thin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from plugstream.ocpp import OcppError, after, on, v16, v201
from plugstream.station.certificates import (
    CSMS_ROOT,
    CertificateStore,
    hash_data,
    matches,
    root_kind,
)
from plugstream.station.ports import StationPort

__all__ = [
    "CertificateHandlers16",
    "CertificateHandlers201",
    "CertificateSigning",
    "InvalidCertificate",
    "check_certificate_chain",
    "check_root",
    "make_csr",
    "renew_if_expiring",
    "renewal_due",
    "request_signing",
    "signing_of",
]

log = logging.getLogger(__name__)

MAX_CHAIN_DEPTH = 4
MAX_CHAIN_CHARS = 10000  # CertificateSigned.certificateChain is string[0..10000]


class InvalidCertificate(ValueError):
    """A certificate the station refuses; the message says why (the security event's
    techInfo)."""


# -- the sans-I/O part --------------------------------------------------------------------


def make_csr(common_name: str, organization: str | None) -> tuple[bytes, bytes]:
    """A new EC P-256 key (A02.FR.02) and its PEM CSR (RFC 2986, A02.FR.03) with CN
    ``common_name`` and O ``organization`` (1.6 A02.FR.13: CpoName); (csr, key) PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(attributes))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return csr.public_bytes(serialization.Encoding.PEM), key_pem


def _client_verifier(roots: Sequence[x509.Certificate], at: dt.datetime) -> Any:
    # A station certificate has no subjectAltName (its identity is the CN, A00.FR.405):
    # the WebPKI end-entity policy, with the SAN made optional; clientAuth is still required.
    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    return (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(at)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
        .build_client_verifier()
    )


def _cn(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def check_certificate_chain(
    chain_pem: str,
    key: PrivateKeyTypes | None,
    roots: Iterable[x509.Certificate],
    common_name: str,
    now: dt.datetime,
    *,
    max_chars: int | None = None,
) -> list[x509.Certificate]:
    """The certificates of a CertificateSigned (leaf first), checked as A02.FR.06 asks;
    :class:`InvalidCertificate` naming the first failure otherwise.

    The leaf must carry the public key of ``key`` (the pending CSR's), have CN
    ``common_name``, not be expired at ``now`` (the station's clock) and chain to one of
    ``roots`` (the CSMS roots: the operator's hierarchy). A certificate that becomes
    valid later is accepted: the station switches to it then (A02.FR.08).
    """
    if max_chars is not None and len(chain_pem) > max_chars:
        raise InvalidCertificate(f"chain of {len(chain_pem)} characters, limit {max_chars}")
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError:
        raise InvalidCertificate("certificateChain is not PEM certificates") from None
    leaf, intermediates = chain[0], chain[1:]
    if key is None:
        raise InvalidCertificate("no certificate signing request is pending")
    if leaf.public_key() != key.public_key():
        raise InvalidCertificate("the certificate is not for the key of the station's CSR")
    if _cn(leaf) != common_name:
        raise InvalidCertificate(f"CN {_cn(leaf)!r}, the station is {common_name!r}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    if now > leaf.not_valid_after_utc:
        raise InvalidCertificate(
            f"expired at {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, "
            f"the station's clock says {now:%Y-%m-%dT%H:%M:%SZ}"
        )
    anchors = list(roots)
    if not anchors:
        raise InvalidCertificate("the station has no CSMS root to check the certificate with")
    try:
        _client_verifier(anchors, max(now, leaf.not_valid_before_utc)).verify(leaf, intermediates)
    except VerificationError as exc:
        raise InvalidCertificate(
            f"issued by {leaf.issuer.rfc4514_string()!r}, not under an installed CSMS root: {exc}"
        ) from None
    return chain


def check_root(pem: str, now: dt.datetime) -> x509.Certificate:
    """The CA certificate of an InstallCertificate, or :class:`InvalidCertificate`:
    not PEM, not a CA (basicConstraints CA:TRUE) or expired by the station's clock
    (M05.FR.07, 1.6 M05.FR.06)."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise InvalidCertificate("not a PEM certificate") from None
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise InvalidCertificate("not a CA certificate (basicConstraints CA:TRUE missing)")
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    if now > cert.not_valid_after_utc:
        raise InvalidCertificate(f"expired at {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    return cert


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _station_leaf_named(store: CertificateStore, wanted: dict[str, Any]) -> bool:
    """Whether ``wanted`` names the ChargingStationCertificate (M04.FR.06, 1.6 M04.FR.05)."""
    chain = store.station_chain()
    if not chain:
        return False
    leaf = chain[0]
    issuers = chain[1:] + store.roots(CSMS_ROOT)
    candidates = [c for c in issuers if _issued_by(leaf, c)] or [leaf]
    return any(matches(wanted, leaf, issuer) for issuer in candidates)


# -- the station's side, shared by both versions -----------------------------------------


def _organization(station: StationPort) -> str | None:
    """O of the CSR: 2.0.1 SecurityCtrlr.OrganizationName, 1.6 CpoName (if the station
    has that key), else the O of the certificate it has now."""
    config: Any = station.config
    value = ""
    if station.ocpp_version.name == "V16":
        if config.known("CpoName"):
            value = config.value("CpoName")
    else:
        value = config.value("SecurityCtrlr", "OrganizationName")
    if value:
        return str(value)
    chain = station.certificates.station_chain()
    if chain:
        names = chain[0].subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        if names:
            return str(names[0].value)
    return None


def _resend_rules(station: StationPort) -> tuple[float, int]:
    """(CertSigningWaitMinimum, CertSigningRepeatTimes); 2.0.1 only: 1.6 has no such keys."""
    if station.ocpp_version.name == "V16":
        return 0.0, 0
    config: Any = station.config
    try:
        return (
            float(config.get_int("SecurityCtrlr", "CertSigningWaitMinimum")),
            config.get_int("SecurityCtrlr", "CertSigningRepeatTimes"),
        )
    except (KeyError, ValueError):
        return 0.0, 0


def _max_chain_chars(station: StationPort) -> int:
    config: Any = station.config
    try:
        if station.ocpp_version.name == "V16":
            if config.known("CertificateSignedMaxChainSize"):
                return min(MAX_CHAIN_CHARS, int(config.value("CertificateSignedMaxChainSize")))
        else:
            return min(
                MAX_CHAIN_CHARS, int(config.value("SecurityCtrlr", "MaxCertificateChainSize"))
            )
    except (KeyError, ValueError, LookupError):
        pass
    return MAX_CHAIN_CHARS


RENEW_BEFORE = dt.timedelta(days=30)  # A03.FR.02: "will expire in one month"


def renewal_due(
    leaf: x509.Certificate, now: dt.datetime, before: dt.timedelta = RENEW_BEFORE
) -> bool:
    """Whether the station's certificate expires within ``before`` of ``now`` (A03.FR.02)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    return leaf.not_valid_after_utc - now <= before


class CertificateSigning:
    """The renewal of one station's certificate: the CSR it sends, its re-sends while
    the CSMS has accepted it and sent no certificate (A02.FR.17-19), and the
    CertificateSigned that answers it (A02.FR.06-08).

    One per station (:func:`signing_of`): two stations in one process share no state.
    The re-send timer is kept off the station's own task set, which a clean shutdown
    waits to drain.
    """

    def __init__(self, station: StationPort) -> None:
        self.station = station
        self._resending: asyncio.Task[None] | None = None

    async def request(self, certificate_type: str | None = None) -> str | None:
        """Make a new key and send its CSR in SignCertificate (A02.FR.02/03); the CSMS's
        status (Accepted / Rejected), or None if it was not answered. While the CSMS has
        accepted it and not sent the certificate, a 2.0.1 station sends it again
        (A02.FR.17-19)."""
        station = self.station
        self.stop_resending()
        csr, key = make_csr(station.station_id, _organization(station))
        station.certificates.set_pending_key(key)
        payload: dict[str, Any] = {"csr": csr.decode()}
        if certificate_type is not None:
            payload["certificateType"] = certificate_type  # A02.FR.13
        status = await self._send(payload)
        wait, times = _resend_rules(station)
        pending = station.certificates.pending_key_path
        # not answered yet (the certificate may have come already)
        unanswered = pending.is_file() and pending.read_bytes() == key
        if status == "Accepted" and wait > 0 and times > 0 and unanswered:
            self._resending = asyncio.get_running_loop().create_task(self._resend(payload, key))
        return status

    async def renew_if_expiring(self) -> str | None:
        """A03: the station renews its certificate by itself when it expires within a
        month. Call once registered on a connection; does nothing (None) while the
        certificate has longer to live, or while a CSR is already pending (its answer,
        or a TriggerMessage, decides then: A02.FR.19/20)."""
        station = self.station
        chain = station.certificates.station_chain()
        if not chain or not renewal_due(chain[0], station.now()):
            return None
        if station.certificates.pending_key() is not None:
            return None
        kind = None if station.ocpp_version.name == "V16" else "ChargingStationCertificate"
        log.info("the station certificate expires %s: renewing", chain[0].not_valid_after_utc)
        return await self.request(kind)

    def certificate_signed(self, chain_pem: str, event: str) -> bool:
        """Check and install a signed certificate; False (and the security event
        ``event``) if refused."""
        station = self.station
        store = station.certificates
        self.stop_resending()  # answered; if refused, not again until triggered (A02.FR.20)
        try:
            check_certificate_chain(
                chain_pem,
                store.pending_key(),
                store.roots(CSMS_ROOT),
                station.station_id,
                station.now(),
                max_chars=_max_chain_chars(station),
            )
        except InvalidCertificate as exc:
            log.warning("CertificateSigned rejected: %s", exc)
            station.security_event(event, str(exc)[:255])
            return False
        key_pem = store.pending_key_path.read_bytes()
        store.replace_station_certificate(chain_pem.encode(), key_pem)
        store.pending_key_path.unlink(missing_ok=True)
        log.info("new ChargingStationCertificate installed")
        return True

    async def switch_certificate(self) -> None:
        """Reconnect once the new certificate is valid, so TLS presents it (A02.FR.08)."""
        station = self.station
        chain = station.certificates.station_chain()
        if not chain:
            return
        wait = (chain[0].not_valid_before_utc - station.now()).total_seconds()
        if wait > 0:
            await station.clock.sleep(wait)
        if station.certificates.station_chain()[:1] == chain[:1]:
            await station.disconnect()

    def stop_resending(self) -> None:
        """Cancel the re-sends of the CSR in flight (answered, or replaced by a new one)."""
        task, self._resending = self._resending, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _send(self, payload: dict[str, Any]) -> str | None:
        try:
            result = await self.station.call("SignCertificate", payload)
        except OcppError as exc:
            log.info("SignCertificate not delivered: %s", exc)
            return None
        status = str(result.get("status"))
        log.info("SignCertificate: %s", status)
        return status

    async def _resend(self, payload: dict[str, Any], key_pem: bytes) -> None:
        """A02.FR.17-19: no CertificateSigned for the CSR after CertSigningWaitMinimum:
        send it again, doubling the wait each time, CertSigningRepeatTimes times at most."""
        wait, times = _resend_rules(self.station)
        path = self.station.certificates.pending_key_path
        try:
            for attempt in range(times):
                await self.station.clock.sleep(wait * 2**attempt)
                if not path.is_file() or path.read_bytes() != key_pem:
                    return  # answered, or a newer CSR replaced it
                if await self._send(payload) == "Rejected":
                    return
        finally:
            if self._resending is asyncio.current_task():
                self._resending = None


SIGNING_ATTRIBUTE: Final = "certificate_signing"
"""The station's attribute that holds its :class:`CertificateSigning`."""


def signing_of(station: StationPort) -> CertificateSigning:
    """The station's :class:`CertificateSigning`: its ``certificate_signing``, made
    (and kept there) on first use when the station did not make one itself."""
    signing = getattr(station, SIGNING_ATTRIBUTE, None)
    if not isinstance(signing, CertificateSigning):
        signing = CertificateSigning(station)
        setattr(station, SIGNING_ATTRIBUTE, signing)
    return signing


async def request_signing(station: StationPort, certificate_type: str | None = None) -> str | None:
    """:meth:`CertificateSigning.request` of ``station``."""
    return await signing_of(station).request(certificate_type)


async def renew_if_expiring(station: StationPort) -> str | None:
    """:meth:`CertificateSigning.renew_if_expiring` of ``station``."""
    return await signing_of(station).renew_if_expiring()


def _install(
    station: StationPort, kind: str, pem: str, max_roots: int | None
) -> Literal["Accepted", "Rejected", "Failed"]:
    """InstallCertificate: Accepted, Rejected (invalid, or no room) or Failed (M05)."""
    store = station.certificates
    try:
        cert = check_root(pem, station.now())
    except InvalidCertificate as exc:
        log.warning("InstallCertificate %s rejected: %s", kind, exc)
        return "Rejected"
    present = any(r.certificate == cert for r in store.installed(kind))
    if not present and max_roots is not None and store.root_count() >= max_roots:
        log.warning("InstallCertificate %s rejected: %d roots, the limit", kind, max_roots)
        return "Rejected"  # 1.6 M05.FR.03, 2.0.1 M05.FR.06
    config: Any = station.config
    try:
        strict = (
            config.get_bool("AdditionalRootCertificateCheck")
            if station.ocpp_version.name == "V16"
            else config.get_bool("SecurityCtrlr", "AdditionalRootCertificateCheck")
        )
    except (KeyError, LookupError, ValueError):
        strict = False
    if strict and kind == CSMS_ROOT and not present:
        # M05.FR.10/11 (1.6 M05.FR.09/10): a new CSMS root must be signed by the old one
        old = store.roots(CSMS_ROOT)
        if old and not any(_issued_by(cert, o) for o in old):
            return "Rejected"
    try:
        store.add_root(kind, pem)  # the same certificate again: replaced (M05.FR.17)
    except (OSError, ValueError) as exc:
        log.warning("InstallCertificate %s failed: %s", kind, exc)
        return "Failed"
    return "Accepted"


def _delete(
    station: StationPort, wanted: dict[str, Any]
) -> Literal["Accepted", "Failed", "NotFound"]:
    """DeleteCertificate: Accepted, NotFound, or Failed for the station's own certificate
    (M04.FR.06, 1.6 M04.FR.05) and for the last CSMS root while the station uses TLS
    (1.6 M04.FR.06: the root in use; 2.0.1 M04.FR.03 allows refusing the last of a type)."""
    store = station.certificates
    if _station_leaf_named(store, wanted):
        return "Failed"
    root = store.find_root(wanted)
    if root is None:
        return "NotFound"
    last_csms_root = root.kind == CSMS_ROOT and len(store.roots(CSMS_ROOT)) == 1
    if last_csms_root and station.config.security_profile >= 2:
        return "Failed"
    try:
        store.remove_root(root)
    except OSError as exc:
        log.warning("DeleteCertificate failed: %s", exc)
        return "Failed"
    return "Accepted"


def _max_roots_16(station: StationPort) -> int | None:
    config: Any = station.config
    if config.known("CertificateStoreMaxLength"):
        try:
            return int(config.value("CertificateStoreMaxLength"))
        except ValueError:
            return None
    return None


def _max_roots_201(station: StationPort) -> int | None:
    config: Any = station.config
    try:
        limit = config.definition("SecurityCtrlr", "CertificateEntries").max_limit
    except (KeyError, LookupError):
        return None
    return None if limit is None else int(limit)


# -- OCPP 1.6 (security extension) ---------------------------------------------------------

_EXTENDED_TRIGGERS_16 = frozenset(
    {"BootNotification", "Heartbeat", "StatusNotification", "MeterValues"}
)


def _firmware_status(station: StationPort) -> Callable[[], Awaitable[None]] | None:
    """The firmware updater's "send the current status" (station/firmware.py), if present."""
    send: Callable[[], Awaitable[None]] | None = getattr(
        getattr(station, "firmware", None), "send_current_status", None
    )
    return send


class CertificateHandlers16:
    """OCPP 1.6 security extension: ExtendedTriggerMessage, CertificateSigned,
    InstallCertificate, GetInstalledCertificateIds, DeleteCertificate."""

    station: StationPort
    _certificate_installed = False  # by the last CertificateSigned on this connection

    def _ours(self, payload: dict[str, Any]) -> bool:
        connector = payload.get("connectorId")
        return connector is None or connector in (0, self.station.connector.connector_id)

    @on(v16.Action.ExtendedTriggerMessage)
    def extended_trigger(
        self, payload: v16.ExtendedTriggerMessageRequest
    ) -> v16.ExtendedTriggerMessageResponse:
        if not self._ours(dict(payload)):
            return {"status": "Rejected"}
        message = payload["requestedMessage"]
        if message == "SignChargePointCertificate" or message in _EXTENDED_TRIGGERS_16:
            return {"status": "Accepted"}
        if message == "FirmwareStatusNotification" and _firmware_status(self.station):
            return {"status": "Accepted"}
        return {"status": "NotImplemented"}

    @after(v16.Action.ExtendedTriggerMessage)
    async def extended_trigger_done(self, payload: v16.ExtendedTriggerMessageRequest) -> None:
        if not self._ours(dict(payload)):
            return
        message = payload["requestedMessage"]
        if message == "SignChargePointCertificate":
            await request_signing(self.station)
        elif message in _EXTENDED_TRIGGERS_16:
            await self.station.send_triggered(message)
        elif message == "FirmwareStatusNotification":
            send = _firmware_status(self.station)
            if send is not None:
                await send()  # SignedFirmwareStatusNotification, by the firmware updater

    @on(v16.Action.CertificateSigned)
    def certificate_signed(
        self, payload: v16.CertificateSignedRequest
    ) -> v16.CertificateSignedResponse:
        ok = signing_of(self.station).certificate_signed(
            payload["certificateChain"], "InvalidChargePointCertificate"
        )
        self._certificate_installed = ok
        return {"status": "Accepted" if ok else "Rejected"}

    @after(v16.Action.CertificateSigned)
    async def certificate_signed_done(self, payload: v16.CertificateSignedRequest) -> None:
        if self._certificate_installed:
            self._certificate_installed = False
            self.station.spawn(signing_of(self.station).switch_certificate())

    @on(v16.Action.InstallCertificate)
    def install_certificate(
        self, payload: v16.InstallCertificateRequest
    ) -> v16.InstallCertificateResponse:
        kind = root_kind(payload["certificateType"])
        status = _install(self.station, kind, payload["certificate"], _max_roots_16(self.station))
        return {"status": status}

    @on(v16.Action.GetInstalledCertificateIds)
    def get_installed_certificate_ids(
        self, payload: v16.GetInstalledCertificateIdsRequest
    ) -> v16.GetInstalledCertificateIdsResponse:
        roots = self.station.certificates.installed(root_kind(payload["certificateType"]))
        if not roots:
            return {"status": "NotFound"}  # M03.FR.02
        return {
            "status": "Accepted",
            "certificateHashData": [hash_data(r.certificate) for r in roots],  # type: ignore[misc]
        }

    @on(v16.Action.DeleteCertificate)
    def delete_certificate(
        self, payload: v16.DeleteCertificateRequest
    ) -> v16.DeleteCertificateResponse:
        return {"status": _delete(self.station, dict(payload["certificateHashData"]))}


# -- OCPP 2.0.1 ----------------------------------------------------------------------------

_KINDS_201 = (
    "V2GRootCertificate",
    "MORootCertificate",
    "CSMSRootCertificate",
    "ManufacturerRootCertificate",
)


class CertificateHandlers201:
    """OCPP 2.0.1 A02/A03 (CertificateSigned), M03 (GetInstalledCertificateIds), M04
    (DeleteCertificate), M05 (InstallCertificate). The TriggerMessage for
    SignChargingStationCertificate is answered by the station's TriggerMessage handler,
    which calls :func:`request_signing`."""

    station: StationPort
    _certificate_installed = False  # by the last CertificateSigned on this connection

    @on(v201.Action.CertificateSigned)
    def certificate_signed(self, payload: v201.CertificateSignedRequest) -> dict[str, Any]:
        if payload.get("certificateType", "ChargingStationCertificate") != (
            "ChargingStationCertificate"
        ):
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnsupportedCertType"}}
        ok = signing_of(self.station).certificate_signed(
            payload["certificateChain"], "InvalidChargingStationCertificate"
        )
        self._certificate_installed = ok
        return {"status": "Accepted" if ok else "Rejected"}

    @after(v201.Action.CertificateSigned)
    async def certificate_signed_done(self, payload: v201.CertificateSignedRequest) -> None:
        if self._certificate_installed:
            self._certificate_installed = False
            self.station.spawn(signing_of(self.station).switch_certificate())

    @on(v201.Action.InstallCertificate)
    def install_certificate(self, payload: v201.InstallCertificateRequest) -> dict[str, Any]:
        kind = root_kind(payload["certificateType"])
        return {
            "status": _install(
                self.station, kind, payload["certificate"], _max_roots_201(self.station)
            )
        }

    @on(v201.Action.GetInstalledCertificateIds)
    def get_installed_certificate_ids(
        self, payload: v201.GetInstalledCertificateIdsRequest
    ) -> dict[str, Any]:
        wanted = list(payload.get("certificateType") or _KINDS_201)
        found = [
            {"certificateType": r.kind, "certificateHashData": hash_data(r.certificate)}
            for kind in wanted
            if kind in _KINDS_201
            for r in self.station.certificates.installed(kind)
        ]
        if not found:
            return {"status": "NotFound"}  # M03.FR.02
        return {"status": "Accepted", "certificateHashDataChain": found}

    @on(v201.Action.DeleteCertificate)
    def delete_certificate(self, payload: v201.DeleteCertificateRequest) -> dict[str, Any]:
        return {"status": _delete(self.station, dict(payload["certificateHashData"]))}
