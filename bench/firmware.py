"""A signed firmware rollout, measured: upload and signing, N stations to Installed, and curl.

What it measures, on loopback: PlugStream Cloud (``plugstream cloud serve`` in its own
process, SQLite in a temporary directory, https/wss with a server certificate for
127.0.0.1 from a fresh ``plugstream pki`` directory, ``--pki`` to sign firmware) and, in
this process, ``--stations`` (20) real :class:`~plugstream.station.station201.Station201`
objects at security profile 2 (TLS, HTTP Basic password, registered through
``PUT /api/v1/stations/{id}``) trusting the PKI's CSMS root (TLS) and Manufacturer root
(firmware signatures). Then:

* **upload**: a ``--size-mb`` (20) image (:func:`~plugstream.station.firmware.build_image`)
  streamed to ``POST /api/v1/firmware``: stored, hashed and signed with the PKI's
  Firmware Signing key; the wall time until the 201;
* **rollout**: ``POST /api/v1/firmware/{id}/rollouts`` to every station; the bench polls
  ``GET /api/v1/rollouts/{id}`` until all are ``Installed`` (download over https, signature
  check, A/B install, reboot, Installed from the new firmware; L01, TC_L_01_CS) or
  ``--timeout``. Figures: wall time to all Installed; each station's download time, taken
  at the station (its own log of the statuses Downloading -> Downloaded, L01.FR.01:
  connect, TLS, the station's own server check, GET, body to disk, fsync) and its MB/s;
  the cloud's CPU seconds over the rollout and over the upload (``/proc/PID/stat``
  utime + stime) and its peak RSS (``/proc/PID/status`` VmHWM, also read after each
  step: start, upload, boot, rollout, peer);
* **peer**: ``curl`` (``httpx`` when there is no curl) fetches the same image URL from the
  same server, ``--stations`` copies at once, each into its own file; its own
  ``time_total`` per transfer;
* **resume**: once, the station's download client (:func:`plugstream.station.download.fetch`)
  is handed a file holding the first half of the image and must fetch only the rest
  (``Range``, 206) into a byte-identical image.

The cloud's CPU over the rollout includes the stations' reconnections after the reboot:
each one's HTTP Basic password is checked with Argon2 (argon2-cffi defaults: 64 MiB,
about 0.2 CPU s each), which also sets the cloud's peak RSS (up to one 64 MiB check per
worker thread at once). ``boot_cloud_cpu_s`` (the first connection of every station) shows
that share; curl's downloads need no password.

``ratio`` = our stations' mean download time / curl's mean download time (1.0 = as fast as
curl; our stations all share this one Python process and event loop, curl runs one
process per transfer). Goal: every station Installed, and the ratio under 2.

Run it from the repository root:

    python bench/firmware.py                       # 20 stations, 20 MB image
    python bench/firmware.py --stations 2 --size-mb 1

Last line: one JSON object. The cloud is stopped by its PID; the temporary directory is
deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import random
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from cryptography import x509

from plugstream.pki.keystore import PKIStore
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certificates import CSMS_ROOT, MANUFACTURER_ROOT
from plugstream.station.download import fetch
from plugstream.station.firmware import build_image
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station201 import Station201
from procs import (
    CLOUD_READY,
    HOST,
    BenchError,
    cloud_argv,
    cpu_seconds,
    free_port,
    launch,
    peak_rss_kb,
    print_summary,
    stop_pid,
    tail,
)

API_TOKEN: Final = "firmware-bench-token-0123456789"
PASSWORD: Final = "firmware-bench-password"  # 16..40 characters (A00.FR.205)
VERSION: Final = "2.0.0"
FILENAME: Final = "plugstream-2.0.0.bin"
MB: Final = 1 << 20
UPLOAD_CHUNK: Final = 1 << 20
GOAL_RATIO: Final = 2.0

STOP_TIMEOUT: Final = 30.0
HTTP_TIMEOUT: Final = 120.0
POLL: Final = 0.5
STATUS_LOG: Final = "%s firmware status %s (request %s)"


# --- the cloud ----------------------------------------------------------------------


@dataclass(slots=True)
class Cloud:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    root: Path  # the CSMS root (PEM) its server certificate chains to

    @property
    def base(self) -> str:
        return f"https://{HOST}:{self.port}"

    def tail(self, lines: int = 20) -> str:
        return tail(self.log, lines)

    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root))


def make_pki(workdir: Path) -> tuple[Path, Path, Path]:
    """A fresh PKI: (its directory, server cert for 127.0.0.1, its key)."""
    folder = workdir / "pki"
    keystore = PKIStore(folder)
    keystore.init("PlugStream Bench CPO")
    cert, key = keystore.issue_server("localhost", ips=[HOST])
    return folder, cert, key


def start_cloud(workdir: Path) -> Cloud:
    pki, cert, key = make_pki(workdir)
    port = free_port()
    log = workdir / "cloud.log"
    argv = cloud_argv(port, workdir / "cloud.db")
    argv += ["--api-token", API_TOKEN, "--tls-cert", str(cert), "--tls-key", str(key)]
    argv += ["--pki", str(pki), "--firmware-dir", str(workdir / "firmware")]
    argv += ["--public-url", f"https://{HOST}:{port}"]
    proc = launch(argv, log, CLOUD_READY, "the cloud", stop_timeout=STOP_TIMEOUT)
    return Cloud(port, proc, log, pki / "csms-root.pem")


# --- the station side's timing ------------------------------------------------------


class StatusTimes(logging.Handler):
    """When each station entered each firmware status, by its own log (monotonic s)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: dict[str, list[tuple[str, float]]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg != STATUS_LOG or not isinstance(record.args, tuple):
            return
        sid, status = str(record.args[0]), str(record.args[1])
        self.seen.setdefault(sid, []).append((status, time.monotonic()))

    def download_s(self, sid: str) -> float | None:
        """From the last Downloading to Downloaded: the attempt that got the image."""
        began: float | None = None
        for status, at in self.seen.get(sid, []):
            if status == "Downloading":
                began = at
            elif status == "Downloaded" and began is not None:
                return at - began
        return None


@contextlib.contextmanager
def status_times() -> Iterator[StatusTimes]:
    logger = logging.getLogger("plugstream.station.firmware")
    handler = StatusTimes()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# --- figures -----------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    stations: int
    size: int
    upload_s: float = 0.0
    upload_cloud_cpu_s: float = 0.0
    boot_s: float = 0.0
    boot_cloud_cpu_s: float = 0.0
    rollout_s: float = 0.0
    installed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    station_download_s: list[float] = field(default_factory=list)
    rollout_cloud_cpu_s: float = 0.0
    cloud_peak_rss_kb: int = 0
    cloud_hwm_kb: dict[str, int] = field(default_factory=dict)  # VmHWM after each step
    peer: str = ""
    peer_download_s: list[float] = field(default_factory=list)
    peer_wall_s: float = 0.0
    peer_cloud_cpu_s: float = 0.0
    resumed: bool | None = None

    def mbps(self, seconds: list[float]) -> list[float]:
        return [self.size / MB / s for s in seconds if s > 0]

    @property
    def ratio(self) -> float | None:
        if not self.station_download_s or not self.peer_download_s:
            return None
        peer = statistics.fmean(self.peer_download_s)
        return statistics.fmean(self.station_download_s) / peer if peer > 0 else None


# --- the steps ---------------------------------------------------------------------


async def upload(operator: httpx.AsyncClient, image: bytes) -> dict[str, Any]:
    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(image), UPLOAD_CHUNK):
            yield image[i : i + UPLOAD_CHUNK]

    answer = await operator.post(
        "/firmware",
        params={"version": VERSION, "filename": FILENAME},
        content=body(),
        headers={"Content-Type": "application/octet-stream"},
    )
    if answer.status_code != 201:
        raise BenchError(f"upload: {answer.status_code} {answer.text[:300]}")
    shown: dict[str, Any] = answer.json()
    return shown


