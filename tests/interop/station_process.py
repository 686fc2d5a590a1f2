"""``plugstream station run`` as a real subprocess, driven on its stdin like a person would.

The journeys kill the station with SIGKILL (a power cut: no clean shutdown, no flush)
and start it again on the same ``--data-dir``, so it must be a separate process, not a
task in the test's loop. Every wait is for a condition (a line printed, a status shown,
a register persisted) and bounded; :meth:`StationProcess.kill` and
:meth:`StationProcess.close` act on the PID this helper started, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from plugstream.station.runtime import STATE_FILE
from tests.support import WAIT, until

__all__ = ["WAIT_S", "StationProcess"]

WAIT_S = WAIT  # the longest a single expectation may take: only a hang reaches it


class StationProcess:
    """One ``plugstream station run`` process; its stdout lines are read into :attr:`lines`."""

    def __init__(
        self,
        station_id: str,
        csms: str,
        data_dir: Path,
        *,
        ocpp: str = "1.6",
        model: int = 22,
        password: str | None = None,
    ) -> None:
        self.station_id = station_id
        self.csms = csms
        self.data_dir = data_dir
        self.ocpp = ocpp
        self.model = model
        self.password = password
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []  # every stdout line, in order, over all runs
        self.errors: list[str] = []  # every stderr line
        self._cursor = 0  # lines before this index were consumed by expect()
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    async def start(self) -> str:
        """Start the process and wait for its banner line; the banner."""
        assert self.proc is None or self.proc.returncode is not None, "already running"
        args = [
            "-m", "plugstream.cli", "station", "run", "--id", self.station_id,
            "--model", str(self.model), "--csms", self.csms, "--ocpp", self.ocpp,
            "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        if self.password is not None:
            args += ["--password", self.password]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(self.proc.stdout, self.lines)),
            asyncio.create_task(self._pump(self.proc.stderr, self.errors)),
        ]
        return await self.expect(lambda line: line.startswith("PlugStream"))

    @staticmethod
    async def _pump(stream: asyncio.StreamReader, sink: list[str]) -> None:
        while raw := await stream.readline():
            sink.append(raw.decode(errors="replace").rstrip("\n"))

    async def send(self, line: str) -> None:
        """Write one control command (``plug``, ``swipe TAG``, ``unplug``, ...)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def expect(self, want: Callable[[str], bool], timeout: float = WAIT_S) -> str:
        """The next not yet consumed stdout line for which ``want`` is true."""

        def next_line() -> str | None:
            while self._cursor < len(self.lines):
                line = self.lines[self._cursor]
                self._cursor += 1
                if want(line):
                    return line
            if self._stdout_closed():
                raise AssertionError(f"{self.station_id} exited ({self._returncode()})")
            return None

        try:
            return await until(next_line, "such a line", timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(
                f"{self.station_id}: {exc}; stdout {self.lines[-10:]!r}, stderr {self.errors[-10:]!r}"
            ) from None

    def _returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def _stdout_closed(self) -> bool:
        """The process exited and all it printed was read: no line can come any more."""
        if self._returncode() is None:
            return False
        return not self._readers or self._readers[0].done()

    async def command(self, line: str, answer: Callable[[str], bool]) -> str:
        """Send a command and wait for the line that answers it."""
        await self.send(line)
        return await self.expect(answer)

    async def status(self) -> str:
        """The ``status`` line: connector, error, energy, transaction, link."""
        return await self.command("status", lambda s: s.startswith("connector "))

    async def wait_status(self, *words: str, timeout: float = WAIT_S) -> str:
        """Ask for ``status`` until its line holds all of ``words``; that line."""
        last = ""

        async def matching() -> str | None:
            nonlocal last
            last = await self.status()
            return last if all(word in last for word in words) else None

        try:
            return await until(matching, f"status with {words!r}", timeout=timeout, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(
                f"{self.station_id}: status never had {words!r}; last {last!r} ({exc})"
            ) from None

    async def energy_wh(self) -> int:
        """The energy register as the ``status`` line shows it."""
        line = await self.status()
        return int(line.split("energy ", 1)[1].split(" Wh", 1)[0])

    def persisted_wh(self) -> Decimal:
        """The energy register as the station last persisted it (``state.json``, which it
        rewrites with every meter sample it journals): what a power cut leaves."""
        try:
            state = json.loads((self.data_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            return Decimal(0)
        return Decimal(str(state.get("energy_wh", "0")))

    async def wait_meter_sample(self) -> None:
        """Charge until the running session has journalled a meter sample, online or
        offline: until the persisted register is past what ``status`` shows now (the
        register saved when the session started is not, ``status`` shows its whole Wh)."""
        now = await self.energy_wh()
        await until(
            lambda: int(self.persisted_wh()) > now,
            f"{self.station_id}: a meter sample persisted past {now} Wh",
            interval=0.05,
        )

    async def plug(self, car: str = "family") -> None:
        await self.command(f"plug {car}", lambda s: s.startswith("plugged in"))

    async def swipe(self, tag: str) -> bool:
        """Present a card; whether the station accepted it."""
        line = await self.command(f"swipe {tag}", lambda s: s.startswith(f"swipe {tag}:"))
        return line.endswith("accepted")

    async def unplug(self) -> None:
        await self.command("unplug", lambda s: s == "unplugged")

    async def kill(self) -> None:
        """SIGKILL by PID: a power cut, the process gets no chance to clean up."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), WAIT_S)
        await self._stop_readers()

    async def quit(self) -> int:
        """``quit`` on stdin: a clean stop; the exit code."""
        assert self.proc is not None
        await self.send("quit")
        code = await asyncio.wait_for(self.proc.wait(), WAIT_S)
        await self._stop_readers()
        return code

    async def close(self) -> None:
        """Make sure the process is gone (SIGKILL by PID if it still runs); for ``finally``."""
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            await self.kill()
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        await self._stop_readers()

    async def _stop_readers(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._readers, return_exceptions=True), 2.0)
        for task in self._readers:
            task.cancel()
        self._readers = []
