"""Signed firmware updates on the station: download, verify, A/B install, reboot, rollback.

OCPP 2.0.1 part 2 use case L01 (Secure Firmware Update) and the 1.6 Security
Whitepaper's SignedUpdateFirmware, the same process under two names:

1. UpdateFirmware (2.0.1) / SignedUpdateFirmware (1.6): the Firmware Signing
   certificate is checked against the station's ManufacturerRootCertificate(s) at the
   station's clock before the request is accepted (2.0.1 L01.FR.21/22, 1.6
   L01.FR.23/24): ``InvalidCertificate`` and the security event
   ``InvalidFirmwareSigningCertificate`` (L01.FR.02) otherwise. A request while
   another update is under way cancels it: ``AcceptedCanceled`` (L01.FR.24 / 1.6
   L01.FR.26); once the new image is activated and being verified it cannot be
   canceled: ``Rejected`` (L01.FR.27).
2. At ``retrieveDateTime`` (``DownloadScheduled`` before it, L01.FR.13): ``Downloading``,
   an HTTPS GET (:mod:`plugstream.station.download`, the server checked against the
   CSMS roots before anything is sent) into ``firmware/download.part``. A cut transfer
   is resumed with ``Range`` after ``retryInterval``, at most ``retries`` more times;
   then ``DownloadFailed`` (L01.FR.30). A server whose certificate fails the check:
   ``DownloadFailed`` at once and the security event InvalidCsmsCertificate (1.6:
   InvalidCentralSystemCertificate), naming the download host.
3. ``Downloaded``; the signature over the entire file is verified (L01.FR.04):
   ``InvalidSignature`` and security event ``InvalidFirmwareSignature`` (L01.FR.03),
   nothing installed; else ``SignatureVerified``.
4. ``InstallScheduled`` until ``installDateTime`` (L01.FR.16) and while a transaction
   runs (L01.FR.06/34), then ``Installing``: the image is copied into the inactive
   slot (A/B, ``firmware/slot-a`` and ``slot-b``); ``InstallRebooting`` (L01.FR.15),
   ``boot.json`` switched atomically to the new slot with ``pending_verification``,
   and a reboot: the connection closes, BootNotification goes out again with the new
   ``firmwareVersion``.
5. The new firmware's first Accepted BootNotification confirms it: ``Installed`` sent
   by the new firmware (L01.FR.28/32 option a) and the security event
   ``FirmwareUpdated`` (L01.FR.31). No Accepted BootNotification within the rollback
   timeout (1.6 key ``FirmwareRollbackTimeout``, 2.0.1 ``FirmwareCtrlr.RollbackTimeout``,
   seconds of station time): ``boot.json`` goes back to the previous slot, the station
   reboots into it and reports ``InstallVerificationFailed`` (L01.FR.29; TC_L_08_CS
   accepts it and recommends falling back to the previous firmware) once connected.

A 1.6 station with signed updates answers the unsigned UpdateFirmware.req with
CALLERROR NotSupported (whitepaper L01.FR.20). TriggerMessage(FirmwareStatusNotification)
gets the last status, or Idle after Installed (2.0.1 L01.FR.25/26):
:meth:`FirmwareUpdater.send_current_status`.

Every step is durable across ``kill -9``: ``update.json`` (the request and how far it
got), the partial download, ``boot.json`` and ``status.json`` (the last status and the
ones not yet delivered). Statuses are not transaction messages: while offline only the
latest is kept and sent when the station is back (L01.FR.01 describes states, not a
history). Every status carries the request's ``requestId`` (L01.FR.10/20).

The images are simulated, the cryptography is not: an image is a JSON header line
(``{"plugstream_firmware": 1, "version": ..., "network": ...}``) and payload bytes
(:func:`build_image`). ``"network": false`` boots but opens no connection -- the
station's connection loop asks :attr:`FirmwareUpdater.network` -- which is how a test
makes an update that cannot reach the CSMS and must roll back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization

from plugstream.ocpp import ErrorCode, OcppError, OcppVersion, after, on, v16, v201
from plugstream.ocpp.datetimes import parse_time
from plugstream.pki.firmware import (
    FirmwareVerificationError,
    InvalidCertificate,
    verify_firmware,
    verify_signing_certificate,
)
from plugstream.pki.tls import ServerRejected
from plugstream.station.certificates import CSMS_ROOT, MANUFACTURER_ROOT
from plugstream.station.config import Key16, PathAsText, VariableDef, atomic_write_json
from plugstream.station.download import DownloadError, fetch
from plugstream.station.ports import StationPort
from plugstream.station.wakeups import Signal

__all__ = [
    "DEFAULT_ROLLBACK_TIMEOUT_S",
    "FIRMWARE_KEYS16",
    "FIRMWARE_VARIABLES201",
    "FirmwareHandlers16",
    "FirmwareHandlers201",
    "FirmwareRequest",
    "FirmwareUpdater",
    "ImageHeader",
    "build_image",
    "read_header",
]

log = logging.getLogger("plugstream.station.firmware")

DEFAULT_ROLLBACK_TIMEOUT_S: Final = 600
DEFAULT_RETRIES: Final = 3  # when the request does not say (the station decides)
DEFAULT_RETRY_INTERVAL_S: Final = 60
ROLLBACK_KEY16: Final = "FirmwareRollbackTimeout"
ROLLBACK_COMPONENT: Final = "FirmwareCtrlr"
ROLLBACK_VARIABLE: Final = "RollbackTimeout"
BUSY_POLL_S: Final = 2.0  # how often a pending install looks whether charging ended
OFFLINE_POLL_S: Final = 1.0  # wall seconds between looks for a connection to report on
IMAGE_MAGIC: Final = "plugstream_firmware"

FIRMWARE_KEYS16: Final = (
    Key16(ROLLBACK_KEY16, "integer", "RW", str(DEFAULT_ROLLBACK_TIMEOUT_S), min=1, max=86_400),
)
"""1.6 vendor key: seconds of station time a new firmware has to get an Accepted
BootNotification before the station falls back to the previous one."""

FIRMWARE_VARIABLES201: Final = (
    VariableDef(
        ROLLBACK_COMPONENT,
        ROLLBACK_VARIABLE,
        "integer",
        str(DEFAULT_ROLLBACK_TIMEOUT_S),
        unit="s",
        min_limit=1,
        max_limit=86_400,
    ),
)
"""2.0.1 vendor variable FirmwareCtrlr.RollbackTimeout, the same setting."""


# --------------------------------------------------------------------------- images


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What a simulated firmware image says about itself."""

    version: str
    network: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "network": self.network}


