"""``plugstream station run``: one OCPP 1.6J or 2.0.1 station, driven by a person on stdin.

The control channel opens no network port: it is the process's standard input, one
command a line (:mod:`plugstream.station.control`). End of input does not stop the
station, so that it can run as a service; ``quit``, SIGTERM and SIGINT stop it cleanly
(exit code 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TextIO
from urllib.parse import quote, urlsplit, urlunsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from plugstream.station.certificates import CSMS_ROOT
from plugstream.station.clock import Clock, ScaledClock, SystemClock
from plugstream.station.control import DRAIN_S, Controller, drain, read_console
from plugstream.station.hardware import PLUGSTREAM_7, PLUGSTREAM_22, Model
from plugstream.station.network import StationNetwork
from plugstream.station.runtime import Station
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201

__all__ = [
    "MODELS",
    "VERSIONS",
    "SetupError",
    "check_csms_url",
    "prepare_station",
    "run_station",
    "with_password",
]

VERSIONS = ("1.6", "2.0.1")

MODELS: dict[int, Model] = {7: PLUGSTREAM_7, 22: PLUGSTREAM_22}


def check_csms_url(url: str) -> str | None:
    """Why ``url`` is not a CSMS WebSocket URL, or None when it is one."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        return f"use a ws:// or wss:// URL, not {url!r}"
    if not parts.hostname:
        return f"no host in {url!r}"
    if parts.username is not None or parts.password is not None:
        return "give the password with --password, not in the URL"
    return None


def with_password(url: str, station_id: str, password: str) -> str:
    """``url`` with user info: websockets sends it as ``Authorization: Basic``."""
    parts = urlsplit(url)
    user = f"{quote(station_id, safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc}"))


class SetupError(ValueError):
    """The station cannot run as asked (a bad file, a profile it cannot use): one line
    for the person who asked, exit code 2."""


def _read_pem(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SetupError(f"cannot read the {what} {str(path)!r}: {exc.strerror}") from None


def _install_trust(station: Station, path: Path) -> None:
    """Install ``path`` (one or more PEM certificates) as CSMS roots (CSMSRootCertificate /
    1.6 CentralSystemRootCertificate)."""
    data = _read_pem(path, "CSMS root")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise SetupError(f"{str(path)!r} holds no PEM certificate") from None
    for cert in certs:
        station.certificates.add_root(CSMS_ROOT, cert.public_bytes(serialization.Encoding.PEM))


def _install_client(station: Station, cert_path: Path, key_path: Path) -> None:
    """Install the station's own certificate (leaf first) and key, if they belong together."""
    chain = _read_pem(cert_path, "station certificate")
    key_pem = _read_pem(key_path, "station key")
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
    except (ValueError, IndexError):
        raise SetupError(f"{str(cert_path)!r} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise SetupError(f"{str(key_path)!r} holds no unencrypted PEM private key") from None
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*raw) != leaf.public_key().public_bytes(*raw):
        raise SetupError(f"the key {str(key_path)!r} is not the key of {str(cert_path)!r}")
    station.certificates.set_station_certificate(chain, key_pem)


def prepare_station(
    station: Station,
    csms: str,
    *,
    password: str | None = None,
    security_profile: int | None = None,
    trust: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> None:
    """Apply the command line's security settings to ``station`` (kept in its data dir, as
    if its installer had set them): the CSMS root it trusts, its own certificate, the
    password (AuthorizationKey / SecurityCtrlr.BasicAuthPassword, not the URL) and the
    security profile, which may only be raised. :class:`SetupError` when the settings
    cannot work together (e.g. profile 2 over ws://, profile 3 without a certificate)."""
    if (client_cert is None) != (client_key is None):
        raise SetupError("give --client-cert and --client-key together")
    if trust is not None:
        _install_trust(station, trust)
    if client_cert is not None and client_key is not None:
        _install_client(station, client_cert, client_key)
    try:
        if password is not None:
            station.set_password(password)
        profile = station.security_profile if security_profile is None else security_profile
        problem = station.security_problem(profile, csms)
        if problem is not None:
            raise SetupError(problem)
        if profile > station.security_profile:
            station.set_security_profile(profile)
        elif profile < station.security_profile:
            raise SetupError(
                f"the station's security profile is {station.security_profile}; "
                f"it can only be raised, not lowered to {profile}"
            )
    except SetupError:
        raise
    except ValueError as exc:
        raise SetupError(str(exc)) from None


async def run_station(
    station_id: str,
    model: Model,
    csms: str,
    data_dir: Path,
    *,
    password: str | None = None,
    ocpp: str = "1.6",
    security_profile: int | None = None,
    trust: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    network: StationNetwork | None = None,
    time_scale: float = 1.0,
    stdin_fd: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the station until ``quit``, SIGTERM or SIGINT; the exit code (0).

    ``network``: the station's own network stack (NTP clock gate, the article's DNS
    order, managed links; its ``network.json`` goes to ``data_dir``); None: the
    operating system's resolver and routing, no time gate. ``time_scale``: the station's
    timers run that many times as fast (a :class:`ScaledClock`, as the fleet simulator's);
    1.0 is the wall clock. The network's own timing (NTP poll, DHCP) stays real.

    :class:`SetupError` before anything is sent when the security settings do not fit
    (see :func:`prepare_station`)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    loop = asyncio.get_running_loop()
    if ocpp not in VERSIONS:
        raise ValueError(f"use 1.6 or 2.0.1, not {ocpp!r}")

    if not time_scale > 0:
        raise ValueError(f"the time scale must be positive, not {time_scale}")
    clock: Clock = SystemClock() if time_scale == 1.0 else ScaledClock(time_scale)
    station = (
        Station16(station_id, model, data_dir, clock=clock)
        if ocpp == "1.6"
        else Station201(station_id, model, data_dir, clock=clock)
    )
    try:
        prepare_station(
            station,
            csms,
            password=password,
            security_profile=security_profile,
            trust=trust,
            client_cert=client_cert,
            client_key=client_key,
        )
    except SetupError:
        station.close()
        raise
    if network is not None:
        if network.status_dir is None:
            network.status_dir = data_dir
        station.network = network
    url = csms
    controller = Controller(station, out, err)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    lines = read_console(fd)
    runner = loop.create_task(station.run(url))
    control = loop.create_task(controller.serve(lines))
    quit_wait = loop.create_task(controller.quit.wait())
    stop_wait = loop.create_task(stop.wait())
    target = csms.rstrip("/") + "/" + station_id
    controller.say(f"{model.name} station {station_id} → {target} (OCPP {ocpp})")
    try:
        await asyncio.wait({runner, quit_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done() and not runner.cancelled():
            failure = runner.exception()
            if failure is not None:
                raise failure
        control.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await control
        await asyncio.wait_for(drain(station, DRAIN_S), DRAIN_S + 1.0)
    finally:
        for task in (control, quit_wait, stop_wait, runner):
            task.cancel()
        await asyncio.gather(control, quit_wait, stop_wait, runner, return_exceptions=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        station.close()
    controller.say(f"station {station_id} stopped")
    return 0
