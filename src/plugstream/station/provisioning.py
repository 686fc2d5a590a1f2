"""The station's setup client: from its factory state to a configured CSMS connection.

Out of the box a station knows only what the factory put in its data dir
(:func:`factory_install`): its serial number (= its OCPP identity), a manufacturer
certificate and key (CN = serial, issued by the manufacturer root), the roots it trusts
for the CSMS and the setup service, and the setup service's URL (the article's
``setup.plugstream.co.uk``). Its setup call (:func:`provision`) is an HTTPS POST over
mutual TLS: the server is checked with :func:`~plugstream.pki.tls.verify_server` against
the station's own roots and clock before a byte is sent (as for OCPP, A00.FR.308-310);
the station is identified by its manufacturer certificate.

Until an owner claims the serial the service says so (404 + ``Retry-After``) and the
station calls again later, backing off (:func:`provision_until_claimed`). Once claimed
it gets the CSMS URL, the OCPP version, the security profile and its credentials; they
are applied (:func:`apply`): ``setup.json`` (URL, version, profile), the
ChargingStationCertificate and its key (profile 3: the key was made here, only its CSR
left the station) and the CSMS roots in the certificate store, and the Basic-auth
password in the station's configuration (1.6 ``AuthorizationKey``, 2.0.1
``SecurityCtrlr.BasicAuthPassword``; :func:`configure_station`). The factory credentials
are so exchanged for the operator's right after installation (1.6 security whitepaper
§2.6.4, A00.FR.801-805; the new key never leaves the station, A02.FR.05).

:func:`run_with_setup` is ``plugstream station run --setup``: it provisions, runs the
station against what it was told, calls setup again on every start and when the CSMS
has been unreachable for a while, and switches when the claim changed.

On a site network (``network``, a :class:`~plugstream.station.network.StationNetwork`)
the setup call goes the way the article's Table 2 says a new station reaches
``setup.plugstream.co.uk``: address and DNS servers by DHCP, the clock by NTP, the name
looked up with the DNS priority list, and only then HTTPS, the server checked at the
NTP-corrected time. While any of that is missing nothing is sent (:class:`NotReady`,
retried like an unreachable service).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plugstream.pki.tls import ServerRejected, peer_chain, station_context, verify_server
from plugstream.station.certificates import CSMS_ROOT, MANUFACTURER_ROOT, CertificateStore
from plugstream.station.clock import Clock, SystemClock
from plugstream.station.control import DRAIN_S, Controller, drain, read_console
from plugstream.station.download import DownloadError, parse_head
from plugstream.station.hardware import Model
from plugstream.station.network import NetworkNotReady, StationNetwork
from plugstream.station.run import with_password
from plugstream.station.runtime import FIRMWARE_VERSION, Station
from plugstream.station.security import FILENAME as SECURITY_LOG_FILE
from plugstream.station.security import SecurityLog
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201

__all__ = [
    "FACTORY_FILE",
    "SETUP_FILE",
    "Factory",
    "NotClaimed",
    "NotReady",
    "SetupError",
    "SetupResult",
    "StationSetup",
    "apply",
    "configure_station",
    "factory_install",
    "load_factory",
    "load_setup",
    "make_station",
    "provision",
    "provision_until_claimed",
    "run_with_setup",
    "station_url",
]

log = logging.getLogger("plugstream.station.provisioning")

FACTORY_FILE = "factory.json"
SETUP_FILE = "setup.json"
PROVISION_PATH = "/setup/v1/provision"
MANUFACTURER_CERT = "manufacturer.pem"
MANUFACTURER_KEY = "manufacturer.key"
PENDING_KEY = "pending-station.key"
MAX_RESPONSE = 1 << 20
SETUP_TIMEOUT_S = 30.0
RETRY_FIRST_S = 5.0  # the first wait of an unclaimed station; doubles up to Retry-After
RECHECK_AFTER_S = 300.0  # CSMS unreachable this long: ask the setup service again
OCPP_VERSIONS = ("1.6", "2.0.1")


class SetupError(Exception):
    """The setup call failed; ``reason`` is the service's (or the transport's) words."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason if status is None else f"{status}: {reason}")
        self.reason = reason
        self.status = status


