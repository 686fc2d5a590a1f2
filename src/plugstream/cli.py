"""The ``plugstream`` command. Thin: it parses flags and wires the parts together."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

from plugstream import __version__
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.firmware.cli import firmware_app
from plugstream.lab.cli import lab_app

_CLOUD_DEFAULTS = CloudConfig()

if TYPE_CHECKING:
    from plugstream.net.accounting import ByteCounter
    from plugstream.station.fleet import FleetConfig, FleetSummary

app = typer.Typer(
    name="plugstream",
    help="PlugStream: an open-source EV charging network (OCPP 1.6J / 2.0.1 / 2.1).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter("must be greater than 0")
    return value


def _positive_or_none(value: float | None) -> float | None:
    return None if value is None else _positive(value)


@app.command()
def version() -> None:
    """Print the PlugStream version."""
    console.print(f"plugstream {__version__}")


@app.command()
def selfcheck() -> None:
    """Run the OCPP protocol self-check on loopback: a CSMS and a station, every version."""
    raise typer.Exit(_selfcheck())


@app.command()
def firewall(
    fmt: Annotated[
        str, typer.Option("--format", help="nftables, iptables (iptables-restore) or csv.")
    ],
    dns: Annotated[
        list[str] | None,
        typer.Option("--dns", help="A DNS server the site's DHCP hands out (repeat)."),
    ] = None,
    subnet: Annotated[
        str | None,
        typer.Option(help="The stations' IPv4 subnet, CIDR (default: a set you fill in)."),
    ] = None,
) -> None:
    """Print the outgoing allow-list of the network article (Table 2) for a site's firewall."""
    from plugstream.netcheck.firewall import (
        FORMATS,
        parse_dns_server,
        parse_station_subnet,
        render,
    )

    if fmt not in FORMATS:
        raise typer.BadParameter(f"use {', '.join(FORMATS)}, not {fmt!r}", param_hint="'--format'")
    try:
        for server in dns or ():
            parse_dns_server(server)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--dns'") from None
    try:
        if subnet is not None:
            parse_station_subnet(subnet)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--subnet'") from None
    sys.stdout.write(render(fmt, dns_servers=dns or (), station_subnet=subnet))


@app.command()
def netcheck(
    dns: Annotated[
        list[str] | None,
        typer.Option(
            "--dns", help="A DNS server from DHCP, in priority order (default: resolv.conf)."
        ),
    ] = None,
    fallback_dns: Annotated[
        list[str] | None,
        typer.Option("--fallback-dns", help="A fallback DNS server (default: 1.1.1.1, 1.0.0.1)."),
    ] = None,
    dns_port: Annotated[int, typer.Option(min=1, max=65535, help="DNS port.")] = 53,
    ntp_host: Annotated[str, typer.Option(help="NTP server.")] = "pool.ntp.org",
    ntp_port: Annotated[int, typer.Option(min=1, max=65535, help="NTP port.")] = 123,
    cloud_host: Annotated[
        list[str] | None,
        typer.Option("--cloud-host", help="A cloud name (default: the article's two; repeat)."),
    ] = None,
    cloud_port: Annotated[int, typer.Option(min=1, max=65535, help="Cloud HTTPS port.")] = 443,
    connect_to: Annotated[
        list[str] | None,
        typer.Option("--connect-to", help="NAME=IP: connect there instead of resolving NAME."),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(help="PEM of the roots to trust (default: the system store).")
    ] = None,
    timeout: Annotated[float, typer.Option(callback=_positive, help="Seconds per check.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    interface: Annotated[
        str | None,
        typer.Option(
            help="This laptop's interface on the stations' network: ask its DHCP server "
            "(as root; else read this laptop's lease) and use the DNS servers it gives."
        ),
    ] = None,
) -> None:
    """Check this site's network against the network article: DHCP, DNS, NTP, TCP 443, TLS."""
    import ipaddress

    from plugstream.net.dns import ARTICLE_FALLBACKS
    from plugstream.netcheck.check import NetcheckConfig, load_roots, run, system_dns_servers

    def ips(values: list[str], hint: str) -> tuple[str, ...]:
        try:
            return tuple(str(ipaddress.ip_address(v)) for v in values)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=hint) from None

    pins: dict[str, str] = {}
    for item in connect_to or ():
        name, _, ip = item.partition("=")
        if not name or not ip:
            raise typer.BadParameter(f"use NAME=IP, not {item!r}", param_hint="'--connect-to'")
        pins[name] = ips([ip], "'--connect-to'")[0]
    if interface is not None and not Path("/sys/class/net", interface).exists():
        raise typer.BadParameter(f"no such interface: {interface}", param_hint="'--interface'")
    if dns is not None:
        dhcp_dns = ips(dns, "'--dns'")
    else:  # with --interface, the DHCP check's offer gives them
        dhcp_dns = () if interface is not None else system_dns_servers()
    fallbacks = ips(fallback_dns, "'--fallback-dns'") if fallback_dns else ARTICLE_FALLBACKS
    try:
        roots = load_roots(ca)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read certificates: {exc}", param_hint="'--ca'") from None
    config = NetcheckConfig(
        dhcp_dns=dhcp_dns,
        fallback_dns=fallbacks,
        dns_port=dns_port,
        ntp_host=ntp_host,
        ntp_port=ntp_port,
        cloud_hosts=tuple(cloud_host) if cloud_host else NetcheckConfig().cloud_hosts,
        cloud_port=cloud_port,
        connect_to=pins,
        roots=roots,
        timeout=timeout,
        interface=interface,
    )
    report = asyncio.run(run(config))
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        styles = {"pass": "green", "warn": "yellow", "fail": "bold red"}
        grid = Table(title="PlugStream site network check (outgoing, the article's Table 2)")
        for column in ("Port", "Type", "Domain / IP", "Result", "Time", "Fix"):
            grid.add_column(column, overflow="fold")
        for row in report.rows:
            took = "" if row.time is None else f"{row.time * 1000:.0f} ms"
            result = f"[{styles[row.status]}]{row.status.upper()}[/] {row.detail}"
            grid.add_row(str(row.port), row.type, row.target, result, took, row.fix)
        console.print(grid)
        for note in report.notes:
            console.print(f"note: {note}")
        console.print("overall: " + ("PASS" if report.ok else "FAIL"))
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def demo(
    stations: Annotated[int, typer.Option(min=1, max=1000, help="Stations in the fleet.")] = 20,
    time_scale: Annotated[
        float, typer.Option(callback=_positive, help="Simulated seconds per wall second.")
    ] = 60.0,
    duration: Annotated[
        float | None,
        typer.Option(
            callback=_positive_or_none, help="Wall seconds to run (default: until Ctrl-C)."
        ),
    ] = None,
    session_minutes: Annotated[
        float | None,
        typer.Option(
            callback=_positive_or_none,
            help="Simulated minutes a car charges (default: until it is full).",
        ),
    ] = None,
) -> None:
    """Run PlugStream Cloud and a fleet of PlugStream 7 / 22 stations charging cars, on loopback."""
    from plugstream.demo import run_demo

    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    raise typer.Exit(
        asyncio.run(
            run_demo(
                stations=stations,
                time_scale=time_scale,
                duration=duration,
                session_minutes=session_minutes,
                console=console,
            )
        )
    )


