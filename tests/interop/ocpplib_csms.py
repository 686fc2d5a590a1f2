"""An independent central system for the journeys, written with mobilityhouse's ``ocpp`` library.

PlugStream's station must work with any third-party CSMS; this one shares no code
with ``plugstream`` (its own schemas, its own JSON handling, its own CALL
correlation). It listens on 127.0.0.1, speaks 1.6 and 2.0.1 (chosen by the
subprotocol the station offers), answers every CALL a station may send, and records
each CALL it receives, in arrival order, as the raw camelCase payload together with
the answer it gave (or the CALLERROR the library raised, e.g. for a payload that
breaks the library's schemas). It can stop listening (dropping its connections) and
listen again on the same port: a CSMS outage as the station sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import websockets
from ocpp.routing import on as _lib_on
from ocpp.v16 import ChargePoint as LibChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as LibChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from tests.support import WAIT, until

__all__ = ["OcppLibCsms", "Received"]

F = TypeVar("F", bound=Callable[..., Any])


def on(action: str) -> Callable[[F], F]:
    """The library's ``@on`` (route a CALL to the method), typed for mypy."""
    decorator: Callable[[F], F] = _lib_on(action)
    return decorator


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Received:
    """One CALL from a station, as it came over the wire, and what the CSMS answered."""

    station_id: str
    action: str
    payload: dict[str, Any]
    unique_id: str
    connection: int  # which connection (1, 2, ...) of this CSMS it came on
    at: float = field(default_factory=time.monotonic)
    answer: dict[str, Any] | None = None
    error: list[Any] | None = None  # [code, description, details] of a CALLERROR we sent

    @property
    def answered(self) -> bool:
        """Whether the CSMS has answered it (a CALLRESULT or a CALLERROR)."""
        return self.answer is not None or self.error is not None


class _Recording:
    """What both versions' central-system classes share: record, answer, correlate."""

    id: str
    csms: OcppLibCsms
    number: int
    _current: Received | None

    async def route_message(self, raw_msg: str) -> None:
        frame = json.loads(raw_msg)
        if isinstance(frame, list) and frame and frame[0] == 2 and len(frame) == 4:
            record = Received(self.id, str(frame[2]), dict(frame[3]), str(frame[1]), self.number)
            self.csms.received.append(record)
            self._current = record
        elif isinstance(frame, list) and frame and frame[0] in (3, 4):
            self.csms.results[str(frame[1])] = frame
        await super().route_message(raw_msg)  # type: ignore[misc]

    async def _send(self, message: str) -> None:
        frame = json.loads(message)
        record = self._current
        if record is not None and frame[1] == record.unique_id:
            if frame[0] == 3:
                record.answer = frame[2]
            elif frame[0] == 4:
                record.error = frame[2:]
        await super()._send(message)  # type: ignore[misc]


class CentralSystem16(_Recording, LibChargePoint16):  # type: ignore[misc]
    """The 1.6J side of one connection; transactionIds come from the CSMS's counter."""

    def __init__(self, station_id: str, connection: Any, csms: OcppLibCsms, number: int) -> None:
        super().__init__(station_id, connection, response_timeout=WAIT)
        self.csms = csms
        self.number = number
        self._current = None

    def _tag_info(self, id_tag: str) -> dict[str, Any]:
        return {"status": self.csms.tags.get(id_tag, "Invalid")}

    @on("BootNotification")
    def on_boot(self, **_: Any) -> Any:
        return result16.BootNotification(
            current_time=_now(), interval=self.csms.heartbeat_interval, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return result16.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> Any:
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: str, **_: Any) -> Any:
        return result16.Authorize(id_tag_info=self._tag_info(id_tag))

    @on("StartTransaction")
    def on_start(self, id_tag: str, **_: Any) -> Any:
        transaction_id = next(self.csms.transaction_ids)
        return result16.StartTransaction(
            transaction_id=transaction_id, id_tag_info=self._tag_info(id_tag)
        )

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> Any:
        return result16.MeterValues()

    @on("StopTransaction")
    def on_stop(self, id_tag: str | None = None, **_: Any) -> Any:
        if id_tag is None:
            return result16.StopTransaction()
        return result16.StopTransaction(id_tag_info=self._tag_info(id_tag))

    @on("DataTransfer")
    def on_data_transfer(self, **_: Any) -> Any:
        return result16.DataTransfer(status="UnknownVendorId")

    @on("FirmwareStatusNotification")
    def on_firmware_status(self, **_: Any) -> Any:
        return result16.FirmwareStatusNotification()

    @on("DiagnosticsStatusNotification")
    def on_diagnostics_status(self, **_: Any) -> Any:
        return result16.DiagnosticsStatusNotification()

    @on("SecurityEventNotification")
    def on_security_event(self, **_: Any) -> Any:
        return result16.SecurityEventNotification()


