"""The control console of a station process: a person's commands on standard input.

Shared by ``plugstream station run`` (:mod:`~plugstream.station.run`) and
``plugstream station run --setup`` (:mod:`~plugstream.station.provisioning`). The
console opens no network port: it is the process's standard input, one command a
line (see :data:`HELP`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TextIO

from plugstream.station.connector import ChargePointErrorCode, InvalidTransition
from plugstream.station.ev import CITY_CAR, FAMILY_CAR, PERFORMANCE_CAR, PLUG_IN_HYBRID, Ev
from plugstream.station.runtime import Station

__all__ = ["DRAIN_S", "EVS", "HELP", "Controller", "drain", "read_console"]

EVS = {
    "city": CITY_CAR,
    "family": FAMILY_CAR,
    "performance": PERFORMANCE_CAR,
    "phev": PLUG_IN_HYBRID,
}
HELP = (
    "commands: plug [city|family|performance|phev], swipe TAG, unplug, fault CODE, clear, "
    "status, quit"
)
DRAIN_S = 5.0  # on a clean stop: how long the journal may take to reach the CSMS
_FAULTS = sorted(
    c.value
    for c in ChargePointErrorCode
    if c not in (ChargePointErrorCode.NO_ERROR, ChargePointErrorCode.EV_COMMUNICATION_ERROR)
)


class Controller:
    """Carries out the console's commands on a station (1.6 or 2.0.1)."""

    def __init__(self, station: Station, out: TextIO, err: TextIO) -> None:
        self.station = station
        self.out = out
        self.err = err
        self.quit = asyncio.Event()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def error(self, text: str) -> None:
        self.err.write(f"plugstream: error: {text}\n")
        self.err.flush()

    async def serve(self, lines: asyncio.Queue[str | None]) -> None:
        """Carry out the commands of ``lines`` until the end of input: then the station
        runs on as a service, until a signal."""
        while True:
            line = await lines.get()
            if line is None:
                return
            await self.handle(line)

    async def handle(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        command, args = words[0].lower(), words[1:]
        try:
            await self._dispatch(command, args)
        except (InvalidTransition, ValueError) as exc:
            self.error(f"{command}: {exc}")

    async def _dispatch(self, command: str, args: list[str]) -> None:
        st = self.station
        if command == "plug" and len(args) <= 1:
            kind = args[0].lower() if args else "family"
            if kind not in EVS:
                raise ValueError(f"no car {kind!r}; use one of {', '.join(EVS)}")
            st.plug_in(Ev(EVS[kind]))
            self.say(f"plugged in: {EVS[kind].name}")
        elif command == "swipe" and len(args) == 1:
            accepted = await st.swipe(args[0])
            self.say(f"swipe {args[0]}: {'accepted' if accepted else 'rejected'}")
        elif command == "unplug" and not args:
            if st.hardware.ev is None:
                raise InvalidTransition("no car is plugged in")
            st.unplug()
            self.say("unplugged")
        elif command == "fault" and len(args) == 1:
            code = _fault_code(args[0])
            st.fault(code)  # the contactor trips: an ongoing session ends
            self.say(f"fault: {code.value}")
        elif command == "clear" and not args:
            st.clear_fault()
            self.say("fault cleared")
        elif command == "status" and not args:
            self.say(self.status())
        elif command == "quit" and not args:
            self.quit.set()
        elif command in ("plug", "swipe", "unplug", "fault", "clear", "status", "quit"):
            raise ValueError(f"wrong arguments; {HELP}")
        else:
            self.error(f"unknown command {command!r}; {HELP}")

    def status(self) -> str:
        st = self.station
        st.hardware.advance(st.now().timestamp())
        energy = int(st.hardware.measurements().energy_wh)
        connector = st.connector_status()
        transaction = "none" if st.transaction is None else st.transaction.describe()
        if st.online:
            link = "connected"
        elif st.endpoint is not None:
            link = f"connected, not registered ({st.registration or 'booting'})"
        else:
            link = "offline"
        network = st.network
        if network is not None and network.active_link is not None:
            link += f" (link {network.active_link})"
        fault = st.connector.error_code.value
        display = getattr(st, "cost_display", None)  # 2.0.1: tariff and cost (I02, I03)
        cost = display.describe() if display is not None else ""
        return (
            f"connector {connector}, error {fault}, energy {energy} Wh, "
            f"transaction {transaction}, {link}" + (f", {cost}" if cost else "")
        )


def _fault_code(text: str) -> ChargePointErrorCode:
    for code in _FAULTS:
        if code.casefold() == text.casefold():
            return ChargePointErrorCode(code)
    raise ValueError(f"no fault {text!r}; use one of {', '.join(_FAULTS)}")


def read_console(fd: int) -> asyncio.Queue[str | None]:
    """The lines of ``fd`` as they come, then None at the end of input. A daemon thread
    reads them, so that a blocked read never holds up the event loop nor the exit."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_read_lines, args=(fd, loop, lines), daemon=True).start()
    return lines


def _read_lines(fd: int, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """In a daemon thread: raw reads (no buffer lock held at interpreter exit)."""
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            loop.call_soon_threadsafe(lines.put_nowait, raw.decode(errors="replace"))
    if pending:
        loop.call_soon_threadsafe(lines.put_nowait, pending.decode(errors="replace"))
    loop.call_soon_threadsafe(lines.put_nowait, None)


async def drain(station: Station, timeout: float) -> None:
    """Give the journal (StopTransaction, meter values) a bounded time to be delivered
    before a clean stop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while station.online and station.journal.head() is not None and loop.time() < deadline:
        await asyncio.sleep(0.05)