@app.command()
def fleet(
    stations: Annotated[int, typer.Option(min=1, help="How many stations to run.")],
    csms: Annotated[str, typer.Option(help="The CSMS URL, ws:// or wss://; ids are appended.")],
    ocpp: Annotated[
        str | None, typer.Option(help="OCPP version of every station: 1.6 or 2.0.1 (default: mix).")
    ] = None,
    sessions: Annotated[int, typer.Option(min=1, help="Charge sessions per station.")] = 2,
    session_minutes: Annotated[
        float | None,
        typer.Option(
            callback=_positive_or_none,
            help="Simulated minutes a car charges (default: until it is full).",
        ),
    ] = None,
    time_scale: Annotated[
        float, typer.Option(callback=_positive, help="Simulated seconds per wall second.")
    ] = 60.0,
    duration: Annotated[
        float | None,
        typer.Option(callback=_positive_or_none, help="Stop after this many wall seconds."),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="PLUGSTREAM_STATION_PASSWORD",
            help="HTTP Basic password of every station (the username is its id).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the stations keep their state (default: a temp dir).")
    ] = None,
    id_prefix: Annotated[str, typer.Option(help="Station ids are this and a number.")] = "SIM-",
    id_tag: Annotated[
        list[str] | None,
        typer.Option(
            "--id-tag",
            help="RFID idTag the drivers swipe (repeat for more; default: the demo's cards).",
        ),
    ] = None,
    idle_minutes: Annotated[
        tuple[float, float],
        typer.Option(
            help="Simulated minutes a station stands idle before each session: MIN MAX.",
        ),
    ] = (5.0, 30.0),
    connect_rate: Annotated[
        float,
        typer.Option(callback=_positive, help="Stations started per wall second."),
    ] = 200.0,
    fault_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of sessions in which the station faults mid-charge (0 to 1).",
        ),
    ] = 0.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="End with one JSON line of the figures.")
    ] = False,
) -> None:
    """Simulate a fleet of stations charging cars against a CSMS, in one process."""
    import json

    from plugstream.station.fleet import DEFAULT_ID_TAGS, FleetConfig
    from plugstream.station.run import check_csms_url

    if ocpp is not None and ocpp not in ("1.6", "2.0.1"):
        raise typer.BadParameter(f"use 1.6 or 2.0.1, not {ocpp!r}", param_hint="'--ocpp'")
    problem = check_csms_url(csms)
    if problem is not None:
        raise typer.BadParameter(problem, param_hint="'--csms'")
    if not id_prefix or any(c.isspace() or c == "/" for c in id_prefix):
        raise typer.BadParameter(
            f"not a station id prefix: {id_prefix!r}", param_hint="'--id-prefix'"
        )
    if not 0 <= idle_minutes[0] <= idle_minutes[1]:
        raise typer.BadParameter(
            f"use MIN MAX with 0 <= MIN <= MAX, not {idle_minutes[0]:g} {idle_minutes[1]:g}",
            param_hint="'--idle-minutes'",
        )
    for tag in id_tag or ():
        if not 1 <= len(tag) <= 20 or not tag.isascii() or not tag.isprintable():
            raise typer.BadParameter(
                f"an idTag is 1 to 20 printable ASCII characters, not {tag!r}",
                param_hint="'--id-tag'",
            )
    config = FleetConfig(
        csms=csms,
        stations=stations,
        ocpp=ocpp,
        sessions=sessions,
        session_minutes=session_minutes,
        time_scale=time_scale,
        password=password,
        data_dir=data_dir,
        id_prefix=id_prefix,
        id_tags=tuple(id_tag) if id_tag else DEFAULT_ID_TAGS,
        idle_minutes=idle_minutes,
        connect_rate=connect_rate,
        fault_rate=fault_rate,
    )
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    summary = asyncio.run(_run_fleet(config, duration))
    _print_fleet(summary)
    if as_json:
        sys.stdout.write(json.dumps(summary.to_json()) + "\n")


async def _run_fleet(config: FleetConfig, duration: float | None) -> FleetSummary:
    import signal

    from plugstream.station.fleet import Fleet

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        fleet = Fleet(config)
        # at once, not in the summary only: a bench reads the ramp-up while the fleet runs
        fleet.on_ramped = lambda seconds: print(
            f"{FLEET_RAMPED} {config.stations} stations after {seconds:.1f} s", flush=True
        )
        return await fleet.run(stop, duration)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


FLEET_RAMPED = "fleet ramped up: a session on all"
"""The start of the line ``plugstream fleet`` prints once every station is in a session."""


