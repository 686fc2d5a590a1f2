"""``plugstream lab``: build the site network lab, look around in it, check it, clean up.

Thin: :class:`~plugstream.lab.topology.Lab` does the work. ``up`` keeps a lab until Ctrl-C or
SIGTERM, ``check`` runs ``plugstream netcheck`` from the lab's laptop (exit code: netcheck's),
``down`` removes what labs that were killed left behind.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from plugstream.lab.netns import LabUnavailable, lab_unavailable
from plugstream.lab.topology import Lab, remove_leftovers

__all__ = ["lab_app"]

lab_app = typer.Typer(
    help="The network lab: a site LAN, NAT router with the article's firewall, DHCP/DNS, "
    "stand-in resolvers and NTP, and PlugStream Cloud, in network namespaces (needs root).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

_NoDns = Annotated[
    bool,
    typer.Option("--no-dhcp-dns", help="DHCP hands out no DNS server (fallbacks only)."),
]
_NtpShift = Annotated[
    float, typer.Option("--ntp-shift", help="Seconds the NTP stand-in's clock is ahead.")
]


def _unavailable(exc: Exception | str) -> typer.Exit:
    """The lab cannot be built here: one line, exit 1."""
    print(f"plugstream: error: {exc}", file=sys.stderr)
    return typer.Exit(1)


def _lab(no_dhcp_dns: bool, ntp_shift: float, *, cloud: bool = True) -> Lab:
    why = lab_unavailable()
    if why is not None:
        raise _unavailable(why)
    return Lab(dhcp_dns=() if no_dhcp_dns else Lab.DHCP_DNS, ntp_shift=ntp_shift, cloud=cloud)


def _table(lab: Lab) -> Table:
    table = Table(title=f"PlugStream lab {lab.prefix} (built in {lab.build_seconds:.1f} s)")
    for column in ("host", "addresses", "services", "run a command there"):
        table.add_column(column)
    for name, addresses, services in lab.describe():
        table.add_row(name, addresses, services, " ".join(lab.host(name).argv()))
    return table


@lab_app.command("up")
def up(
    no_dhcp_dns: _NoDns = False,
    ntp_shift: _NtpShift = 0.0,
    no_cloud: Annotated[
        bool, typer.Option("--no-cloud", help="Do not start PlugStream Cloud.")
    ] = False,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0, help="Tear down after this long (0: on Ctrl-C).")
    ] = 0.0,
) -> None:
    """Build the lab, print its hosts, keep it until Ctrl-C or SIGTERM, then tear it down."""
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _lab(no_dhcp_dns, ntp_shift, cloud=not no_cloud) as lab:
            console.print(_table(lab))
            console.print(
                f"files (PKI, logs, databases): {lab.directory}\n"
                f"trust: {lab.root_pem}\n"
                f"netcheck: {' '.join(lab.laptop.argv())} "
                f"{' '.join(lab.plugstream('netcheck', *lab.netcheck_args(dhcp=True)))}\n"
                "Ctrl-C tears the lab down."
            )
            deadline = time.monotonic() + seconds if seconds else None
            while not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                stop.wait(0.5)
    except LabUnavailable as exc:
        raise _unavailable(exc) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("lab torn down")


@lab_app.command("check")
def check(
    no_dhcp_dns: _NoDns = False,
    ntp_shift: _NtpShift = 0.0,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="netcheck's seconds per check.")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="netcheck's JSON output.")] = False,
) -> None:
    """Build the lab, run `plugstream netcheck` on its laptop, print the table, tear down.
    The exit code is netcheck's: 0 when the lab's site passes."""
    try:
        with _lab(no_dhcp_dns, ntp_shift) as lab:
            args = [*lab.netcheck_args(dhcp=True), "--timeout", f"{timeout:g}"]
            if as_json:
                args.append("--json")
            done = lab.exec(lab.laptop, *lab.plugstream("netcheck", *args), timeout=120)
    except LabUnavailable as exc:
        raise _unavailable(exc) from None
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    raise typer.Exit(done.returncode)


@lab_app.command("down")
def down() -> None:
    """Remove the namespaces of labs whose process was killed (running labs are left alone)."""
    why = lab_unavailable()
    if why is not None:
        raise _unavailable(why)
    removed = remove_leftovers()
    for name in removed:
        console.print(f"removed {name}")
    console.print(f"{len(removed)} leftover namespace(s) removed")
