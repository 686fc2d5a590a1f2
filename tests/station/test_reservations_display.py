"""Reservations and display messages end to end: our own Station201 against PlugStream
Cloud, driven by an operator through the REST API (issue 15, blocks H and O), and the
station's display board on its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from plugstream.station.clock import ManualClock
from plugstream.station.connector import ChargePointErrorCode
from plugstream.station.display import DisplayBoard, notify_parts
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station201 import Station201, StationHandlers201
from tests.cloud.raw_station201 import Hop, hop_cloud, ocpp_url, our_station
from tests.support import running, until

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


async def reserve(hop: Hop, station_id: str, id_token: str, seconds: int) -> dict[str, Any]:
    expiry = hop.clock.now + timedelta(seconds=seconds)
    made = await hop.api.post(
        "/reservations",
        json={
            "station_id": station_id,
            "evse_id": 1,
            "id_token": id_token,
            "expiry_date_time": expiry.isoformat(),
        },
    )
    assert made.status_code == 201, made.text
    shown: dict[str, Any] = made.json()
    assert shown["status"] == "Accepted"
    return shown


async def reservation_once(
    hop: Hop, made: dict[str, Any], status: str, what: str
) -> dict[str, Any]:
    """The cloud's record of the reservation ``made``, once it is ``status``."""

    async def found() -> dict[str, Any] | None:
        shown: dict[str, Any] = (
            await hop.api.get(f"/reservations/{made['reservation_id']}")
        ).json()
        return shown if shown["status"] == status else None

    result: dict[str, Any] = await until(found, what)
    return result


async def connector_status(hop: Hop, station_id: str) -> str | None:
    record = (await hop.api.get(f"/stations/{station_id}")).json()
    statuses = [c["status"] for c in record.get("connectors", []) if c["evse_id"] == 1]
    return statuses[0] if statuses else None


@pytest.mark.socket
async def test_a_reservation_is_used_by_its_idtoken_and_the_cloud_shows_it_used(
    tmp_path: Path,
) -> None:
    async with hop_cloud(tmp_path) as hop:
        for token in ("TAG-R", "TAG-OTHER"):
            put = await hop.api.put(f"/id-tokens/{token}", json={"status": "Accepted"})
            assert put.status_code in (200, 201), put.text
        station, _clock = our_station(hop, "E2E-USED", tmp_path)
        async with running(station, ocpp_url(hop), online=True):
            made = await reserve(hop, "E2E-USED", "TAG-R", 600)
            assert station.connector.status_201.value == "Reserved"

            async def reserved() -> bool:
                return await connector_status(hop, "E2E-USED") == "Reserved"

            await until(reserved, "the cloud sees the connector Reserved")
            station.plug_in(Ev(CITY_CAR, soc=30.0))
            assert not await station.swipe("TAG-OTHER"), "another idToken may not use it"
            assert await station.swipe("TAG-R")
            tx = station.transaction
            assert tx is not None

            shown = await reservation_once(hop, made, "Used", "the reservation Used in the cloud")
            assert shown["transaction_id"] == tx.transaction_id


@pytest.mark.socket
async def test_a_reservation_expires_on_the_station_clock_and_the_cloud_is_told(
    tmp_path: Path,
) -> None:
    async with hop_cloud(tmp_path) as hop:
        station, clock = our_station(hop, "E2E-EXP", tmp_path)
        async with running(station, ocpp_url(hop), online=True):
            made = await reserve(hop, "E2E-EXP", "TAG-X", 60)
            assert station.connector.reservation is not None
            await clock.advance(61)  # the station's time only: the cloud's stands still
            await reservation_once(hop, made, "Expired", "ReservationStatusUpdate Expired stored")
            assert station.connector.reservation is None
            assert station.connector.status_201.value == "Available"
            # the cloud cannot cancel what has ended
            gone = await hop.api.delete(f"/reservations/{made['reservation_id']}")
            assert gone.status_code == 409