def _print_fleet(summary: FleetSummary) -> None:
    def n(value: float | None, unit: str = "") -> str:
        return "-" if value is None else f"{value:,.0f}{unit}"

    table = Table(title="Fleet run")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("stations", n(summary.stations)),
        ("connected at the end", n(summary.connected)),
        ("sessions started", n(summary.sessions_started)),
        ("sessions completed", n(summary.sessions_completed)),
        ("sessions ended by a fault", n(summary.sessions_faulted)),
        ("energy (completed sessions)", f"{summary.energy_wh / 1000:,.3f} kWh"),
        ("messages sent / received", f"{summary.messages_sent:,} / {summary.messages_received:,}"),
        ("bytes in total", n(summary.bytes_total)),
        ("bytes per session", n(summary.bytes_per_session)),
        ("bytes per idle day", n(summary.bytes_per_idle_day)),
        ("errors", n(summary.errors)),
        (
            "ramp-up (all in a session)",
            "-" if summary.ramp_s is None else f"{summary.ramp_s:,.1f} s",
        ),
        ("wall time", f"{summary.duration_wall_s:,.1f} s"),
        (
            "simulated time",
            f"{summary.duration_simulated_s / 3600:,.2f} h (x{summary.time_scale:g})",
        ),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _selfcheck() -> int:
    from plugstream.selfcheck import Step, run_selfcheck

    table = Table(title="OCPP-J self-check (127.0.0.1)")
    for column in ("OCPP", "check", "result", "ms", "detail"):
        table.add_column(column)

    def row(step: Step) -> None:
        mark = "[green]pass[/green]" if step.ok else "[red]FAIL[/red]"
        table.add_row(step.version, step.name, mark, f"{step.ms:.1f}", step.detail[:48])

    # Broken frames are part of the check; their warnings would only be noise here.
    logging.getLogger("plugstream.ocpp").setLevel(logging.ERROR)
    steps = asyncio.run(run_selfcheck(row))
    console.print(table)
    failed = [s for s in steps if not s.ok]
    console.print(f"{len(steps) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


cloud_app = typer.Typer(
    help="PlugStream Cloud, the CSMS.", no_args_is_help=True, add_completion=False
)
app.add_typer(cloud_app, name="cloud")


def _check_db(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise typer.BadParameter(f"not a database URL: {url!r}") from None
    if backend not in ("sqlite", "postgresql"):
        raise typer.BadParameter(f"use sqlite:///FILE or postgresql://..., not {backend}://")
    return url


def _check_bus(url: str | None) -> str | None:
    if url is None:
        return None
    if not url.startswith(("nats://", "tls://")) or not url.split("://", 1)[1]:
        raise typer.BadParameter(f"use nats://HOST:PORT, not {url!r}")
    return url


def _check_node_id(node_id: str) -> str:
    from plugstream.cloud.bus import valid_node_id

    if not valid_node_id(node_id):
        raise typer.BadParameter(
            f"{node_id!r}: 1 to 32 letters, digits, '-' or '_'", param_hint="'--node-id'"
        )
    return node_id


def _check_cluster_name(name: str) -> str:
    from plugstream.cloud.bus import valid_node_id

    if not valid_node_id(name):
        raise typer.BadParameter(
            f"{name!r}: 1 to 32 letters, digits, '-' or '_'", param_hint="'--cluster'"
        )
    return name


def _check_cluster(config: CloudConfig) -> None:
    """Nodes that share stations share their data and their bus: several workers without
    both would each keep their own fleet."""
    from plugstream.cloud.app import migrates_itself

    if config.workers > 1 and (config.bus is None or migrates_itself(config.db)):
        raise typer.BadParameter(
            "--workers above 1 needs --bus nats://... and a PostgreSQL --db",
            param_hint="'--workers'",
        )
    if config.bus is not None and migrates_itself(config.db):
        raise typer.BadParameter(
            "a cluster's nodes share one PostgreSQL database: --bus needs --db postgresql://...",
            param_hint="'--bus'",
        )


def _retention(values: list[str] | None) -> dict[str, float]:
    from plugstream.cloud.retention import parse_retain

    return parse_retain(values or ())


def _check_retain(values: list[str] | None) -> list[str] | None:
    try:
        _retention(values)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return values


def _tls_pairs(certs: list[Path], keys: list[Path]) -> list[tuple[Path, Path]]:
    """``--tls-cert``/``--tls-key``, paired in order: one pair, or two of which one is EC
    and one RSA (A00.FR.318: the ECDHE-ECDSA suites need the one, the RSA suites the
    other). Each key must be its certificate's: told now, in one line, not by a server
    that fails to start."""
    from plugstream.pki.tls import server_key_type

    if len(certs) != len(keys):
        raise typer.BadParameter(
            f"--tls-cert and --tls-key go together: {len(certs)} certificate(s), {len(keys)} key(s)"
        )
    if len(certs) > 2:
        raise typer.BadParameter(
            f"at most two --tls-cert/--tls-key pairs (an EC and an RSA one), not {len(certs)}"
        )
    pairs = list(zip(certs, keys, strict=True))
    kinds = []
    for cert, key in pairs:
        try:
            kinds.append(server_key_type(cert, key))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--tls-key'") from None
    if len(pairs) == 2 and sorted(kinds) != ["ec", "rsa"]:
        raise typer.BadParameter(
            f"two --tls-cert must be an EC and an RSA one, not {kinds[0]} and {kinds[1]}",
            param_hint="'--tls-cert'",
        )
    return pairs


@cloud_app.command("serve")
def cloud_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port for OCPP and HTTP (0: any free one).")
    ] = 9000,
    db: Annotated[
        str, typer.Option(callback=_check_db, help="Database URL (SQLite or PostgreSQL).")
    ] = "sqlite:///plugstream.db",
    api_token: Annotated[
        str | None,
        typer.Option(envvar="PLUGSTREAM_API_TOKEN", help="Bearer token of the REST API."),
    ] = None,
    auto_register: Annotated[
        bool,
        typer.Option(
            "--auto-register",
            help="Register unknown stations instead of refusing them: the first connection's "
            "Basic password (username = station id) becomes the station's.",
        ),
    ] = False,
    auto_register_unsecured: Annotated[
        bool,
        typer.Option(
            "--auto-register-unsecured",
            help="With --auto-register, also register stations that bring no credentials, "
            "at security profile 0 (anyone may then connect as them).",
        ),
    ] = False,
    login_failures: Annotated[
        int,
        typer.Option(
            min=1, help="Failed logins per station id before it is locked (doubling delay)."
        ),
    ] = _CLOUD_DEFAULTS.login_failures_per_station,
    login_failures_per_address: Annotated[
        int,
        typer.Option(
            min=1, help="Failed logins per source address before it is locked (doubling delay)."
        ),
    ] = _CLOUD_DEFAULTS.login_failures_per_address,
    login_lock: Annotated[
        float,
        typer.Option(callback=_positive, help="Seconds of the first login lock (then doubled)."),
    ] = _CLOUD_DEFAULTS.login_lock_s,
    login_tarpit: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds a refusal of a locked station id or address is held back (at most).",
        ),
    ] = _CLOUD_DEFAULTS.login_tarpit_s,
    ping_interval: Annotated[
        float, typer.Option(callback=_positive, help="Seconds between WebSocket pings.")
    ] = _CLOUD_DEFAULTS.ping_interval,
    ping_timeout: Annotated[
        float,
        typer.Option(
            callback=_positive, help="Seconds without a pong before a station is dropped."
        ),
    ] = 60.0,
    max_frame_bytes: Annotated[
        int, typer.Option(min=1024, help="Largest WebSocket message accepted (larger: close 1009).")
    ] = 1 << 20,
    call_timeout: Annotated[
        float, typer.Option(callback=_positive, help="Seconds a station has to answer a command.")
    ] = 30.0,
    handshake_timeout: Annotated[
        float,
        typer.Option(
            callback=_positive,
            help="Seconds a connection has, from its accept, for its TLS handshake, HTTP "
            "request head and WebSocket upgrade.",
        ),
    ] = _CLOUD_DEFAULTS.handshake_timeout,
    max_pending_handshakes: Annotated[
        int,
        typer.Option(min=1, help="Unfinished handshakes at once (more: wait, or are closed)."),
    ] = _CLOUD_DEFAULTS.max_pending_handshakes,
    max_waiting_handshakes: Annotated[
        int,
        typer.Option(
            min=0,
            help="New connections that may wait, in order and unread, for a slot beyond "
            "--max-pending-handshakes (more: closed at once; 0: none wait).",
        ),
    ] = _CLOUD_DEFAULTS.max_waiting_handshakes,
    connect_rate: Annotated[
        float,
        typer.Option(min=0.0, help="New connections a second per source address (0: no limit)."),
    ] = _CLOUD_DEFAULTS.connect_rate,
    connect_burst: Annotated[
        int, typer.Option(min=1, help="New connections at once per source address.")
    ] = _CLOUD_DEFAULTS.connect_burst,
    max_body_bytes: Annotated[
        int,
        typer.Option(
            min=1024, help="Largest REST request body (larger: 413); firmware uploads excepted."
        ),
    ] = _CLOUD_DEFAULTS.max_body_bytes,
    heartbeat_interval: Annotated[
        int, typer.Option(min=1, help="Heartbeat interval handed out in BootNotification (s).")
    ] = 3600,
    tls_cert: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Server certificate (PEM): wss, https. Twice, an EC and an RSA one, for "
            "both TLS 1.2 suite families of OCPP (A00.FR.318).",
        ),
    ] = None,
    tls_key: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True, dir_okay=False, help="Private key of --tls-cert (in the same order)."
        ),
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="CA (PEM) of station client certificates: security profile 3 (mutual TLS).",
        ),
    ] = None,
    tls_client_organization: Annotated[
        str | None,
        typer.Option(help="Operator name a profile-3 station certificate's O must contain."),
    ] = None,
    pki: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="PKI directory (plugstream pki init): signs station CSRs and firmware, "
            "identifies new stations at the setup service.",
        ),
    ] = None,
    firmware_dir: Annotated[
        Path | None, typer.Option(file_okay=False, help="Where uploaded firmware is kept.")
    ] = None,
    logs_dir: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Where the stations' uploaded logs are kept."),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(help="https:// URL stations reach this server at (default: from host, port)."),
    ] = None,
    contract_pool_url: Annotated[
        str | None,
        typer.Option(
            help="https:// URL of the contract certificate pool that an EV's "
            "Get15118EVCertificate (ISO 15118 contract install/update) is forwarded to.",
        ),
    ] = None,
    contract_pool_ca: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="CA (PEM) the pool's TLS certificate must chain to (default: the system's).",
        ),
    ] = None,
    contract_pool_token: Annotated[
        str | None,
        typer.Option(
            envvar="PLUGSTREAM_CONTRACT_POOL_TOKEN",
            help="Bearer token of the contract certificate pool (best in the variable).",
        ),
    ] = None,
    retain: Annotated[
        list[str] | None,
        typer.Option(
            callback=_check_retain,
            metavar="WHAT=DURATION",
            help="How long to keep messages (the message log, default 30d) or refusals "
            "(refused connections, by last seen, default 90d), e.g. --retain messages=7d "
            "--retain refusals=365d; 0 or off keeps forever.",
        ),
    ] = None,
    max_refusal_rows: Annotated[
        int, typer.Option(min=1, help="Refused-connection rows kept at most (oldest go).")
    ] = _CLOUD_DEFAULTS.max_refusal_rows,
    setup: Annotated[
        bool,
        typer.Option("--setup", help="Serve only the setup service (commissioning of stations)."),
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(
            click_type=click.Choice(["text", "json"]),
            help="Logs on stderr as text, or as one JSON object per line (ts, level, "
            "logger, message, exc) for a log collector.",
        ),
    ] = "text",
    bus: Annotated[
        str | None,
        typer.Option(
            callback=_check_bus,
            help="NATS URL of the cluster's bus (nats://HOST:4222): run as one gateway node "
            "of several sharing a PostgreSQL --db (default: one node alone).",
        ),
    ] = None,
    node_id: Annotated[
        str,
        typer.Option(
            callback=_check_node_id,
            help="This node's name in the cluster, unique per node (letters, digits, - _).",
        ),
    ] = "node-1",
    cluster: Annotated[
        str,
        typer.Option(
            callback=_check_cluster_name,
            help="The cluster's name on the bus (one NATS may serve several clusters).",
        ),
    ] = "plugstream",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Gateway processes on this host sharing the port (SO_REUSEPORT); "
            "more than 1 needs --bus and a PostgreSQL --db.",
        ),
    ] = 1,
) -> None:
    """Serve PlugStream Cloud: OCPP at /ocpp/{stationId} and the REST API at /api/v1/."""
    from plugstream.cloud.serve import run
    from plugstream.cloud.workers import supervise

    tls_pairs = _tls_pairs(tls_cert or [], tls_key or [])
    if tls_client_ca is not None and not tls_pairs:
        raise typer.BadParameter("--tls-client-ca needs --tls-cert and --tls-key")
    if setup and (not tls_pairs or pki is None):
        raise typer.BadParameter(
            "--setup needs --tls-cert and --tls-key (for the setup name) and --pki"
        )
    retention = _retention(retain)
    # The pool's settings are told wrong now, in one line, not by the first EV that
    # cannot have its contract certificate.
    import ssl

    from plugstream.cloud.certificates.contract_pool import check_pool_token, check_pool_url

    pool_url, pool_token = contract_pool_url or None, contract_pool_token or None
    if pool_url is None and (contract_pool_ca is not None or pool_token is not None):
        raise typer.BadParameter("--contract-pool-ca and the pool's token need --contract-pool-url")
    for value, check, flag in (
        (pool_url, check_pool_url, "'--contract-pool-url'"),
        (pool_token, check_pool_token, "'--contract-pool-token'"),
    ):
        try:
            if value is not None:
                check(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=flag) from None
    try:
        if contract_pool_ca is not None:
            ssl.create_default_context(cafile=str(contract_pool_ca))
    except ssl.SSLError as exc:
        raise typer.BadParameter(
            f"no PEM CA certificate: {exc}", param_hint="'--contract-pool-ca'"
        ) from None
    config = CloudConfig(
        host=host,
        port=port,
        db=db,
        api_token=api_token or None,
        auto_register=auto_register or auto_register_unsecured,
        auto_register_unsecured=auto_register_unsecured,
        login_failures_per_station=login_failures,
        login_failures_per_address=login_failures_per_address,
        login_lock_s=login_lock,
        login_tarpit_s=login_tarpit,
        heartbeat_interval=heartbeat_interval,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        call_timeout=call_timeout,
        handshake_timeout=handshake_timeout,
        max_pending_handshakes=max_pending_handshakes,
        max_waiting_handshakes=max_waiting_handshakes,
        connect_rate=connect_rate,
        connect_burst=connect_burst,
        max_frame_bytes=max_frame_bytes,
        max_body_bytes=max_body_bytes,
        tls_cert=tls_pairs[0][0] if tls_pairs else None,
        tls_key=tls_pairs[0][1] if tls_pairs else None,
        tls_extra_certs=tuple(tls_pairs[1:]),
        tls_client_ca=tls_client_ca,
        tls_client_organization=tls_client_organization,
        pki_dir=pki,
        firmware_dir=firmware_dir,
        logs_dir=logs_dir,
        public_url=public_url,
        contract_pool_url=pool_url,
        contract_pool_token=pool_token,
        contract_pool_ca=contract_pool_ca,
        setup_only=setup,
        max_refusal_rows=max_refusal_rows,
        retain_messages=retention.get("retain_messages", _CLOUD_DEFAULTS.retain_messages),
        retain_refusals=retention.get("retain_refusals", _CLOUD_DEFAULTS.retain_refusals),
        log_format="json" if log_format == "json" else "text",
        bus=bus,
        node_id=node_id,
        cluster=cluster,
        workers=workers,
    )
    _check_cluster(config)
    if config.log_format == "json":
        from plugstream.cloud.logs import use_json_logs

        use_json_logs()
    _require_schema(db)  # the setup service's store too
    raise typer.Exit(supervise(config) if config.workers > 1 else run(config))


