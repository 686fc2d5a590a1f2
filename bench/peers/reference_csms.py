"""A reference OCPP 1.6 central system, written the straightforward way.

The peer that ``bench/cloud.py`` measures PlugStream Cloud against: an OCPP 1.6J
CSMS built on the mobilityhouse ``ocpp`` library (``ocpp.v16.ChargePoint``, its
``@on`` routing, its JSON schema validation with the library's default settings)
and ``websockets.serve``, as the library's examples build one. It does the same
durable work as PlugStream Cloud does for the benchmark's messages, each answered
only after its data is committed to SQLite (stdlib ``sqlite3``, WAL,
``synchronous=FULL``), with one commit per message, the database call made in
the handler directly:

* BootNotification: the station's row is inserted or updated (auto-register);
* Heartbeat: the station's ``last_seen`` is updated;
* MeterValues: every sampled value is inserted as one row;
* StatusNotification: the connector's status is inserted or updated.

Stations connect to ``ws://HOST:PORT/ocpp/{station id}`` with the ``ocpp1.6``
subprotocol; anything else is refused. It prints ``ready`` when it listens and
runs until SIGTERM or SIGINT.

    python bench/peers/reference_csms.py --port 9100 --db /tmp/reference.db
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, RegistrationStatus
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

PATH_PREFIX = "/ocpp/"
SUBPROTOCOL = Subprotocol("ocpp1.6")

SCHEMA = """
CREATE TABLE IF NOT EXISTS station (
    station_id TEXT PRIMARY KEY,
    vendor TEXT, model TEXT, serial_number TEXT, firmware_version TEXT,
    registered_at TEXT NOT NULL, last_boot TEXT, last_seen TEXT
);
CREATE TABLE IF NOT EXISTS connector_status (
    station_id TEXT NOT NULL, connector_id INTEGER NOT NULL,
    status TEXT NOT NULL, error_code TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (station_id, connector_id)
);
CREATE TABLE IF NOT EXISTS meter_value (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id TEXT NOT NULL, connector_id INTEGER NOT NULL, transaction_id INTEGER,
    timestamp TEXT NOT NULL, measurand TEXT NOT NULL, value TEXT NOT NULL,
    unit TEXT, phase TEXT, context TEXT, location TEXT
);
CREATE INDEX IF NOT EXISTS meter_value_station ON meter_value (station_id, timestamp);
"""


Handler = TypeVar("Handler", bound=Callable[..., Any])


def handles(action: Action) -> Callable[[Handler], Handler]:
    """The library's ``@on(action)``, typed."""
    decorator: Callable[[Handler], Handler] = on(action)
    return decorator


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)  # explicit transactions below
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


class CentralSystemChargePoint(ChargePoint):  # type: ignore[misc]  # the library is untyped
    """One station's connection; the handlers are the library's usual ``@on`` methods."""

    def __init__(self, station_id: str, connection: ServerConnection, db: sqlite3.Connection):
        super().__init__(station_id, connection)
        self.db = db

    @handles(Action.boot_notification)
    def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **kwargs: Any
    ) -> call_result.BootNotification:
        at = now()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO station (station_id, vendor, model, serial_number, firmware_version,"
                " registered_at, last_boot, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (station_id) DO UPDATE SET vendor = excluded.vendor,"
                " model = excluded.model, serial_number = excluded.serial_number,"
                " firmware_version = excluded.firmware_version,"
                " last_boot = excluded.last_boot, last_seen = excluded.last_seen",
                (
                    self.id,
                    charge_point_vendor,
                    charge_point_model,
                    kwargs.get("charge_point_serial_number"),
                    kwargs.get("firmware_version"),
                    at,
                    at,
                    at,
                ),
            )
        return call_result.BootNotification(
            current_time=at, interval=3600, status=RegistrationStatus.accepted
        )

    @handles(Action.heartbeat)
    def on_heartbeat(self) -> call_result.Heartbeat:
        at = now()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE station SET last_seen = ? WHERE station_id = ?", (at, self.id))
        return call_result.Heartbeat(current_time=at)

    @handles(Action.meter_values)
    def on_meter_values(
        self,
        connector_id: int,
        meter_value: list[dict[str, Any]],
        transaction_id: int | None = None,
        **kwargs: Any,
    ) -> call_result.MeterValues:
        rows = [
            (
                self.id,
                connector_id,
                transaction_id,
                mv["timestamp"],
                sv.get("measurand", "Energy.Active.Import.Register"),
                sv["value"],
                sv.get("unit"),
                sv.get("phase"),
                sv.get("context"),
                sv.get("location"),
            )
            for mv in meter_value
            for sv in mv["sampled_value"]
        ]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO meter_value (station_id, connector_id, transaction_id, timestamp,"
                " measurand, value, unit, phase, context, location)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.db.execute(
                "UPDATE station SET last_seen = ? WHERE station_id = ?", (now(), self.id)
            )
        return call_result.MeterValues()

    @handles(Action.status_notification)
    def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **kwargs: Any
    ) -> call_result.StatusNotification:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO connector_status (station_id, connector_id, status, error_code,"
                " updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (station_id, connector_id)"
                " DO UPDATE SET status = excluded.status, error_code = excluded.error_code,"
                " updated_at = excluded.updated_at",
                (self.id, connector_id, status, error_code, kwargs.get("timestamp") or now()),
            )
        return call_result.StatusNotification()


async def serve_forever(host: str, port: int, db_path: str) -> None:
    db = open_db(db_path)

    async def handler(connection: ServerConnection) -> None:
        path = connection.request.path if connection.request is not None else ""
        station_id = path[len(PATH_PREFIX) :] if path.startswith(PATH_PREFIX) else ""
        if not station_id or "/" in station_id or connection.subprotocol != SUBPROTOCOL:
            await connection.close(1008, "unknown path or subprotocol")
            return
        charge_point = CentralSystemChargePoint(station_id, connection, db)
        try:
            await charge_point.start()
        except Exception:  # the station went away: the usual way start() ends
            return

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler, host, port, subprotocols=[SUBPROTOCOL], ping_interval=30, ping_timeout=60
    ):
        print("ready", flush=True)
        await stop
    db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--db", required=True, help="SQLite database file")
    args = parser.parse_args(argv)
    asyncio.run(serve_forever(args.host, args.port, args.db))
    return 0


if __name__ == "__main__":
    sys.exit(main())