def new_station(sid: str, data_dir: Path, cloud: Cloud, seed: int) -> Station201:
    """A Station201 at security profile 2 trusting the PKI's CSMS and Manufacturer roots."""
    backoff = ReconnectBackoff(0.2, 0.1, 1, random.Random(seed))
    station = Station201(sid, PLUGSTREAM_7, data_dir, backoff=backoff, call_timeout=10.0)
    station.certificates.add_root(CSMS_ROOT, cloud.root.read_bytes())
    pki = cloud.root.parent
    station.certificates.add_root(MANUFACTURER_ROOT, (pki / "manufacturer-root.pem").read_bytes())
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    return station


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(POLL)
    raise BenchError(f"not within {timeout:.0f} s: {what}")


async def peer_downloads(
    url: str, cloud: Cloud, n: int, folder: Path, timeout: float
) -> tuple[str, list[float]]:
    """``n`` concurrent downloads of ``url`` by curl (else httpx), each to its own file:
    (the peer's name, each transfer's seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    curl = shutil.which("curl")
    if curl is not None:

        async def one_curl(i: int) -> float:
            proc = await asyncio.create_subprocess_exec(
                curl,
                "--silent",
                "--show-error",
                "--fail",
                "--cacert",
                str(cloud.root),
                "--max-time",
                f"{timeout:.0f}",
                "--output",
                str(folder / f"curl-{i}.bin"),
                "--write-out",
                "%{time_total}",
                url,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), timeout + 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
                raise BenchError("curl did not finish") from None
            if proc.returncode != 0:
                raise BenchError(f"curl exited {proc.returncode}: {err.decode()[:300]}")
            return float(out.decode().strip())

        times = await asyncio.gather(*(one_curl(i) for i in range(n)))
        return "curl", list(times)

    async def one_httpx(i: int) -> float:
        began = time.monotonic()
        async with (
            httpx.AsyncClient(verify=cloud.trusting(), timeout=timeout) as client,
            client.stream("GET", url) as answer,
        ):
            answer.raise_for_status()
            with (folder / f"httpx-{i}.bin").open("wb") as out:
                async for chunk in answer.aiter_bytes(1 << 16):
                    out.write(chunk)
        return time.monotonic() - began

    return "httpx", list(await asyncio.gather(*(one_httpx(i) for i in range(n))))


async def resumes(url: str, cloud: Cloud, image: bytes, folder: Path, timeout: float) -> bool:
    """The station's download client, given the first half, fetches only the rest."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / "download.part"
    half = len(image) // 2
    dest.write_bytes(image[:half])
    roots = x509.load_pem_x509_certificates(cloud.root.read_bytes())
    got = await asyncio.wait_for(
        fetch(url, dest, roots=lambda: roots, now=lambda: datetime.now(UTC), timeout=30.0),
        timeout,
    )
    ok = got.resumed_from == half and dest.read_bytes() == image
    dest.unlink(missing_ok=True)
    return ok