def _require_schema(db: str) -> None:
    """A database that ``cloud serve`` does not migrate by itself (PostgreSQL, which the
    nodes of a cluster share) must be at this code's schema: else one line and exit 1,
    before anything listens."""
    from plugstream.cloud.app import migrates_itself
    from plugstream.cloud.storage import SchemaMismatch, schema_revisions

    if migrates_itself(db):
        return
    try:
        current, head = asyncio.run(schema_revisions(db))
    except Exception as exc:  # unreachable, refused, wrong credentials
        print(f"plugstream: error: cannot read the database's schema: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if current != head:
        print(f"plugstream: error: {SchemaMismatch(current, head)}", file=sys.stderr)
        raise typer.Exit(1)


@cloud_app.command("migrate")
def cloud_migrate(
    db: Annotated[
        str, typer.Option(callback=_check_db, help="Database URL (SQLite or PostgreSQL).")
    ] = "sqlite:///plugstream.db",
) -> None:
    """Bring the database's schema up to this version's (Alembic; the same migrations for
    SQLite and PostgreSQL). Run it once before the nodes of a cluster start; a node
    refuses a schema older or newer than its code. Safe to run again."""
    from plugstream.cloud.storage import migrate

    try:
        before, after = asyncio.run(migrate(db))
    except Exception as exc:
        print(f"plugstream: error: migration failed: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if before == after:
        print(f"the schema is up to date (revision {after})")
    else:
        print(f"migrated the schema from revision {before or 'none'} to {after}")


user_app = typer.Typer(
    help="Operators' accounts of the console and the REST API (kept in the database).",
    no_args_is_help=True,
    add_completion=False,
)
cloud_app.add_typer(user_app, name="user")

_UserDb = Annotated[
    str, typer.Option(callback=_check_db, help="Database URL (SQLite or PostgreSQL).")
]
_USER_DB_DEFAULT = "sqlite:///plugstream.db"
_PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from stdin (default: prompt twice)."),
]
MIN_PASSWORD = 8


def _check_username(name: str) -> str:
    if not 1 <= len(name) <= 64 or not name.isprintable() or any(c.isspace() for c in name):
        raise typer.BadParameter("1 to 64 printable characters, no spaces")
    return name


def _check_role(role: str) -> str:
    from plugstream.cloud.storage.operators import ROLES

    if role not in ROLES:
        raise typer.BadParameter(f"use {', '.join(ROLES)}, not {role!r}")
    return role


def _read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or typed twice without echo."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        raise typer.BadParameter(
            f"the password needs at least {MIN_PASSWORD} characters", param_hint="password"
        )
    return password