class CentralSystem201(_Recording, LibChargePoint201):  # type: ignore[misc]
    """The 2.0.1 side of one connection."""

    def __init__(self, station_id: str, connection: Any, csms: OcppLibCsms, number: int) -> None:
        super().__init__(station_id, connection, response_timeout=WAIT)
        self.csms = csms
        self.number = number
        self._current = None

    def _token_info(self, id_token: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.csms.tags.get(str(id_token.get("id_token")), "Invalid")}

    @on("BootNotification")
    def on_boot(self, **_: Any) -> Any:
        return result201.BootNotification(
            current_time=_now(), interval=self.csms.heartbeat_interval, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return result201.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> Any:
        return result201.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        return result201.Authorize(id_token_info=self._token_info(id_token))

    @on("TransactionEvent")
    def on_transaction_event(self, id_token: dict[str, Any] | None = None, **_: Any) -> Any:
        if id_token is None:
            return result201.TransactionEvent()
        return result201.TransactionEvent(id_token_info=self._token_info(id_token))

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> Any:
        return result201.MeterValues()

    @on("NotifyReport")
    def on_notify_report(self, **_: Any) -> Any:
        return result201.NotifyReport()

    @on("NotifyEvent")
    def on_notify_event(self, **_: Any) -> Any:
        return result201.NotifyEvent()

    @on("SecurityEventNotification")
    def on_security_event(self, **_: Any) -> Any:
        return result201.SecurityEventNotification()

    @on("FirmwareStatusNotification")
    def on_firmware_status(self, **_: Any) -> Any:
        return result201.FirmwareStatusNotification()

    @on("LogStatusNotification")
    def on_log_status(self, **_: Any) -> Any:
        return result201.LogStatusNotification()


CentralSystem = CentralSystem16 | CentralSystem201


class OcppLibCsms:
    """A 1.6 + 2.0.1 central system on 127.0.0.1; :meth:`stop` and :meth:`start` again.

    ``tags`` maps an idTag / idToken to the status Authorize (and StartTransaction,
    TransactionEvent) answers; unknown ones are ``Invalid``. ``transaction_ids``
    hands out the 1.6 transactionIds: StartTransaction's answers are in
    :attr:`received` (``answer["transactionId"]``).
    """

    def __init__(self, *, heartbeat_interval: int = 2, tags: dict[str, str] | None = None) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.tags: dict[str, str] = dict(tags or {})
        self.transaction_ids = itertools.count(1001)
        self.received: list[Received] = []
        self.results: dict[str, list[Any]] = {}  # CALLRESULT/CALLERROR frames to our CALLs
        self.connections: dict[str, CentralSystem] = {}
        self.port = 0
        self._count = 0
        self._server: Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The URL to give a station (it appends ``/`` and its id)."""
        return f"ws://127.0.0.1:{self.port}/ocpp"

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen; on the same port as before when started again."""
        assert self._server is None, "already listening"
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            self.port,
            subprotocols=[Subprotocol("ocpp2.0.1"), Subprotocol("ocpp1.6")],
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close every connection (close code 1001): the CSMS goes away."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)
        self.connections.clear()

    async def _handle(self, ws: ServerConnection) -> None:
        station_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1] if ws.request else ""
        self._count += 1
        cls = CentralSystem201 if ws.subprotocol == "ocpp2.0.1" else CentralSystem16
        cp = cls(station_id, ws, self, self._count)
        self.connections[station_id] = cp
        try:
            with contextlib.suppress(websockets.ConnectionClosed):
                await cp.start()
        finally:
            if self.connections.get(station_id) is cp:
                del self.connections[station_id]

    # -- what the stations sent ----------------------------------------------------------

    def messages(self, station_id: str, *actions: str) -> list[Received]:
        """The CALLs ``station_id`` sent, in order; only ``actions`` when given."""
        return [
            r
            for r in self.received
            if r.station_id == station_id and (not actions or r.action in actions)
        ]

    def payloads(self, station_id: str, action: str) -> list[dict[str, Any]]:
        return [r.payload for r in self.messages(station_id, action)]

    def refused(self) -> list[Received]:
        """CALLs the library answered with a CALLERROR (a schema or protocol violation)."""
        return [r for r in self.received if r.error is not None]

    async def wait_for(
        self,
        station_id: str,
        check: Callable[[list[Received]], bool],
        timeout: float = WAIT,
        *,
        what: str = "",
    ) -> list[Received]:
        """Wait until ``check`` holds for ``station_id``'s CALLs; those CALLs."""
        try:
            await until(lambda: check(self.messages(station_id)), what, timeout=timeout)
        except AssertionError as exc:
            seen = [(r.action, r.payload.get("eventType", "")) for r in self.messages(station_id)]
            raise AssertionError(f"{station_id}: {exc}; last {seen[-15:]!r}") from None
        return self.messages(station_id)

    async def wait_action(
        self, station_id: str, action: str, count: int = 1, timeout: float = WAIT
    ) -> list[Received]:
        """Wait for ``count`` CALLs of ``action`` and the CSMS's answers to them; all of
        them so far. (A CALL is recorded when it arrives, its answer a moment later.)"""
        await self.wait_for(
            station_id,
            lambda rs: sum(r.action == action and r.answered for r in rs) >= count,
            timeout,
            what=f"{count} x {action}, answered",
        )
        return self.messages(station_id, action)

    async def wait_connected(self, station_id: str, timeout: float = WAIT) -> CentralSystem:
        return await until(
            lambda: self.connections.get(station_id), f"{station_id} connected", timeout=timeout
        )

    # -- what the CSMS sends -------------------------------------------------------------

    async def _call(self, station_id: str, payload: Any) -> dict[str, Any]:
        """Send a CALL with the library; the station's raw (camelCase) answer."""
        cp = self.connections.get(station_id)
        if cp is None:
            raise AssertionError(f"{station_id} is not connected")
        unique_id = str(uuid.uuid4())
        await cp.call(payload, suppress=False, unique_id=unique_id)
        frame = self.results.pop(unique_id)
        answer: dict[str, Any] = frame[2]
        return answer

    # 1.6

    async def remote_start(
        self, station_id: str, id_tag: str, connector_id: int | None = 1
    ) -> dict[str, Any]:
        return await self._call(
            station_id, call16.RemoteStartTransaction(id_tag=id_tag, connector_id=connector_id)
        )

    async def remote_stop(self, station_id: str, transaction_id: int) -> dict[str, Any]:
        return await self._call(
            station_id, call16.RemoteStopTransaction(transaction_id=transaction_id)
        )

    async def change_configuration(self, station_id: str, key: str, value: str) -> dict[str, Any]:
        return await self._call(station_id, call16.ChangeConfiguration(key=key, value=value))

    async def get_configuration(
        self, station_id: str, keys: Iterable[str] | None = None
    ) -> dict[str, Any]:
        return await self._call(
            station_id, call16.GetConfiguration(key=None if keys is None else list(keys))
        )

    async def send_local_list_16(
        self, station_id: str, version: int, entries: dict[str, str]
    ) -> dict[str, Any]:
        """A Full local list: idTag -> status."""
        return await self._call(
            station_id,
            call16.SendLocalList(
                list_version=version,
                update_type="Full",
                local_authorization_list=[
                    {"idTag": tag, "idTagInfo": {"status": status}}
                    for tag, status in entries.items()
                ],
            ),
        )

    # 2.0.1

    async def request_start(
        self, station_id: str, id_token: str, remote_start_id: int, evse_id: int | None = 1
    ) -> dict[str, Any]:
        return await self._call(
            station_id,
            call201.RequestStartTransaction(
                id_token={"idToken": id_token, "type": "ISO14443"},
                remote_start_id=remote_start_id,
                evse_id=evse_id,
            ),
        )

    async def request_stop(self, station_id: str, transaction_id: str) -> dict[str, Any]:
        return await self._call(
            station_id, call201.RequestStopTransaction(transaction_id=transaction_id)
        )

    async def set_variables(self, station_id: str, values: dict[str, str]) -> list[dict[str, Any]]:
        """Set ``{"Component.Variable": value}``; the setVariableResult list, in order."""
        data = [
            {
                "component": {"name": name.split(".", 1)[0]},
                "variable": {"name": name.split(".", 1)[1]},
                "attributeValue": value,
            }
            for name, value in values.items()
        ]
        answer = await self._call(station_id, call201.SetVariables(set_variable_data=data))
        results: list[dict[str, Any]] = answer["setVariableResult"]
        return results

    async def get_variables(self, station_id: str, names: Iterable[str]) -> list[dict[str, Any]]:
        """Get ``Component.Variable`` values; the getVariableResult list."""
        data = [
            {"component": {"name": n.split(".", 1)[0]}, "variable": {"name": n.split(".", 1)[1]}}
            for n in names
        ]
        answer = await self._call(station_id, call201.GetVariables(get_variable_data=data))
        results: list[dict[str, Any]] = answer["getVariableResult"]
        return results

    async def send_local_list_201(
        self, station_id: str, version: int, entries: dict[str, str]
    ) -> dict[str, Any]:
        """A Full local list: idToken (ISO14443) -> status."""
        return await self._call(
            station_id,
            call201.SendLocalList(
                version_number=version,
                update_type="Full",
                local_authorization_list=[
                    {
                        "idToken": {"idToken": tag, "type": "ISO14443"},
                        "idTokenInfo": {"status": status},
                    }
                    for tag, status in entries.items()
                ],
            ),
        )