def build_image(
    version: str, *, network: bool = True, size: int = 64 * 1024, seed: int | None = None
) -> bytes:
    """A firmware image of ``size`` bytes (at least the header): a JSON header line giving
    ``version`` and whether it can open network connections, then payload bytes."""
    header = json.dumps({IMAGE_MAGIC: 1, "version": version, "network": network}).encode() + b"\n"
    rng = random.Random(seed)
    return header + rng.randbytes(max(0, size - len(header)))


def read_header(image: bytes | Path) -> ImageHeader | None:
    """The header of an image (bytes or file); None when it is not a PlugStream image."""
    if isinstance(image, Path):
        try:
            with image.open("rb") as f:
                first = f.readline(4096)
        except OSError:
            return None
    else:
        first = image[:4096].split(b"\n", 1)[0]
    try:
        data = json.loads(first)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get(IMAGE_MAGIC) != 1:
        return None
    version = data.get("version")
    if not isinstance(version, str) or not version or len(version) > 50:
        return None
    return ImageHeader(version, bool(data.get("network", True)))


# --------------------------------------------------------------------------- the request


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return parse_time(value)


@dataclass(frozen=True, slots=True)
class FirmwareRequest:
    """An UpdateFirmwareRequest / SignedUpdateFirmware.req, as the station keeps it."""

    request_id: int
    location: str
    retrieve_at: datetime
    install_at: datetime | None
    signing_certificate: str
    signature: str
    retries: int
    retry_interval: int

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> FirmwareRequest:
        fw = payload["firmware"]
        retrieve_at = _parse_time(fw.get("retrieveDateTime"))
        if retrieve_at is None:
            raise ValueError("retrieveDateTime is required")
        return cls(
            request_id=int(payload["requestId"]),
            location=str(fw["location"]),
            retrieve_at=retrieve_at,
            install_at=_parse_time(fw.get("installDateTime")),
            signing_certificate=str(fw.get("signingCertificate", "")),
            signature=str(fw.get("signature", "")),
            retries=max(0, int(payload.get("retries", DEFAULT_RETRIES))),
            retry_interval=max(0, int(payload.get("retryInterval", DEFAULT_RETRY_INTERVAL_S))),
        )

    def to_json(self) -> dict[str, Any]:
        firmware: dict[str, Any] = {
            "location": self.location,
            "retrieveDateTime": self.retrieve_at.isoformat(),
            "signingCertificate": self.signing_certificate,
            "signature": self.signature,
        }
        if self.install_at is not None:
            firmware["installDateTime"] = self.install_at.isoformat()
        return {
            "requestId": self.request_id,
            "firmware": firmware,
            "retries": self.retries,
            "retryInterval": self.retry_interval,
        }