def _user_failed(message: str) -> typer.Exit:
    """An account that is not there (or is already): one line and exit 1."""
    print(f"plugstream: error: {message}", file=sys.stderr)
    return typer.Exit(1)


def _with_operators(db: str, fn: Any) -> Any:
    """``await fn(store.operators)`` on the database at ``db`` (migrated first)."""
    from plugstream.cloud.storage import Store

    async def run() -> Any:
        async with await Store.open(db) as store:
            return await fn(store.operators)

    return asyncio.run(run())


_UserName = Annotated[str, typer.Argument(callback=_check_username, help="The user's name.")]


@user_app.command("add")
def user_add(
    name: _UserName,
    role: Annotated[str, typer.Option(callback=_check_role, help="admin, operator or read-only.")],
    password_stdin: _PasswordStdin = False,
    db: _UserDb = _USER_DB_DEFAULT,
) -> None:
    """Add an operator account with its role."""
    from plugstream.cloud.storage.operators import OperatorExists

    password = _read_password(password_stdin)
    try:
        _with_operators(db, lambda ops: ops.add(name, password, role))
    except OperatorExists:
        raise _user_failed(f"user {name!r} exists already") from None
    print(f"added {name} ({role})")


@user_app.command("list")
def user_list(db: _UserDb = _USER_DB_DEFAULT) -> None:
    """The accounts: name, role and when each was made (never a password hash)."""
    users = _with_operators(db, lambda ops: ops.list())
    table = Table("name", "role", "created")
    for user in users:
        table.add_row(user.username, user.role, user.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    console.print(table)


@user_app.command("remove")
def user_remove(name: _UserName, db: _UserDb = _USER_DB_DEFAULT) -> None:
    """Remove an account; its sessions end at once."""
    from plugstream.cloud.storage.operators import UnknownOperator

    try:
        _with_operators(db, lambda ops: ops.remove(name))
    except UnknownOperator:
        raise _user_failed(f"no such user: {name!r}") from None
    print(f"removed {name}")


@user_app.command("passwd")
def user_passwd(
    name: _UserName, password_stdin: _PasswordStdin = False, db: _UserDb = _USER_DB_DEFAULT
) -> None:
    """Set a new password; the account's sessions end at once."""
    from plugstream.cloud.storage.operators import UnknownOperator

    async def change(ops: Any) -> None:
        if await ops.get(name) is None:  # before the prompt would ask for nothing
            raise UnknownOperator(name)

    try:
        _with_operators(db, change)
        password = _read_password(password_stdin)
        _with_operators(db, lambda ops: ops.set_password(name, password))
    except UnknownOperator:
        raise _user_failed(f"no such user: {name!r}") from None
    print(f"password of {name} changed; its sessions ended")


station_app = typer.Typer(
    help="The charge point (station).", no_args_is_help=True, add_completion=False
)
app.add_typer(station_app, name="station")


@station_app.command("stats")
def station_stats(
    data_dir: Annotated[
        Path, typer.Option(help="The station's data dir (where traffic.json is saved).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show the bytes the station sent and received: per day, per charge cycle, per link."""
    import json

    from plugstream.net.accounting import ByteCounter

    if not data_dir.is_dir() or not any(data_dir.iterdir()):
        what = "is empty" if data_dir.is_dir() else "is not a directory"
        raise typer.BadParameter(f"{data_dir} {what}", param_hint="'--data-dir'")
    try:
        counter = ByteCounter.load(data_dir)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="'--data-dir'") from None
    report = _traffic_report(counter)
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    if not report["days"] and not report["cycles"]:
        console.print(f"no data yet: no byte counters in {data_dir}")
        return
    _print_traffic(report)


@station_app.command("run")
def station_run(
    model: Annotated[int, typer.Option(help="The model: 7 (PlugStream 7) or 22 (PlugStream 22).")],
    station_id: Annotated[
        str | None,
        typer.Option("--id", help="The station id (charge point identity; with --setup: none)."),
    ] = None,
    csms: Annotated[
        str | None,
        typer.Option(help="The CSMS URL, ws:// or wss://; the id is appended (or use --setup)."),
    ] = None,
    setup: Annotated[
        str | None,
        typer.Option(
            "--setup",
            help="Setup service URL (https://): get the CSMS, version and credentials from it "
            "(needs the factory state in --data-dir: plugstream pki factory).",
        ),
    ] = None,
    setup_retry: Annotated[
        float,
        typer.Option(
            min=0.1, help="With --setup: most seconds between setup calls while unclaimed."
        ),
    ] = 300.0,
    ocpp: Annotated[str, typer.Option(help="OCPP version: 1.6 or 2.0.1.")] = "1.6",
    password: Annotated[
        str | None,
        typer.Option(
            envvar="PLUGSTREAM_STATION_PASSWORD",
            help="HTTP Basic password (the username is the station id).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the station keeps its state (default: ./station-ID).")
    ] = None,
    security_profile: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=3,
            help="OCPP security profile 0-3 (default: the station's, 0 at first); "
            "2 and 3 need wss://, and it can only be raised.",
        ),
    ] = None,
    trust: Annotated[
        Path | None,
        typer.Option(help="PEM of a CSMS root certificate to trust (installed in the data dir)."),
    ] = None,
    client_cert: Annotated[
        Path | None,
        typer.Option(help="PEM of the station's certificate (profile 3), with --client-key."),
    ] = None,
    client_key: Annotated[
        Path | None, typer.Option(help="PEM of the station certificate's private key.")
    ] = None,
    network_stack: Annotated[
        bool | None,
        typer.Option(
            "--network-stack/--no-network-stack",
            help="The station's own network stack: NTP clock gate (pool.ntp.org), the "
            "article's DNS order, managed links. Default: on when a flag below is given, "
            "else off (the OS's resolver and routing, as before).",
        ),
    ] = None,
    dns: Annotated[
        list[str] | None,
        typer.Option("--dns", help="A DHCP DNS server (repeat: primary first); overrides a lease."),
    ] = None,
    dns_fallback: Annotated[
        list[str] | None,
        typer.Option(
            help="A fallback DNS server (repeat; default the article's 1.1.1.1, 1.0.0.1)."
        ),
    ] = None,
    no_dns_fallback: Annotated[
        bool, typer.Option("--no-dns-fallback", help="No fallback DNS servers at all.")
    ] = False,
    ntp_server: Annotated[
        str | None,
        typer.Option(
            help="HOST[:PORT]: a lab or test NTP server (the product's is pool.ntp.org:123)."
        ),
    ] = None,
    link: Annotated[
        list[str] | None,
        typer.Option(
            "--link",
            help="IFACE=ethernet|wifi|lte (repeat): the links to manage, best first "
            "Ethernet > WiFi > LTE (default: the OS's routing).",
        ),
    ] = None,
    link_hold_down: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds a better link must stay healthy before failback."),
    ] = 60.0,
    wifi_ssid: Annotated[str | None, typer.Option(help="The WiFi network's SSID.")] = None,
    wifi_passphrase: Annotated[
        str | None,
        typer.Option(envvar="PLUGSTREAM_WIFI_PASSPHRASE", help="The WiFi WPA2 passphrase."),
    ] = None,
    wifi_channel: Annotated[
        int | None, typer.Option(help="The WiFi channel: 2.4 GHz, 1 to 11 (the article).")
    ] = None,
    dhcp: Annotated[
        str | None,
        typer.Option(
            help="IFACE: get the address and DNS servers by DHCP on it, with the station's "
            "own client (needs root)."
        ),
    ] = None,
    dhcp_lease: Annotated[
        str | None,
        typer.Option(
            help="IFACE: the system's DHCP client runs on it; take the DNS servers from its "
            "lease (systemd-networkd, dhclient, dhcpcd)."
        ),
    ] = None,
    time_scale: Annotated[
        float,
        typer.Option(
            "--time-scale",
            help="Run the station's timers (heartbeat, meter samples, its WebSocket pings) "
            "this many times as fast as the wall clock: a lab hour in a minute at 60. "
            "The network (NTP poll, DHCP, timeouts) stays in real time.",
        ),
    ] = 1.0,
) -> None:
    """Run one station; control it on stdin: plug, swipe TAG, unplug, fault CODE, clear, status, quit."""
    from plugstream.station.run import MODELS, SetupError, check_csms_url, run_station

    network = _station_network(
        network_stack,
        dns=dns or [],
        dns_fallback=dns_fallback,
        no_dns_fallback=no_dns_fallback,
        ntp_server=ntp_server,
        links=link or [],
        hold_down=link_hold_down,
        wifi=(wifi_ssid, wifi_passphrase, wifi_channel),
        dhcp=dhcp,
        dhcp_lease=dhcp_lease,
    )
    if not time_scale > 0:  # also NaN
        raise typer.BadParameter(
            f"the time scale must be positive, not {time_scale:g}", param_hint="'--time-scale'"
        )
    if time_scale != 1.0 and setup is not None:
        raise typer.BadParameter("--time-scale is not available with --setup yet")

    if setup is not None:
        if model not in MODELS:
            raise typer.BadParameter(f"use 7 or 22, not {model}", param_hint="'--model'")
        if data_dir is None:
            raise typer.BadParameter("--setup needs the station's --data-dir (its factory state)")
        from plugstream.station.provisioning import run_with_setup

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        # on a site network: DHCP, NTP and the DNS order before the setup call (Table 2)
        raise typer.Exit(
            asyncio.run(
                run_with_setup(
                    MODELS[model], data_dir, setup, retry_max=setup_retry, network=network
                )
            )
        )
    if station_id is None or csms is None:
        raise typer.BadParameter("give --id and --csms, or --setup URL")
    if not station_id or any(c.isspace() or c == "/" for c in station_id):
        raise typer.BadParameter(f"not a station id: {station_id!r}", param_hint="'--id'")
    if model not in MODELS:
        raise typer.BadParameter(f"use 7 or 22, not {model}", param_hint="'--model'")
    if ocpp not in ("1.6", "2.0.1"):
        raise typer.BadParameter(f"use 1.6 or 2.0.1, not {ocpp!r}", param_hint="'--ocpp'")
    problem = check_csms_url(csms)
    if problem is not None:
        raise typer.BadParameter(problem, param_hint="'--csms'")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if (client_cert is None) != (client_key is None):
        raise typer.BadParameter(
            "give --client-cert and --client-key together", param_hint="'--client-cert'"
        )
    directory = data_dir if data_dir is not None else Path(f"station-{station_id}")
    try:
        code = asyncio.run(
            run_station(
                station_id,
                MODELS[model],
                csms,
                directory,
                password=password,
                ocpp=ocpp,
                security_profile=security_profile,
                trust=trust,
                client_cert=client_cert,
                client_key=client_key,
                network=network,
                time_scale=time_scale,
            )
        )
    except SetupError as exc:
        print(f"plugstream: error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _ip(value: str, flag: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise typer.BadParameter(f"not an IP address: {value!r}", param_hint=flag) from None


def _host_port(value: str, default_port: int, flag: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT``."""
    host, port = value, default_port
    if value.startswith("["):
        inside, _, rest = value[1:].partition("]")
        host = inside
        if rest:
            if not rest.startswith(":"):
                raise typer.BadParameter(f"use HOST[:PORT], not {value!r}", param_hint=flag)
            port_text = rest[1:]
            port = int(port_text) if port_text.isdigit() else -1
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        port = int(port_text) if port_text.isdigit() else -1
    if not host or not 1 <= port <= 65535:
        raise typer.BadParameter(f"use HOST[:PORT], not {value!r}", param_hint=flag)
    return host, port


def _station_network(
    enabled: bool | None,
    *,
    dns: list[str],
    dns_fallback: list[str] | None,
    no_dns_fallback: bool,
    ntp_server: str | None,
    links: list[str],
    hold_down: float,
    wifi: tuple[str | None, str | None, int | None],
    dhcp: str | None = None,
    dhcp_lease: str | None = None,
) -> Any:
    """The ``StationNetwork`` the flags ask for, or None (no network stack: today's
    behaviour, so plain loopback runs never ask 1.1.1.1 or pool.ntp.org). Flag errors are
    ``typer.BadParameter``: one line, exit code 2."""
    from plugstream.net.dns import ARTICLE_FALLBACKS
    from plugstream.net.links import WifiConfig
    from plugstream.net.ntp import NTP_HOST, NTP_PORT, CorrectedClock
    from plugstream.station.network import StationNetwork, parse_links

    asked = bool(dns or dns_fallback or no_dns_fallback or ntp_server or links or dhcp)
    asked = asked or dhcp_lease is not None
    if dhcp is not None and dhcp_lease is not None:
        raise typer.BadParameter("give --dhcp or --dhcp-lease, not both", param_hint="'--dhcp'")
    for flag, iface in (("'--dhcp'", dhcp), ("'--dhcp-lease'", dhcp_lease)):
        if iface is not None and not Path("/sys/class/net", iface).exists():
            raise typer.BadParameter(f"no such interface: {iface}", param_hint=flag)
    asked = asked or any(w is not None for w in wifi)
    if enabled is False:
        if asked:
            raise typer.BadParameter(
                "--no-network-stack cannot go with --dns, --dns-fallback, --ntp-server, "
                "--link, --dhcp, --dhcp-lease or --wifi-*",
                param_hint="'--no-network-stack'",
            )
        return None
    if not asked and not enabled:
        return None
    if dns_fallback and no_dns_fallback:
        raise typer.BadParameter(
            "give --dns-fallback or --no-dns-fallback", param_hint="'--no-dns-fallback'"
        )
    servers = [_ip(d, "'--dns'") for d in dns]
    fallbacks: list[str] = (
        [] if no_dns_fallback else [_ip(d, "'--dns-fallback'") for d in dns_fallback or []]
    )
    if not fallbacks and not no_dns_fallback:
        fallbacks = list(ARTICLE_FALLBACKS)
    ntp_host, ntp_port = (
        (NTP_HOST, NTP_PORT)
        if ntp_server is None
        else _host_port(ntp_server, NTP_PORT, "'--ntp-server'")
    )
    wifi_config = None
    ssid, passphrase, channel = wifi
    if ssid is not None or passphrase is not None or channel is not None:
        if ssid is None or passphrase is None or channel is None:
            raise typer.BadParameter(
                "give --wifi-ssid, --wifi-passphrase and --wifi-channel together",
                param_hint="'--wifi-channel'",
            )
        try:
            wifi_config = WifiConfig(ssid, passphrase, channel)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--wifi-channel'") from None
    try:
        managed = parse_links(links)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--link'") from None
    return StationNetwork(
        clock=CorrectedClock(),
        ntp_host=ntp_host,
        ntp_port=ntp_port,
        dhcp_dns=servers,
        dns_fallbacks=fallbacks,
        links=managed,
        wifi=wifi_config,
        link_hold_down=hold_down,
        dhcp_interface=dhcp or dhcp_lease,
        dhcp_system=dhcp_lease is not None,
        dns_from_dhcp=not servers,
    )


pki_app = typer.Typer(
    help="The PKI: CSMS and manufacturer roots, server and station certificates.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(pki_app, name="pki")

_PkiDir = Annotated[
    Path, typer.Option("--dir", help="The PKI directory (init creates it or sets it to 0700).")
]


def _pki_failed(exc: Exception) -> typer.Exit:
    """A PKI error (missing key, expired certificate, bad CSR): one line and exit 1."""
    print(f"plugstream: error: {exc}", file=sys.stderr)
    return typer.Exit(1)


@pki_app.command("init")
def pki_init(
    directory: _PkiDir,
    operator: Annotated[str, typer.Option(help="The operator (CPO): O of station certificates.")],
    manufacturer: Annotated[
        str, typer.Option(help="The manufacturer: O of the manufacturer root.")
    ] = "PlugStream",
) -> None:
    """Create the CSMS root CA, the manufacturer root CA and the firmware-signing certificate."""
    from plugstream.pki.authority import PKIError
    from plugstream.pki.keystore import PKIStore

    for flag, value in (("--operator", operator), ("--manufacturer", manufacturer)):
        if not value.strip():
            raise typer.BadParameter("must not be empty", param_hint=f"'{flag}'")
    try:
        PKIStore(directory).init(operator, manufacturer=manufacturer)
    except PKIError as exc:
        raise _pki_failed(exc) from None
    console.print(f"PKI created in {directory} for operator {operator!r}")


@pki_app.command("init-v2g")
def pki_init_v2g(
    directory: _PkiDir,
    operator: Annotated[str, typer.Option(help="The operator (CPO): O of the V2G CAs.")],
    ocsp_url: Annotated[
        str | None,
        typer.Option(
            help="The OCSP URL the V2G certificates name (AIA), e.g. "
            "https://cloud.example/ocsp; default: the cloud's --public-url + /ocsp."
        ),
    ] = None,
) -> None:
    """Create the V2G (ISO 15118) root CA and its sub-CA, which signs the stations' V2G
    certificates; the cloud started with --pki serves their OCSP status at /ocsp."""
    from plugstream.pki.authority import PKIError
    from plugstream.pki.v2g import init_v2g

    if not operator.strip():
        raise typer.BadParameter("must not be empty", param_hint="'--operator'")
    if ocsp_url is not None and not ocsp_url.startswith(("http://", "https://")):
        raise typer.BadParameter("must be an http:// or https:// URL", param_hint="'--ocsp-url'")
    try:
        init_v2g(directory, operator, ocsp_url=ocsp_url)
    except PKIError as exc:
        raise _pki_failed(exc) from None
    console.print(f"V2G root and sub-CA created in {directory} for operator {operator!r}")


@pki_app.command("issue-server")
def pki_issue_server(
    directory: _PkiDir,
    name: Annotated[str, typer.Option(help="DNS name of the server (the OCPP or setup name).")],
    ip: Annotated[
        list[str] | None, typer.Option("--ip", help="An IP address it serves on (repeat).")
    ] = None,
    key_type: Annotated[
        str,
        typer.Option(
            help="ec (the ECDHE-ECDSA suites) or rsa (the RSA suites, NAME.rsa.pem); "
            "a CSMS serves one of each (A00.FR.318)."
        ),
    ] = "ec",
) -> None:
    """Issue a TLS server certificate from the CSMS root: NAME.pem and NAME.key in DIR/server."""
    import ipaddress

    from plugstream.pki.authority import PKIError
    from plugstream.pki.keystore import PKIStore

    if key_type not in ("ec", "rsa"):
        raise typer.BadParameter(f"use ec or rsa, not {key_type!r}", param_hint="'--key-type'")
    for address in ip or ():
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise typer.BadParameter(
                f"not an IP address: {address!r}", param_hint="'--ip'"
            ) from None
    try:
        cert, key = PKIStore(directory).issue_server(
            name, ips=ip or (), key_type="rsa" if key_type == "rsa" else "ec"
        )
    except PKIError as exc:
        raise _pki_failed(exc) from None
    console.print(f"certificate {cert}\nkey         {key}")


@pki_app.command("sign-csr")
def pki_sign_csr(
    directory: _PkiDir,
    csr: Annotated[Path, typer.Option(help="The station's CSR (PEM).")],
    out: Annotated[
        Path | None, typer.Option(help="Write the certificate here (default: stdout).")
    ] = None,
) -> None:
    """Sign a station's CSR with the CSMS root: CN = its serial number, O = the operator."""
    from plugstream.pki.authority import PKIError
    from plugstream.pki.keystore import PKIStore

    try:
        pem, _ = PKIStore(directory).sign_csr(csr)
    except PKIError as exc:
        raise _pki_failed(exc) from None
    if out is None:
        sys.stdout.write(pem.decode())
        return
    try:
        out.write_bytes(pem)
    except OSError as exc:
        raise _pki_failed(PKIError(f"{out}: cannot write: {exc.strerror}")) from None
    console.print(f"certificate {out}")


@pki_app.command("factory")
def pki_factory(
    directory: _PkiDir,
    serial: Annotated[str, typer.Option(help="The station's serial number (its OCPP id).")],
    data_dir: Annotated[Path, typer.Option(help="The new station's data dir.")],
    setup_url: Annotated[str, typer.Option(help="The setup service's https:// URL.")],
) -> None:
    """Put a new station's factory state in DATA_DIR: a manufacturer certificate (CN =
    serial), the CSMS root to trust, the manufacturer root for firmware, the setup URL."""
    from plugstream.pki.authority import PKIError
    from plugstream.pki.keystore import PKIStore
    from plugstream.station.provisioning import factory_install

    pki = PKIStore(directory)
    try:
        maker = pki.manufacturer_root()
        issued = maker.issue_client(serial, organization=maker.organization)
        trust = pki.csms_root().root_pem
        factory_install(
            data_dir,
            serial,
            issued.cert_pem,
            issued.key_pem,
            trust,
            setup_url,
            manufacturer_root_pem=maker.root_pem,
        )
    except (PKIError, ValueError) as exc:
        raise _pki_failed(exc) from None
    console.print(f"station {serial}: factory state in {data_dir} (setup {setup_url})")


@pki_app.command("show")
def pki_show(directory: _PkiDir) -> None:
    """List every certificate in the PKI directory with its issuer and validity."""
    from plugstream.pki.authority import PKIError
    from plugstream.pki.keystore import PKIStore

    try:
        entries = PKIStore(directory).show()
    except PKIError as exc:
        raise _pki_failed(exc) from None
    # One plain line per certificate: a table squashes names at 80 columns; lines grep.
    width = max((len(str(e.path.relative_to(directory))) for e in entries), default=0)
    for e in entries:
        file = str(e.path.relative_to(directory))
        sys.stdout.write(
            f"{file:<{width}}  {e.status:<13}  until {e.not_after:%Y-%m-%d %H:%M} UTC"
            f"  CN={e.subject}  issued by CN={e.issuer}\n"
        )


def _traffic_report(counter: ByteCounter) -> dict[str, Any]:
    from plugstream.net.accounting import ARTICLE_CYCLE_BYTES, ARTICLE_DAY_BYTES

    def figures(tx: int, rx: int, reference: int | None = None) -> dict[str, object]:
        out: dict[str, object] = {"tx": tx, "rx": rx, "total": tx + rx}
        if reference is not None:
            out["of_article"] = (tx + rx) / reference
        return out

    tx, rx = counter.totals()
    otx, orx = counter.outside_cycles()
    days = []
    for day, links in counter.per_day().items():
        dtx = sum(t for t, _ in links.values())
        drx = sum(r for _, r in links.values())
        days.append(
            {
                "date": day.isoformat(),
                **figures(dtx, drx, ARTICLE_DAY_BYTES),
                "links": {link: figures(t, r) for link, (t, r) in links.items()},
            }
        )
    cycles = [
        {
            "cycle_id": cid,
            "started": c.started.isoformat(),
            "ended": None if c.ended is None else c.ended.isoformat(),
            **figures(c.tx, c.rx, ARTICLE_CYCLE_BYTES),
        }
        for cid, c in counter.cycles().items()
    ]
    return {
        "unit": "bytes",
        "article": {"day_bytes": ARTICLE_DAY_BYTES, "cycle_bytes": ARTICLE_CYCLE_BYTES},
        "totals": figures(tx, rx),
        "outside_cycles": figures(otx, orx),
        "days": days,
        "cycles": cycles,
        "links": {link: figures(t, r) for link, (t, r) in counter.per_link().items()},
    }


def _print_traffic(report: dict[str, Any]) -> None:
    def n(value: int) -> str:
        return f"{value:,}"

    def pct(share: float) -> str:
        return f"{share:.1%}"

    def table(title: str, header: tuple[str, ...], text: int, rows: list[list[str]]) -> Table:
        """The first ``text`` columns may wrap; figures never do, nor are they cut."""
        out = Table(title=title)
        for i, column in enumerate(header):
            if i < text:
                out.add_column(column, overflow="fold")
            else:
                widest = max([len(column), *(len(row[i]) for row in rows)])
                out.add_column(column, justify="right", no_wrap=True, min_width=widest)
        for row in rows:
            out.add_row(*row)
        return out

    day_mb = report["article"]["day_bytes"] / 1e6
    rows = [
        [d["date"], n(d["tx"]), n(d["rx"]), n(d["total"]), pct(d["of_article"])]
        for d in report["days"]
    ]
    header: tuple[str, ...] = ("UTC day", "tx", "rx", "total", "of article")
    console.print(table(f"Per day (bytes; article: ~{day_mb:g} MB a day)", header, 1, rows))

    cycle_mb = report["article"]["cycle_bytes"] / 1e6
    rows = []
    for c in report["cycles"]:
        started = c["started"][:16].replace("T", " ")
        ended = "open" if c["ended"] is None else c["ended"][:16].replace("T", " ")
        figures = [n(c["tx"]), n(c["rx"]), n(c["total"]), pct(c["of_article"])]
        rows.append([c["cycle_id"], f"{started} to {ended}", *figures])
    o = report["outside_cycles"]
    rows.append(["(outside cycles)", "", n(o["tx"]), n(o["rx"]), n(o["total"]), ""])
    header = ("cycle", "UTC", "tx", "rx", "total", "of article")
    title = f"Per charge cycle (bytes; article: ~{cycle_mb:g} MB a cycle)"
    console.print(table(title, header, 2, rows))

    rows = [[link, n(f["tx"]), n(f["rx"]), n(f["total"])] for link, f in report["links"].items()]
    console.print(table("Per link (bytes, days kept)", ("link", "tx", "rx", "total"), 1, rows))
    t = report["totals"]
    console.print(f"total: tx {n(t['tx'])}, rx {n(t['rx'])}, {n(t['total'])} bytes")


app.add_typer(firmware_app, name="firmware")
app.add_typer(lab_app, name="lab")


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors are one line on stderr and exit code 2."""
    try:
        result = app(args=argv, standalone_mode=False)
    except click.UsageError as exc:
        print(f"plugstream: error: {exc.format_message()}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        print("plugstream: aborted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