class NotClaimed(SetupError):
    """No owner has claimed the serial yet: call again after ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: float | None) -> None:
        super().__init__(reason, 404)
        self.retry_after = retry_after


class NotReady(SetupError):
    """The station's network cannot make the call yet (clock not synchronized, no DHCP
    lease, the setup name not resolved): nothing was sent. Retried like an unreachable
    service; ``reason`` says what is missing."""

    def __init__(self, why: str) -> None:
        super().__init__(f"not calling the setup service yet: {why}")


@dataclass(frozen=True, slots=True)
class Factory:
    """What the factory installed: who the station is and where it asks for its setup."""

    serial_number: str
    setup_url: str


@dataclass(frozen=True, slots=True)
class StationSetup:
    """``setup.json``: where the station goes (the credentials live in the config and the
    certificate store)."""

    serial_number: str
    csms_url: str
    ocpp_version: str
    security_profile: int
    provisioned_at: str


@dataclass(frozen=True, slots=True)
class SetupResult:
    """A setup call's answer, as applied; ``changed``: it differs from the previous setup."""

    setup: StationSetup
    password: str | None
    certificate_chain: str | None
    csms_roots: tuple[str, ...]
    changed: bool


# -- the factory state -----------------------------------------------------------------


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def factory_install(
    data_dir: Path,
    serial_number: str,
    cert_pem: bytes,
    key_pem: bytes,
    trust_pem: bytes,
    setup_url: str,
    manufacturer_root_pem: bytes | None = None,
) -> Factory:
    """Put a new station's factory state in ``data_dir``: the manufacturer certificate and
    key (key 0600), the CSMS / setup trust roots (one PEM or several), the setup URL and
    the manufacturer root its firmware signers must chain to (L01.FR.02)."""
    if urlsplit(setup_url).scheme != "https":
        raise ValueError(f"the setup URL must be https://, not {setup_url!r}")
    data_dir.mkdir(parents=True, exist_ok=True)
    store = CertificateStore(data_dir / "certs")
    cert_path, key_path = store.directory / MANUFACTURER_CERT, store.directory / MANUFACTURER_KEY
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_path.write_bytes(cert_pem)
    roots = x509.load_pem_x509_certificates(trust_pem)
    for root in roots:
        store.add_root(CSMS_ROOT, root.public_bytes(serialization.Encoding.PEM))
    if manufacturer_root_pem is not None:
        store.add_root(MANUFACTURER_ROOT, manufacturer_root_pem)
    factory = Factory(serial_number, setup_url)
    _write_json(data_dir / FACTORY_FILE, asdict(factory))
    return factory