async def run(args: argparse.Namespace, cloud: Cloud, workdir: Path) -> Figures:
    size = int(args.size_mb * MB)
    figures = Figures(args.stations, size)
    image = build_image(VERSION, size=size, seed=7)
    pid = cloud.proc.pid
    async with httpx.AsyncClient(
        base_url=f"{cloud.base}/api/v1",
        verify=cloud.trusting(),
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=HTTP_TIMEOUT,
    ) as operator:
        figures.cloud_hwm_kb["start"] = peak_rss_kb(pid)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        shown = await upload(operator, image)
        figures.upload_s = time.monotonic() - t0
        figures.upload_cloud_cpu_s = cpu_seconds(pid) - cpu0
        figures.cloud_hwm_kb["upload"] = peak_rss_kb(pid)
        print(
            f"upload + sign of {size / MB:g} MB: {figures.upload_s:.2f} s, cloud CPU "
            f"{figures.upload_cloud_cpu_s:.2f} s",
            flush=True,
        )

        ids = [f"FWBENCH{n:04d}" for n in range(1, args.stations + 1)]
        for sid in ids:
            answer = await operator.put(
                f"/stations/{sid}", json={"password": PASSWORD, "security_profile": 2}
            )
            if answer.status_code not in (200, 201):
                raise BenchError(f"register {sid}: {answer.status_code} {answer.text[:300]}")
        stations = [
            new_station(sid, workdir / "stations" / sid, cloud, n) for n, sid in enumerate(ids)
        ]
        url = f"wss://{HOST}:{cloud.port}/ocpp"
        loop = asyncio.get_running_loop()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        tasks = [loop.create_task(s.run(url)) for s in stations]
        try:

            async def all_online() -> bool:
                for task in tasks:
                    if task.done():
                        task.result()  # raises what ended it
                        raise BenchError("a station stopped")
                return all(s.online and s.accepted for s in stations)

            await until(all_online, args.timeout, "every station booted (Accepted)")
            figures.boot_s = time.monotonic() - t0
            figures.boot_cloud_cpu_s = cpu_seconds(pid) - cpu0
            figures.cloud_hwm_kb["boot"] = peak_rss_kb(pid)
            print(f"{len(stations)} stations online over wss in {figures.boot_s:.1f} s", flush=True)

            with status_times() as seen:
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                answer = await operator.post(
                    f"/firmware/{shown['image_id']}/rollouts", json={"station_ids": ids}
                )
                if answer.status_code != 201:
                    raise BenchError(f"rollout: {answer.status_code} {answer.text[:300]}")
                rollout_id = answer.json()["rollout_id"]

                async def all_installed() -> bool:
                    progress = (await operator.get(f"/rollouts/{rollout_id}")).json()
                    figures.counts = dict(progress["counts"])
                    return figures.counts.get("Installed", 0) == len(ids)

                try:
                    await until(all_installed, args.timeout, "every station Installed")
                finally:
                    figures.rollout_s = time.monotonic() - t0
                    figures.rollout_cloud_cpu_s = cpu_seconds(pid) - cpu0
                    figures.installed = figures.counts.get("Installed", 0)
                    times = [seen.download_s(sid) for sid in ids]
                    figures.station_download_s = [t for t in times if t is not None]
                    figures.cloud_hwm_kb["rollout"] = peak_rss_kb(pid)
            print(
                f"rollout to {len(ids)} stations: all Installed in {figures.rollout_s:.1f} s",
                flush=True,
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for station in stations:
                station.close()
        shutil.rmtree(workdir / "stations", ignore_errors=True)  # 2 copies of the image each

        location = str(shown["location"])
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        figures.peer, figures.peer_download_s = await peer_downloads(
            location, cloud, args.stations, workdir / "peer", args.timeout
        )
        figures.peer_wall_s = time.monotonic() - t0
        figures.peer_cloud_cpu_s = cpu_seconds(pid) - cpu0
        figures.cloud_hwm_kb["peer"] = peak_rss_kb(pid)
        shutil.rmtree(workdir / "peer", ignore_errors=True)
        print(f"{figures.peer}: {args.stations} downloads in {figures.peer_wall_s:.1f} s")
        if not args.no_resume:
            figures.resumed = await resumes(location, cloud, image, workdir / "resume", 60.0)
        figures.cloud_peak_rss_kb = peak_rss_kb(pid)
    return figures


# --- report ------------------------------------------------------------------------


def summary(figures: Figures, args: argparse.Namespace, took: float) -> dict[str, Any]:
    ours, peer = figures.station_download_s, figures.peer_download_s
    ratio = figures.ratio
    print()
    print(
        f"Signed firmware rollout, {figures.size / MB:g} MB image, {figures.stations} "
        f"Station201 (profile 2, wss) against PlugStream Cloud on loopback"
    )
    print(
        f"{platform.python_implementation()} {platform.python_version()}; {os.cpu_count()} CPUs; "
        f"{took:.0f} s in all"
    )

    def row(name: str, value: str) -> None:
        print(f"  {name:<44}{value:>14}")

    def mean(xs: list[float]) -> float:
        return statistics.fmean(xs) if xs else 0.0

    row("upload + sign, s", f"{figures.upload_s:.2f}")
    row("upload, cloud CPU s", f"{figures.upload_cloud_cpu_s:.2f}")
    row("first boot of all, cloud CPU s", f"{figures.boot_cloud_cpu_s:.2f}")
    row("rollout to all Installed, s", f"{figures.rollout_s:.1f}")
    row("stations Installed", f"{figures.installed}/{figures.stations}")
    row("station download s, mean", f"{mean(ours):.2f}")
    row("station download s, max", f"{max(ours, default=0):.2f}")
    row("station MB/s, mean", f"{mean(figures.mbps(ours)):.1f}")
    row("rollout, cloud CPU s", f"{figures.rollout_cloud_cpu_s:.2f}")
    row("cloud peak RSS MB", f"{figures.cloud_peak_rss_kb / 1024:.0f}")
    for step, kb in figures.cloud_hwm_kb.items():
        row(f"  cloud peak RSS MB, up to the end of: {step}", f"{kb / 1024:.0f}")
    row(f"{figures.peer} download s, mean", f"{mean(peer):.2f}")
    row(f"{figures.peer} MB/s, mean", f"{mean(figures.mbps(peer)):.1f}")
    row(f"{figures.peer} downloads, cloud CPU s", f"{figures.peer_cloud_cpu_s:.2f}")
    row("resume from half (Range, 206)", str(figures.resumed))
    meets = (
        figures.installed == figures.stations
        and ratio is not None
        and ratio < GOAL_RATIO
        and figures.resumed is not False
    )
    print(
        f"ours / {figures.peer} mean download time: "
        f"{'-' if ratio is None else f'{ratio:.2f}x'}; goal: all Installed and < "
        f"{GOAL_RATIO:g}x: {'meets' if meets else 'MISSES'}"
    )
    return {
        "bench": "firmware",
        "stations": figures.stations,
        "size_mb": args.size_mb,
        "upload_s": round(figures.upload_s, 3),
        "upload_cloud_cpu_s": round(figures.upload_cloud_cpu_s, 2),
        "boot_s": round(figures.boot_s, 2),
        "boot_cloud_cpu_s": round(figures.boot_cloud_cpu_s, 2),
        "rollout_s": round(figures.rollout_s, 2),
        "installed": figures.installed,
        "counts": figures.counts,
        "station_download_s_mean": round(mean(ours), 3),
        "station_download_s_max": round(max(ours, default=0.0), 3),
        "station_mbps_mean": round(mean(figures.mbps(ours)), 2),
        "rollout_cloud_cpu_s": round(figures.rollout_cloud_cpu_s, 2),
        "cloud_peak_rss_kb": figures.cloud_peak_rss_kb,
        "cloud_peak_rss_kb_by_step": figures.cloud_hwm_kb,
        "peer": figures.peer,
        "peer_download_s_mean": round(mean(peer), 3),
        "peer_mbps_mean": round(mean(figures.mbps(peer)), 2),
        "peer_cloud_cpu_s": round(figures.peer_cloud_cpu_s, 2),
        "resumed": figures.resumed,
        "ratio": None if ratio is None else round(ratio, 3),
        "goal": {"installed": figures.stations, "ratio_below": GOAL_RATIO, "met": meets},
        "meets_goal": meets,
        "took_s": round(took, 1),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--stations", type=int, default=20, help="stations to update (20)")
    parser.add_argument("--size-mb", type=float, default=20.0, help="image size, MiB (20)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="s for the boot and for the rollout (600)"
    )
    parser.add_argument("--no-resume", action="store_true", help="skip the resume check")
    parser.add_argument("--workdir", type=Path, help="where the temporary directory goes")
    args = parser.parse_args(argv)
    if args.stations < 1 or args.size_mb <= 0 or args.timeout <= 0:
        parser.error("need --stations >= 1, --size-mb > 0, --timeout > 0")

    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="plugstream-firmware-bench-", dir=args.workdir))
    cloud: Cloud | None = None
    try:
        cloud = start_cloud(workdir)
        figures = asyncio.run(run(args, cloud, workdir))
        result = summary(figures, args, time.monotonic() - began)
    except BenchError as exc:
        print(f"bench/firmware.py: {exc}", file=sys.stderr)
        if cloud is not None:
            print(cloud.tail(), file=sys.stderr)
        return 1
    finally:
        if cloud is not None:
            stop_pid(cloud.proc, STOP_TIMEOUT)
        shutil.rmtree(workdir, ignore_errors=True)
    return print_summary(result)


if __name__ == "__main__":
    sys.exit(main())