@pytest.mark.socket
async def test_a_reservation_cancelled_frees_the_connector(tmp_path: Path) -> None:
    async with hop_cloud(tmp_path) as hop:
        station, _clock = our_station(hop, "E2E-CAN", tmp_path)
        async with running(station, ocpp_url(hop), online=True):
            made = await reserve(hop, "E2E-CAN", "TAG-C", 600)
            cancelled = await hop.api.delete(f"/reservations/{made['reservation_id']}")
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "Cancelled"
            assert station.connector.reservation is None
            # a fault removes a reservation and the station says Removed (H01.FR.16)
            second = await reserve(hop, "E2E-CAN", "TAG-C", 600)
            station.fault(ChargePointErrorCode.GROUND_FAILURE)
            await reservation_once(hop, second, "Removed", "ReservationStatusUpdate Removed stored")


@pytest.mark.socket
async def test_a_display_message_is_set_listed_and_cleared_on_our_station(
    tmp_path: Path,
) -> None:
    async with hop_cloud(tmp_path) as hop:
        station, _clock = our_station(hop, "E2E-MSG", tmp_path)
        async with running(station, ocpp_url(hop), online=True):
            for content, priority in (("Welcome", "NormalCycle"), ("Closed at 22:00", "InFront")):
                made = await hop.api.post(
                    "/stations/E2E-MSG/display-messages",
                    json={"content": content, "priority": priority},
                )
                assert made.status_code == 201, made.text
                assert made.json()["status"] == "Accepted"
            assert sorted(station.display.messages) == [1, 2]
            shown = station.display.shown(station.now())
            assert shown is not None and shown["message"]["content"] == "Closed at 22:00"
            asked = await hop.api.post("/stations/E2E-MSG/display-messages/reports", json={})
            # Accepted; or Complete already, when the parts came before the answer was read
            assert asked.status_code == 201 and asked.json()["status"] in ("Accepted", "Complete")
            request_id = asked.json()["request_id"]

            async def complete() -> dict[str, Any] | None:
                report: dict[str, Any] = (
                    await hop.api.get(f"/stations/E2E-MSG/display-messages/reports/{request_id}")
                ).json()
                return report if report["status"] == "Complete" else None

            report = await until(complete, "the NotifyDisplayMessages stored")
            assert [m["message"]["message"]["content"] for m in report["messages"]] == [
                "Welcome",
                "Closed at 22:00",
            ]
            cleared = await hop.api.delete("/stations/E2E-MSG/display-messages/1")
            assert cleared.status_code == 204
            assert sorted(station.display.messages) == [2]
            # a message for a transaction that is not running is refused (O02)
            refused = await hop.api.post(
                "/stations/E2E-MSG/display-messages",
                json={"content": "Your total", "transaction_id": "NO-SUCH-TX"},
            )
            assert refused.json()["status"] == "UnknownTransaction"
            assert sorted(station.display.messages) == [2]


def info(message_id: int, priority: str = "NormalCycle", **extra: Any) -> Any:
    return {
        "id": message_id,
        "priority": priority,
        "message": {"format": "UTF8", "content": f"m{message_id}"},
        **extra,
    }


@pytest.mark.unit
def test_the_board_shows_the_highest_priority_message_of_its_time_and_state() -> None:
    board = DisplayBoard()
    later = (T0 + timedelta(hours=1)).isoformat()
    assert board.set(info(1), transaction_id=None) == "Accepted"
    assert board.set(info(2, "AlwaysFront", startDateTime=later), transaction_id=None)
    assert board.set(info(3, "InFront", state="Charging"), transaction_id=None)
    assert board.set(info(4, transactionId="TX"), transaction_id="OTHER") == "UnknownTransaction"
    shown = board.shown(T0)
    assert shown is not None and shown["id"] == 1
    charging = board.shown(T0, "Charging")
    assert charging is not None and charging["id"] == 3
    front = board.shown(T0 + timedelta(hours=2))
    assert front is not None and front["id"] == 2
    assert [m["id"] for m in board.select({"requestId": 1, "priority": "InFront"})] == [3]
    assert [m["id"] for m in board.select({"requestId": 1, "id": [1, 2]})] == [1, 2]
    assert board.clear(1) == "Accepted" and board.clear(1) == "Unknown"
    board.set(info(5, endDateTime=T0.isoformat()), transaction_id=None)
    board.set(info(6, transactionId="TX"), transaction_id="TX")
    board.expire(T0, "TX")
    assert sorted(board.messages) == [2, 3, 6]  # 5 ended
    board.expire(T0, None)  # the transaction ended: its message goes (O02.FR.02)
    assert sorted(board.messages) == [2, 3]
    board.set(info(7, "AlwaysFront"), transaction_id=None)  # replaces 2 (O02.FR.18)
    assert sorted(board.messages) == [3, 7]