def load_factory(data_dir: Path) -> Factory:
    path = data_dir / FACTORY_FILE
    try:
        data = json.loads(path.read_text())
        return Factory(str(data["serial_number"]), str(data["setup_url"]))
    except FileNotFoundError:
        raise SetupError(
            f"{path}: no factory state (plugstream pki factory --data-dir {data_dir})"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SetupError(f"{path}: unreadable factory state: {exc}") from None


def load_setup(data_dir: Path) -> StationSetup | None:
    """The setup last applied, or None (never provisioned)."""
    try:
        data = json.loads((data_dir / SETUP_FILE).read_text())
        return StationSetup(
            str(data["serial_number"]),
            str(data["csms_url"]),
            str(data["ocpp_version"]),
            int(data["security_profile"]),
            str(data["provisioned_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- the setup call --------------------------------------------------------------------


def _csr(serial_number: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh P-256 key and its CSR (CN = serial), for a profile-3 certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial_number)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def _parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of an HTTP/1.1 response read to EOF."""
    head_raw, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise SetupError("the setup service sent no complete HTTP response")
    try:
        head = parse_head(head_raw)
    except DownloadError as exc:
        raise SetupError(str(exc)) from None
    status, headers = head.status, head.headers
    if headers.get("transfer-encoding", "").lower() == "chunked":
        decoded, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        body = decoded
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return status, headers, body


async def post_json(
    url: str,
    payload: dict[str, Any],
    *,
    client_cert: Path,
    client_key: Path,
    roots: Sequence[x509.Certificate],
    now: Callable[[], datetime],
    timeout: float = SETUP_TIMEOUT_S,
    network: StationNetwork | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """POST ``payload`` over mutual TLS; the server's certificate is checked against
    ``roots`` at ``now()`` before the request is written (ServerRejected if it fails).

    ``network``: the station's own stack decides first (:meth:`StationNetwork.route`):
    :class:`NotReady` without a byte sent while its clock is unsynchronized or it has no
    lease / address for the host; else the TCP connection goes to the resolved address (or
    over the active link's bound socket) while TLS still names and checks the URL's host.
    None: the operating system's resolver and routing."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise SetupError(f"the setup URL must be https://HOST..., not {url!r}")
    host, port = parts.hostname, parts.port or 443
    context = station_context(client_cert, client_key)
    try:
        ipaddress.ip_address(host)
        sni: str | None = None
    except ValueError:
        sni = host
    async with asyncio.timeout(timeout):
        route: dict[str, Any] = {}
        if network is not None:
            try:
                route = await network.route(url, authenticated=True)
            except NetworkNotReady as exc:
                raise NotReady(str(exc)) from None
        sock = route.get("sock")
        try:
            if sock is not None:  # already connected over the active link's interface
                reader, writer = await asyncio.open_connection(
                    sock=sock, ssl=context, server_hostname=sni or ""
                )
            else:
                reader, writer = await asyncio.open_connection(
                    route.get("host", host), port, ssl=context, server_hostname=sni or ""
                )
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        try:
            verify_server(peer_chain(writer.get_extra_info("ssl_object")), host, roots, now())
            body = json.dumps(payload).encode()
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            request = (
                f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                "Content-Type: application/json\r\nAccept: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                "User-Agent: PlugStream-station\r\n\r\n"
            ).encode("ascii") + body
            writer.write(request)
            await writer.drain()
            raw = b""
            while len(raw) <= MAX_RESPONSE:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                raw += chunk
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    if not raw:
        # TLS 1.3: a refused client certificate shows only as the stream's end
        raise SetupError(
            "the setup service closed the connection without an answer "
            "(was the manufacturer certificate refused?)"
        )
    return _parse_response(raw)


async def provision(
    data_dir: Path,
    setup_url: str | None = None,
    *,
    now: Callable[[], datetime] | None = None,
    model: str = "PlugStream 22",
    firmware_version: str = FIRMWARE_VERSION,
    ocpp_versions: Sequence[str] = OCPP_VERSIONS,
    timeout: float = SETUP_TIMEOUT_S,
    network: StationNetwork | None = None,
) -> SetupResult:
    """One setup call, applied: NotClaimed while no owner has claimed the serial,
    SetupError for any other refusal (NotReady: ``network`` is not ready, nothing sent),
    ServerRejected when the service's certificate fails the check, OSError / TimeoutError
    when it cannot be reached. With a ``network`` that has a clock, the certificate is
    checked at that NTP-corrected time (not ``now``): the station's own idea of the time."""
    factory = load_factory(data_dir)
    url = (setup_url or factory.setup_url).rstrip("/")
    if not url.endswith(PROVISION_PATH):
        url += PROVISION_PATH
    store = CertificateStore(data_dir / "certs")
    key, csr = _csr(factory.serial_number)
    status, headers, body = await post_json(
        url,
        {
            "serial_number": factory.serial_number,
            "model": model,
            "firmware_version": firmware_version,
            "ocpp_versions": list(ocpp_versions),
            "csr": csr.decode("ascii"),
        },
        client_cert=store.directory / MANUFACTURER_CERT,
        client_key=store.directory / MANUFACTURER_KEY,
        roots=store.roots(CSMS_ROOT),
        now=network.clock.now
        if network is not None and network.clock is not None
        else now or (lambda: datetime.now(UTC)),
        timeout=timeout,
        network=network,
    )
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        answer = {}
    reason = str(answer.get("detail", body[:200].decode("utf-8", "replace")))
    if status == 404:
        retry = headers.get("retry-after")
        raise NotClaimed(reason, float(retry) if retry and retry.isdigit() else None)
    if status != 200:
        raise SetupError(reason, status)
    return apply(data_dir, answer, key)


def apply(data_dir: Path, answer: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> SetupResult:
    """Install what the setup service answered: certificate + ``key`` (profile 3), roots,
    and ``setup.json``. The password is handed back for :func:`configure_station`."""
    try:
        setup = StationSetup(
            serial_number=str(answer["serial_number"]),
            csms_url=str(answer["csms_url"]),
            ocpp_version=str(answer["ocpp_version"]),
            security_profile=int(answer["security_profile"]),
            provisioned_at=datetime.now(UTC).isoformat(),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SetupError(f"the setup answer lacks {exc}") from None
    if setup.ocpp_version not in OCPP_VERSIONS:
        raise SetupError(f"the setup answer asks for OCPP {setup.ocpp_version!r}")
    store = CertificateStore(data_dir / "certs")
    roots = tuple(str(r) for r in answer.get("csms_root_certificates") or ())
    for root in roots:
        store.add_root(CSMS_ROOT, root)
    chain = answer.get("certificate_chain")
    if chain:
        leaf = x509.load_pem_x509_certificate(str(chain).encode("ascii"))
        if leaf.public_key() != key.public_key():
            raise SetupError("the certificate from the setup service is not for our key")
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        store.set_station_certificate(str(chain).encode("ascii"), key_pem)
    previous = load_setup(data_dir)
    changed = previous is None or (
        (previous.csms_url, previous.ocpp_version, previous.security_profile)
        != (setup.csms_url, setup.ocpp_version, setup.security_profile)
    )
    _write_json(data_dir / SETUP_FILE, asdict(setup))
    password = answer.get("password")
    return SetupResult(
        setup,
        str(password) if password else None,
        str(chain) if chain else None,
        roots,
        changed,
    )


def _refused_for_good(exc: BaseException) -> bool:
    """A refusal other than "not claimed yet" or a passing server trouble."""
    if not isinstance(exc, SetupError) or isinstance(exc, NotClaimed) or exc.status is None:
        return False
    return exc.status not in (408, 429, 500, 502, 503, 504)


async def provision_until_claimed(
    data_dir: Path,
    setup_url: str | None = None,
    *,
    clock: Clock | None = None,
    retry_max: float = 300.0,
    attempts: int | None = None,
    on_wait: Callable[[SetupError | OSError, float], None] | None = None,
    **options: Any,
) -> SetupResult:
    """:func:`provision`, again after a wait while the serial is unclaimed or the service
    unreachable: RETRY_FIRST_S, doubling up to the service's Retry-After (at most
    ``retry_max``). ``attempts`` bounds the calls (the last failure is raised)."""
    clock = clock or SystemClock()
    delay = min(RETRY_FIRST_S, retry_max)
    made = 0
    while True:
        made += 1
        try:
            return await provision(data_dir, setup_url, now=clock.now, **options)
        except ServerRejected as exc:
            # Maybe the clock is not set yet (NTP) or the service's certificate is being
            # replaced: retry, and keep the event for the CSMS the station will reach.
            SecurityLog(data_dir / SECURITY_LOG_FILE).record(
                "InvalidCsmsCertificate", clock.now(), str(exc)
            )
            if attempts is not None and made >= attempts:
                raise
            wait = min(delay, retry_max)
            if on_wait is not None:
                on_wait(SetupError(str(exc)), wait)
            await clock.sleep(wait)
            delay = min(delay * 2, retry_max)
        except (SetupError, OSError, TimeoutError) as exc:
            if _refused_for_good(exc):
                raise  # retrying will not help: a person must act
            if attempts is not None and made >= attempts:
                raise
            ceiling = retry_max
            if isinstance(exc, NotClaimed) and exc.retry_after is not None:
                ceiling = min(ceiling, exc.retry_after)
            wait = min(delay, ceiling)
            if on_wait is not None:
                on_wait(exc, wait)
            await clock.sleep(wait)
            delay = min(delay * 2, retry_max)


# -- the station, configured -------------------------------------------------------------


def make_station(data_dir: Path, model: Model, setup: StationSetup, **options: Any) -> Station:
    """The station of ``setup``'s OCPP version on ``data_dir``, its profile applied."""
    cls = Station16 if setup.ocpp_version == "1.6" else Station201
    station = cls(
        setup.serial_number, model, data_dir, serial_number=setup.serial_number, **options
    )
    configure_station(station, setup, None)
    return station


def configure_station(station: Station, setup: StationSetup, password: str | None) -> None:
    """SecurityProfile and (when given) the Basic-auth password into the station's
    configuration: 1.6 SecurityProfile / AuthorizationKey (security whitepaper), 2.0.1
    SecurityCtrlr.SecurityProfile / BasicAuthPassword; as an installer writes them."""
    station.install_security(setup.security_profile, password)


def station_url(station: Station, setup: StationSetup) -> str:
    """The CSMS URL to run ``station`` with: Basic auth in it at profiles 1 and 2."""
    password = station.password()
    if setup.security_profile in (1, 2) and password:
        return with_password(setup.csms_url, station.station_id, password)
    return setup.csms_url


# -- plugstream station run --setup -----------------------------------------------------


async def _offline_for(station: Station, seconds: float) -> None:
    """Return once the station has been without a CSMS connection for ``seconds``."""
    loop = asyncio.get_running_loop()
    since: float | None = None
    while True:
        if station.online:
            since = None
        elif since is None:
            since = loop.time()
        elif loop.time() - since >= seconds:
            return
        await asyncio.sleep(min(0.2, seconds / 4))


async def run_with_setup(
    model: Model,
    data_dir: Path,
    setup_url: str | None = None,
    *,
    retry_max: float = 300.0,
    recheck_after: float = RECHECK_AFTER_S,
    stdin_fd: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    network: StationNetwork | None = None,
) -> int:
    """``plugstream station run --setup``: provision (waiting while unclaimed), run the
    station against the CSMS it was given, and call setup again when the CSMS has been
    unreachable for ``recheck_after`` seconds, switching when the claim changed. Until
    ``quit``, SIGTERM or SIGINT; the exit code.

    ``network``: the station's own stack, for the setup calls and every station made. Its
    DHCP and NTP loops are started here, before the first setup call, and run until the
    end (the stations' own calls to them return at once, see
    :meth:`StationNetwork.keep_synchronized`), so the lease, the clock and the DNS cache
    carry over from provisioning to OCPP and across a switch of CSMS. With managed links
    the link watch probes the setup service until the first setup is done; from then on
    each station watches the links against its CSMS (:meth:`StationNetwork.watch_links`).
    ``network.json`` goes to ``data_dir`` unless the network has a ``status_dir``."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    loop = asyncio.get_running_loop()
    clock = SystemClock()

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    def waiting(exc: SetupError | OSError, wait: float) -> None:
        reason = getattr(exc, "reason", exc)
        say(f"setup: {reason}; calling again in {wait:g} s")
        if network is not None and isinstance(exc, NotReady):
            network.offline_reason = str(reason)
            network.write_status()

    background: list[asyncio.Task[Any]] = []  # the network's loops, for the whole run
    link_watch: asyncio.Task[None] | None = None  # links probed against the setup service
    if network is not None:
        if network.status_dir is None:
            network.status_dir = data_dir
        background += [
            loop.create_task(network.keep_dhcp()),
            loop.create_task(network.keep_synchronized()),
        ]
        if network.manager is not None:
            with contextlib.suppress(SetupError):  # no factory state: provision says so
                target = setup_url or load_factory(data_dir).setup_url
                link_watch = loop.create_task(network.watch_links(target, lambda: None))
        network.write_status()

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    lines = read_console(fd)
    stop_wait = loop.create_task(stop.wait())
    controller: Controller | None = None
    tasks: list[asyncio.Task[Any]] = []
    station: Station | None = None
    runner: asyncio.Task[None] | None = None
    try:
        result: SetupResult | None = None
        setup = load_setup(data_dir)
        while True:  # the first setup: wait while unclaimed, unless configured before
            attempt = loop.create_task(
                provision_until_claimed(
                    data_dir,
                    setup_url,
                    clock=clock,
                    retry_max=retry_max,
                    attempts=1 if setup is not None else None,
                    on_wait=waiting,
                    model=model.name,
                    network=network,
                )
            )
            await asyncio.wait({attempt, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not attempt.done():
                attempt.cancel()
                await asyncio.gather(attempt, return_exceptions=True)
                return 0
            try:
                result = attempt.result()
                setup = result.setup
            except (SetupError, ServerRejected, OSError, TimeoutError) as exc:
                if setup is None:
                    say(f"setup failed: {exc}")
                    return 1
                say(f"setup: {exc}; running with the previous setup")
                result = None
            break
        if link_watch is not None:  # the station watches the links against its CSMS now
            link_watch.cancel()
            await asyncio.gather(link_watch, return_exceptions=True)
            link_watch = None
        while True:
            assert setup is not None
            station = make_station(data_dir, model, setup, clock=clock)
            station.network = network
            if result is not None:
                configure_station(station, setup, result.password)
            if controller is None:
                controller = Controller(station, out, err)
                tasks.append(loop.create_task(controller.serve(lines)))
                quit_wait = loop.create_task(controller.quit.wait())
                tasks.append(quit_wait)
            controller.station = station
            runner = loop.create_task(station.run(station_url(station, setup)))
            say(
                f"{model.name} station {setup.serial_number} → {setup.csms_url}"
                f"/{setup.serial_number} (OCPP {setup.ocpp_version}, "
                f"security profile {setup.security_profile})"
            )
            switched = False
            while not switched:
                watch = loop.create_task(_offline_for(station, recheck_after))
                await asyncio.wait(
                    {runner, quit_wait, stop_wait, watch}, return_when=asyncio.FIRST_COMPLETED
                )
                if not watch.done():
                    watch.cancel()
                    await asyncio.gather(watch, return_exceptions=True)
                    break
                try:
                    result = await provision(
                        data_dir, setup_url, now=clock.now, model=model.name, network=network
                    )
                except (SetupError, ServerRejected, OSError, TimeoutError) as exc:
                    say(f"setup (CSMS unreachable): {exc}")
                    continue
                say(
                    f"setup: now {result.setup.csms_url} (OCPP {result.setup.ocpp_version}, "
                    f"security profile {result.setup.security_profile})"
                )
                setup = result.setup
                switched = True
            if not switched:
                failure = runner.exception() if runner.done() and not runner.cancelled() else None
                if failure is not None:
                    raise failure
                await asyncio.wait_for(drain(station, DRAIN_S), DRAIN_S + 1.0)
                break
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            runner = None
            station.close()
            station = None
    finally:
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        if link_watch is not None:
            background.append(link_watch)
        for task in (*tasks, stop_wait, *background):
            task.cancel()
        await asyncio.gather(*tasks, stop_wait, *background, return_exceptions=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if station is not None:
            station.close()
    say("station stopped")
    return 0