# --------------------------------------------------------------------------- files


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("%s is unreadable: ignored", path)
        return None
    return data if isinstance(data, dict) else None


def _copy_durably(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` so that a crash leaves the old ``dest`` or the whole new one."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    with src.open("rb") as fin, tmp.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dest)


SLOTS: Final = ("a", "b")


@dataclass(slots=True)
class BootState:
    """``boot.json``: which slot boots, which one to fall back to, and whether the active
    one still has to prove itself (an Accepted BootNotification before ``verify_deadline``)."""

    active: str
    slots: dict[str, dict[str, Any]]
    previous: str | None = None
    pending_verification: bool = False
    request_id: int | None = None
    verify_deadline: datetime | None = None

    @classmethod
    def factory(cls, version: str) -> BootState:
        return cls("a", {"a": ImageHeader(version).to_json()})

    @classmethod
    def from_json(cls, data: Mapping[str, Any], factory_version: str) -> BootState:
        try:
            active = str(data["active"])
            slots = {str(k): dict(v) for k, v in dict(data["slots"]).items()}
            if active not in slots:
                raise KeyError(active)
            previous = data.get("previous")
            return cls(
                active,
                slots,
                previous=str(previous) if previous in slots else None,
                pending_verification=bool(data.get("pending_verification")),
                request_id=data.get("request_id"),
                verify_deadline=_parse_time(data.get("verify_deadline")),
            )
        except (KeyError, TypeError, ValueError):
            log.warning("boot.json is unreadable: booting the factory firmware")
            return cls.factory(factory_version)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "active": self.active,
            "previous": self.previous,
            "slots": self.slots,
            "pending_verification": self.pending_verification,
            "request_id": self.request_id,
            "verify_deadline": None
            if self.verify_deadline is None
            else self.verify_deadline.isoformat(),
        }

    @property
    def inactive(self) -> str:
        return SLOTS[1] if self.active == SLOTS[0] else SLOTS[0]

    def header(self, slot: str | None = None) -> ImageHeader:
        info = self.slots.get(self.active if slot is None else slot, {})
        return ImageHeader(str(info.get("version", "")), bool(info.get("network", True)))


# --------------------------------------------------------------------------- the updater


class FirmwareUpdater:
    """The firmware of one station: what it runs, and the update in progress.

    Created by the station (:meth:`for_station`); the handlers call :meth:`request` /
    :meth:`start_requested`, the station's boot calls :meth:`on_boot_accepted`, its
    connection loop asks :attr:`network`, and :meth:`run` (one task next to the
    station's own loops) delivers the statuses, resumes an interrupted update and
    watches a new firmware's deadline.
    """

    directory: PathAsText[Path] = PathAsText()

    def __init__(
        self,
        station: StationPort,
        *,
        factory_version: str,
        rollback_timeout: Callable[[], float],
        busy: Callable[[], bool],
        download_timeout: float = 30.0,
    ) -> None:
        self.station = station
        self.factory_version = factory_version
        self.rollback_timeout = rollback_timeout
        self.busy = busy
        self.download_timeout = download_timeout
        self.directory = station.data_dir / "firmware"
        v16 = station.ocpp_version is OcppVersion.V16
        self.status_action = (
            "SignedFirmwareStatusNotification" if v16 else "FirmwareStatusNotification"
        )
        self.server_event = "InvalidCentralSystemCertificate" if v16 else "InvalidCsmsCertificate"
        data = _read_json(self.boot_path)
        self.boot = (
            BootState.factory(factory_version)
            if data is None
            else BootState.from_json(data, factory_version)
        )
        status = _read_json(self.status_path) or {}
        self.last_status: dict[str, Any] | None = status.get("last")
        self._outbox: list[dict[str, Any]] = [
            dict(item) for item in status.get("outbox", []) if isinstance(item, dict)
        ]
        self._job_task: asyncio.Task[None] | None = None
        self._wake: Signal | None = None  # run()'s wake-up, while it runs
        self._task: asyncio.Task[None] | None = None  # run(), while there is work
        self._active = False  # the station runs: work starts run() (start() .. stop())
        self._resumed = False  # an update interrupted by a restart was looked for
        self._after: list[tuple[str, str]] = []  # security events of the last request
        self._start = False  # a request was accepted: start its job in the @after hook
        self._cancel: asyncio.Task[None] | None = None

    @classmethod
    def for_station(cls, station: StationPort, factory_version: str) -> FirmwareUpdater:
        """The updater of a station (1.6 or 2.0.1), reading its rollback timeout from
        the station's configuration (see :data:`FIRMWARE_KEYS16`, :data:`FIRMWARE_VARIABLES201`)."""
        config: Any = station.config
        if station.ocpp_version is OcppVersion.V16:

            def timeout() -> float:
                return float(config.get_int(ROLLBACK_KEY16))
        else:

            def timeout() -> float:
                return float(config.get_int(ROLLBACK_COMPONENT, ROLLBACK_VARIABLE))

        def busy() -> bool:
            return getattr(station, "transaction", None) is not None

        return cls(station, factory_version=factory_version, rollback_timeout=timeout, busy=busy)

    # -- paths

    @property
    def boot_path(self) -> Path:
        return self.directory / "boot.json"

    @property
    def update_path(self) -> Path:
        return self.directory / "update.json"

    @property
    def status_path(self) -> Path:
        return self.directory / "status.json"

    @property
    def partial_path(self) -> Path:
        return self.directory / "download.part"

    def slot_path(self, slot: str) -> Path:
        return self.directory / f"slot-{slot}"

    # -- what the station runs

    @property
    def version(self) -> str:
        """The running firmware's version: BootNotification's firmwareVersion."""
        return self.boot.header().version or self.factory_version

    @property
    def network(self) -> bool:
        """Whether the running firmware can open network connections."""
        return self.boot.header().network

    def _save_boot(self) -> None:
        atomic_write_json(self.boot_path, self.boot.to_json())
        self._poke()

    def _load_update(self) -> dict[str, Any] | None:
        return _read_json(self.update_path)

    def _save_update(self, update: dict[str, Any]) -> None:
        atomic_write_json(self.update_path, update)

    def _clear_update(self) -> None:
        self.update_path.unlink(missing_ok=True)
        self.partial_path.unlink(missing_ok=True)

    # -- statuses

    def _save_status(self) -> None:
        atomic_write_json(self.status_path, {"last": self.last_status, "outbox": self._outbox})

    def report(self, status: str, request_id: int | None) -> None:
        """Enter ``status`` (L01.FR.01): sent at once when online; offline only the latest
        waits for the connection."""
        payload: dict[str, Any] = {"status": status}
        if request_id is not None:
            payload["requestId"] = request_id
        log.info("%s firmware status %s (request %s)", self.station.station_id, status, request_id)
        self.last_status = payload
        if self.station.online:
            self._outbox.append(payload)
        else:
            self._outbox = [payload]
        self._save_status()
        self._poke()

    async def drain(self, timeout: float) -> bool:
        """Wait (wall seconds) until every status was delivered; whether they were."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._outbox and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return not self._outbox

    async def send_current_status(self) -> None:
        """TriggerMessage(FirmwareStatusNotification): the last status sent, or Idle after
        Installed or when there was none (2.0.1 L01.FR.25/26, 1.6 L01.FR.28/29)."""
        last = self.last_status
        payload = (
            {"status": "Idle"} if last is None or last.get("status") == "Installed" else dict(last)
        )
        with contextlib.suppress(OcppError):
            await self.station.call(self.status_action, payload)

    async def _send_first(self) -> None:
        """Send the oldest undelivered status; dropped once answered, or refused on a
        live connection (a CALLERROR will not turn into a CALLRESULT by repeating it)."""
        endpoint = self.station.endpoint
        item = self._outbox[0]
        try:
            await self.station.call(self.status_action, item)
        except OcppError as exc:
            if endpoint is not self.station.endpoint:
                return  # the connection went: sent again on the next one
            log.warning("%s not accepted: %s", self.status_action, exc)
        if self._outbox and self._outbox[0] is item:
            self._outbox.pop(0)
            self._save_status()

    # -- the request (the handlers)

    def request(self, payload: Mapping[str, Any]) -> str:
        """Answer an UpdateFirmware / SignedUpdateFirmware; the job starts in the @after hook."""
        self._start = False
        self._after = []
        if self.boot.pending_verification:
            return "Rejected"  # the new firmware is active and on probation: cannot cancel
        try:
            request = FirmwareRequest.from_payload(payload)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("firmware request refused: %s", exc)
            return "Rejected"
        roots = [
            c.public_bytes(serialization.Encoding.PEM)
            for c in self.station.certificates.roots(MANUFACTURER_ROOT)
        ]
        try:
            verify_signing_certificate(request.signing_certificate, roots, now=self.station.now())
        except InvalidCertificate as exc:  # L01.FR.21/22 (1.6: L01.FR.23/24)
            self._after.append((exc.security_event, str(exc)[:255]))
            return "InvalidCertificate"
        running = self._load_update() is not None or (
            self._job_task is not None and not self._job_task.done()
        )
        if self._job_task is not None and not self._job_task.done():
            self._job_task.cancel()
            self._cancel = self._job_task
        self._job_task = None
        self.partial_path.unlink(missing_ok=True)
        self._save_update({"request": request.to_json(), "phase": "download", "failures": 0})
        self._start = True
        return "AcceptedCanceled" if running else "Accepted"

    async def start_requested(self) -> None:
        """After the answer: the security events of a refusal, or the new job."""
        for kind, info in self._after:
            self.station.security_event(kind, info)
        self._after = []
        if self._cancel is not None:
            cancel, self._cancel = self._cancel, None
            await asyncio.gather(cancel, return_exceptions=True)
            self.partial_path.unlink(missing_ok=True)  # the canceled update's bytes
        if self._start:
            self._start = False
            self._start_job()

    def _start_job(self) -> None:
        if self._job_task is None or self._job_task.done():
            self._job_task = asyncio.get_running_loop().create_task(self._job())

    # -- the background task

    def start(self) -> None:
        """The station runs: resume an interrupted update, deliver the statuses waiting;
        from now on work starts :meth:`run` (a task only while there is work: a fleet's
        thousands of stations have none nearly always)."""
        self._active = True
        self._resumed = False
        self._poke()

    async def stop(self) -> None:
        """The station stops: the task and an update under way with it."""
        self._active = False
        tasks = [task for task in (self._task, self._job_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()
        elif self._active and (self._task is None or self._task.done()):
            task = self._task = asyncio.get_running_loop().create_task(self.run())
            task.add_done_callback(self._run_done)

    def _run_done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:  # a done task keeps its coroutine: let both go
            self._task = None

    async def run(self) -> None:
        """Deliver statuses, resume an interrupted update, watch a new firmware's
        deadline; returns when none of it is left (:meth:`_poke` starts it again)."""
        wake = self._wake = Signal()
        if not self._resumed:
            self._resumed = True
            update = self._load_update()
            if update is not None and update.get("phase") != "activating":
                self._start_job()
        try:
            while True:
                wake.clear()
                if self._outbox and self.station.online:
                    await self._send_first()
                    continue
                verify_in: float | None = None  # station time
                boot = self.boot
                if boot.pending_verification and boot.verify_deadline is not None:
                    verify_in = (boot.verify_deadline - self.station.now()).total_seconds()
                    if verify_in <= 0:
                        await self._roll_back()
                        continue
                # offline: look again soon, in wall time (a plain reconnect wakes nothing)
                poll = OFFLINE_POLL_S if self._outbox else None
                if verify_in is None and poll is None:
                    return  # nothing to watch: a report, a boot or a job pokes it again
                with contextlib.suppress(TimeoutError):
                    async with self.station.clock.timeout(verify_in), asyncio.timeout(poll):
                        await wake.wait()
        finally:
            self._wake = None

    async def _roll_back(self) -> None:
        """The new firmware did not get an Accepted BootNotification in time: boot the
        previous slot again and report InstallVerificationFailed from it (L01.FR.29)."""
        boot = self.boot
        failed = boot.header()
        request_id = boot.request_id
        if boot.previous is None:  # pragma: no cover - a switch always records previous
            boot.pending_verification = False
            self._save_boot()
            return
        log.warning(
            "%s: firmware %s did not reach the CSMS in time: rolling back",
            self.station.station_id,
            failed.version,
        )
        boot.active, boot.previous = boot.previous, boot.active
        boot.pending_verification = False
        boot.verify_deadline = None
        self._save_boot()
        self._clear_update()
        self.report("InstallVerificationFailed", request_id)
        await self._reboot()

    def on_boot_accepted(self) -> None:
        """The station's BootNotification was Accepted: a new firmware has proved itself
        (Installed, sent by it, L01.FR.32 a; FirmwareUpdated, L01.FR.31)."""
        boot = self.boot
        if boot.pending_verification:
            boot.pending_verification = False
            boot.verify_deadline = None
            self._save_boot()
            self._clear_update()
            self.report("Installed", boot.request_id)
            self.station.security_event(
                "FirmwareUpdated", f"firmware {self.version} installed (request {boot.request_id})"
            )
        else:
            self._poke()

    async def _reboot(self) -> None:
        """Boot what ``boot.json`` says: close the connection, BootNotification again
        (2.0.1: with reason FirmwareUpdate)."""
        self.station.request_boot("FirmwareUpdate")
        await self.station.disconnect()

    # -- the job

    async def _job(self) -> None:
        update = self._load_update()
        if update is None:
            return
        try:
            request = FirmwareRequest.from_payload(update["request"])
        except (KeyError, TypeError, ValueError):
            log.warning("update.json unreadable: update dropped")
            self._clear_update()
            return
        rid = request.request_id
        try:
            if update.get("phase") == "download":
                if not await self._download(request, update):
                    return
                update["phase"] = "verified"
                self._save_update(update)
            if update.get("phase") == "verified":
                if not await self._install(request):
                    return
                update["phase"] = "installed"
                self._save_update(update)
            if update.get("phase") == "installed":
                await self._activate(request, update)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("firmware update %s failed", rid)
            self._clear_update()
            self.report("InstallationFailed", rid)

    async def _sleep_until(self, when: datetime) -> None:
        left = (when - self.station.now()).total_seconds()
        if left > 0:
            await self.station.clock.sleep(left)

    async def _download(self, request: FirmwareRequest, update: dict[str, Any]) -> bool:
        rid = request.request_id
        if request.retrieve_at > self.station.now():
            self.report("DownloadScheduled", rid)  # L01.FR.13
            await self._sleep_until(request.retrieve_at)
        if (
            urlsplit(request.location).scheme.lower() != "https"
            and self.station.security_profile >= 2
        ):
            # the article: firmware comes over HTTPS with the server verified
            log.warning("firmware location %s is not https: refused", request.location)
            self._clear_update()
            self.report("DownloadFailed", rid)
            return False
        attempts = 1 + request.retries
        while True:
            self.report("Downloading", rid)  # once per attempt (L01.FR.30, remark)
            try:
                await fetch(
                    request.location,
                    self.partial_path,
                    roots=lambda: self.station.certificates.roots(CSMS_ROOT),
                    now=self.station.now,
                    timeout=self.download_timeout,
                )
                break
            except ServerRejected as exc:
                self.station.security_event(self.server_event, str(exc)[:255])
                self._clear_update()
                self.report("DownloadFailed", rid)
                return False
            except DownloadError as exc:
                update["failures"] = int(update.get("failures", 0)) + 1
                self._save_update(update)
                have = self.partial_path.stat().st_size if self.partial_path.exists() else 0
                log.info(
                    "firmware download attempt %d failed (%d bytes kept): %s",
                    update["failures"],
                    have,
                    exc,
                )
                if update["failures"] >= attempts:
                    self._clear_update()
                    self.report("DownloadFailed", rid)  # L01.FR.30
                    return False
                await self.station.clock.sleep(request.retry_interval)
        self.report("Downloaded", rid)
        roots = [
            c.public_bytes(serialization.Encoding.PEM)
            for c in self.station.certificates.roots(MANUFACTURER_ROOT)
        ]
        try:  # L01.FR.04: over the entire file; off the event loop (an image may be large)
            await asyncio.to_thread(
                verify_firmware,
                self.partial_path,
                request.signature,
                request.signing_certificate,
                roots,
                now=self.station.now(),
            )
        except FirmwareVerificationError as exc:
            self._clear_update()
            self.report(
                "InvalidSignature", rid
            )  # L01.FR.03: also when the signer no longer verifies
            self.station.security_event("InvalidFirmwareSignature", str(exc)[:255])
            return False
        self.report("SignatureVerified", rid)
        return True

    async def _wait_idle(self, request_id: int, *, announce: bool) -> None:
        """Until no transaction runs (L01.FR.06/33), saying InstallScheduled if asked."""
        if self.busy():
            if announce:
                self.report("InstallScheduled", request_id)  # L01.FR.34
            while self.busy():
                await self.station.clock.sleep(BUSY_POLL_S)

    async def _install(self, request: FirmwareRequest) -> bool:
        rid = request.request_id
        scheduled = False
        if request.install_at is not None and request.install_at > self.station.now():
            self.report("InstallScheduled", rid)  # L01.FR.16
            scheduled = True
            await self._sleep_until(request.install_at)
        await self._wait_idle(rid, announce=not scheduled)
        self.report("Installing", rid)
        header = read_header(self.partial_path)
        if header is None:  # signed, but not an image this station can boot
            self._clear_update()
            self.report("InstallVerificationFailed", rid)
            return False
        slot = self.boot.inactive
        await asyncio.to_thread(_copy_durably, self.partial_path, self.slot_path(slot))
        self.boot.slots[slot] = header.to_json()
        if self.boot.previous == slot:
            self.boot.previous = None  # its old image is gone
        self._save_boot()
        return True

    async def _activate(self, request: FirmwareRequest, update: dict[str, Any]) -> None:
        rid = request.request_id
        await self._wait_idle(rid, announce=False)
        self.report("InstallRebooting", rid)  # L01.FR.15, before the reboot
        await self.drain(self.station.call_timeout)
        boot = self.boot
        boot.previous, boot.active = boot.active, boot.inactive
        boot.pending_verification = True
        boot.request_id = rid
        boot.verify_deadline = self.station.now() + timedelta(seconds=self.rollback_timeout())
        self._save_boot()
        update["phase"] = "activating"
        self._save_update(update)
        self.partial_path.unlink(missing_ok=True)
        log.info("%s: rebooting into firmware %s", self.station.station_id, self.version)
        await self._reboot()


# --------------------------------------------------------------------------- handlers


class _WithFirmware(Protocol):
    """A station with its firmware updater: what the handlers below need."""

    @property
    def firmware(self) -> FirmwareUpdater: ...


class FirmwareHandlers16:
    """OCPP 1.6 security extension: SignedUpdateFirmware."""

    station: _WithFirmware

    @on(v16.Action.UpdateFirmware)
    def update_firmware(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Whitepaper L01.FR.20: a station with signed updates refuses the unsigned kind."""
        raise OcppError(ErrorCode.NotSupported, "use SignedUpdateFirmware")

    @on(v16.Action.SignedUpdateFirmware)
    def signed_update_firmware(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.station.firmware.request(payload)}

    @after(v16.Action.SignedUpdateFirmware)
    async def signed_update_firmware_done(self, payload: dict[str, Any]) -> None:
        await self.station.firmware.start_requested()


class FirmwareHandlers201:
    """OCPP 2.0.1 L01: UpdateFirmware."""

    station: _WithFirmware

    @on(v201.Action.UpdateFirmware)
    def update_firmware(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.station.firmware.request(payload)}

    @after(v201.Action.UpdateFirmware)
    async def update_firmware_done(self, payload: dict[str, Any]) -> None:
        await self.station.firmware.start_requested()
