"""The ``plugstream`` command. Thin: it parses flags and wires the parts together."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from plugstream import __version__

app = typer.Typer(
    name="plugstream",
    help="PlugStream: an open-source EV charging network (OCPP 1.6J / 2.0.1 / 2.1).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.command()
def version() -> None:
    """Print the PlugStream version."""
    console.print(f"plugstream {__version__}")


@app.command()
def selfcheck() -> None:
    """Run the OCPP protocol self-check on loopback: a CSMS and a station, every version."""
    raise typer.Exit(_selfcheck())


@app.command()
def demo() -> None:
    """Run the demo on the embedded defaults (for now: the protocol self-check)."""
    console.print("[bold]PlugStream demo[/bold] — protocol self-check over loopback WebSockets\n")
    raise typer.Exit(_selfcheck())


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


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter("must be greater than 0")
    return value


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
        typer.Option("--auto-register", help="Register unknown stations instead of refusing them."),
    ] = False,
    ping_interval: Annotated[
        float, typer.Option(callback=_positive, help="Seconds between WebSocket pings.")
    ] = 30.0,
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
    heartbeat_interval: Annotated[
        int, typer.Option(min=1, help="Heartbeat interval handed out in BootNotification (s).")
    ] = 3600,
    tls_cert: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Server certificate (PEM): wss, https."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Private key of --tls-cert.")
    ] = None,
) -> None:
    """Serve PlugStream Cloud: OCPP at /ocpp/{stationId} and the REST API at /api/v1/."""
    from plugstream.cloud.config import CloudConfig
    from plugstream.cloud.serve import run

    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    config = CloudConfig(
        host=host,
        port=port,
        db=db,
        api_token=api_token or None,
        auto_register=auto_register,
        heartbeat_interval=heartbeat_interval,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        call_timeout=call_timeout,
        max_frame_bytes=max_frame_bytes,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    raise typer.Exit(run(config))


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
