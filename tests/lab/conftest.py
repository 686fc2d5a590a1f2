"""The lab of the site-network tests: built once per test module (about 2 s), torn down after.

A lab that cannot be built here (not root, no iproute2) fails its tests with the reason: the
article's network promises are not to be skipped quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plugstream.lab.netns import Host
from plugstream.lab.topology import FALLBACK_DNS, Lab, lab_unavailable


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    why = lab_unavailable()
    if why is not None:
        pytest.fail(f"the lab cannot run here: {why}")
    with Lab() as built:
        yield built


def python_in(lab: Lab, host: Host, code: str, *args: str, timeout: float = 30.0) -> Any:
    """Run ``code`` with the project's Python in ``host``; what it printed, parsed as JSON."""
    done = lab.exec(host, sys.executable, "-c", code, *args, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def plugstream_in(
    lab: Lab, host: Host, *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``plugstream ARGS`` as a process in ``host``."""
    return lab.exec(host, *lab.plugstream(*args), timeout=timeout)


# --- a station in the lab, and the cloud's API seen from the site -------------------------------

STATION_PASSWORD = "lab-station-password"


def api(lab: Lab, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One REST call to the lab cloud (``/api/v1`` + ``path``) from the laptop, over the
    router, with TLS checked against the lab root: (status, JSON body or text)."""
    code = (
        "import httpx, json, sys\n"
        "url, token, ca, method, body = sys.argv[1:6]\n"
        "r = httpx.request(method, url, headers={'Authorization': 'Bearer ' + token},\n"
        "                  json=json.loads(body), verify=ca, timeout=10)\n"
        "try:\n    out = r.json()\nexcept ValueError:\n    out = r.text\n"
        "print(json.dumps([r.status_code, out]))\n"
    )
    status, out = python_in(
        lab, lab.laptop, code, lab.api_url + path, lab.api_token, str(lab.root_pem),
        method, json.dumps(body),
    )  # fmt: skip
    return int(status), out


def register(lab: Lab, station_id: str) -> None:
    """The operator registers the station for security profile 2 (TLS + Basic auth)."""
    status, out = api(
        lab, "PUT", f"/stations/{station_id}",
        {"password": STATION_PASSWORD, "security_profile": 2},
    )  # fmt: skip
    assert status in (200, 201), out


@dataclass
class LabStation:
    """``plugstream station run`` in the lab's station host; stdin is its control channel."""

    process: subprocess.Popen[str]
    data_dir: Path
    log: Path

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def network(self) -> dict[str, Any]:
        """``network.json``: link, clock, DHCP lease, last DNS answer, why offline."""
        try:
            data: dict[str, Any] = json.loads((self.data_dir / "network.json").read_text())
        except (OSError, ValueError):
            return {}
        return data

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_station(
    lab: Lab, station_id: str, *flags: str, ocpp: str = "1.6", dhcp: bool = True
) -> LabStation:
    """A PlugStream 22 on the site LAN at security profile 2, trusting the lab root, with
    the product's network stack: DHCP on eth0 (unless ``dhcp`` is False), pool.ntp.org (the
    lab's DNS answers it with the NTP stand-in), the stand-ins as DNS fallbacks."""
    data_dir = lab.directory / f"station-{station_id}"
    log = lab.directory / f"station-{station_id}.log"
    argv = lab.plugstream(
        "station", "run", "--id", station_id, "--model", "22", "--ocpp", ocpp,
        "--csms", lab.cloud_url, "--password", STATION_PASSWORD, "--security-profile", "2",
        "--trust", str(lab.root_pem), "--data-dir", str(data_dir),
        "--dns-fallback", FALLBACK_DNS[0], "--dns-fallback", FALLBACK_DNS[1],
        *(["--dhcp", "eth0"] if dhcp else []), *flags,
    )  # fmt: skip
    out = log.open("w")
    process = lab.station.start(
        *argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    out.close()
    return LabStation(process, data_dir, log)
