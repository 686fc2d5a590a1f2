"""The ``plugstream`` command. Thin: it parses flags and wires the parts together."""

from __future__ import annotations

import asyncio
import logging
import sys

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