@pytest.mark.unit
def test_a_long_list_goes_in_parts_with_tbc_on_all_but_the_last() -> None:
    parts = notify_parts(9, [info(n) for n in range(1, 24)], size=10)
    assert [len(p.get("messageInfo", [])) for p in parts] == [10, 10, 3]
    assert [p.get("tbc", False) for p in parts] == [True, True, False]
    assert {p["requestId"] for p in parts} == {9}


def offline_station(tmp_path: Path) -> tuple[Station201, ManualClock]:
    clock = ManualClock(T0)
    return Station201("UNIT-RES", PLUGSTREAM_7, tmp_path / "unit", clock=clock), clock


def reserve_now(reservation_id: int, minutes: float = 10, **extra: Any) -> Any:
    return {
        "id": reservation_id,
        "expiryDateTime": (T0 + timedelta(minutes=minutes)).isoformat(),
        "idToken": {"idToken": "TAG-U", "type": "ISO14443"},
        **extra,
    }


@pytest.mark.unit
def test_the_station_answers_reserve_now_as_h01_says(tmp_path: Path) -> None:
    station, _clock = offline_station(tmp_path)
    try:
        handlers = StationHandlers201(station)
        reserve = handlers.handler("ReserveNow")
        cancel = handlers.handler("CancelReservation")
        assert reserve is not None and cancel is not None
        assert reserve(reserve_now(1, evseId=2)) == {"status": "Rejected"}  # no such EVSE
        assert reserve(reserve_now(1, minutes=-1)) == {"status": "Rejected"}  # expired
        assert reserve(reserve_now(1)) == {"status": "Accepted"}  # any EVSE: ours (H01.FR.04)
        assert station.connector.status_201.value == "Reserved"
        assert reserve(reserve_now(2, evseId=1)) == {"status": "Occupied"}  # H01.FR.11
        assert reserve(reserve_now(1, minutes=20)) == {"status": "Accepted"}  # H01.FR.02
        reservation = station.connector.reservation
        assert reservation is not None and reservation.expiry == T0 + timedelta(minutes=20)
        assert cancel({"reservationId": 9}) == {"status": "Rejected"}
        assert cancel({"reservationId": 1}) == {"status": "Accepted"}
        assert station.connector.status_201.value == "Available"
        station.config.set_value("ReservationCtrlr", "Enabled", "false")
        assert reserve(reserve_now(3)) == {"status": "Rejected"}  # H01.FR.01
    finally:
        station.close()


@pytest.mark.unit
def test_the_transaction_that_uses_a_reservation_names_it(tmp_path: Path) -> None:
    station, _clock = offline_station(tmp_path)
    try:
        reserve = StationHandlers201(station).handler("ReserveNow")
        assert reserve is not None
        assert reserve(reserve_now(5)) == {"status": "Accepted"}
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        assert not station.accept_token({"idToken": "SOMEONE", "type": "ISO14443"}, "Authorized")
        assert station.accept_token({"idToken": "TAG-U", "type": "ISO14443"}, "Authorized")
        [started] = [
            e.payload for e in station.journal.pending() if e.payload.get("eventType") == "Started"
        ]
        assert started["reservationId"] == 5  # H01.FR.15
        assert station.connector.reservation is None
    finally:
        station.close()
