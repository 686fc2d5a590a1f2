"""Reservations in PlugStream Cloud (2.0.1 H01, H02, H04): made, cancelled and followed to
their end through the REST API, against a station played frame by frame as the OCTT
plays it (TC_H_07_CSMS, TC_H_20_CSMS)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.raw_station201 import Hop, hop_cloud, station201
from tests.support import booted16, until

pytestmark = pytest.mark.socket

VALID = {"idToken": "VALID-TOKEN", "type": "ISO14443"}


def body(hop: Hop, station_id: str, minutes: int = 10, **extra: Any) -> dict[str, Any]:
    expiry = hop.clock.now + timedelta(minutes=minutes)
    return {
        "station_id": station_id,
        "evse_id": 1,
        "id_token": VALID["idToken"],
        "id_token_type": VALID["type"],
        "expiry_date_time": expiry.isoformat(),
        **extra,
    }


async def reservation(hop: Hop, reservation_id: int) -> dict[str, Any]:
    answer = await hop.api.get(f"/reservations/{reservation_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def test_tc_h_07_csms_a_reservation_ended_unused_is_expired(tmp_path: Path) -> None:
    async with hop_cloud(tmp_path) as hop, station201(hop, "H07") as cs:
        # Manual action: the CSMS sends a ReserveNowRequest for a specific EVSE
        made = await hop.api.post("/reservations", json=body(hop, "H07"))
        assert made.status_code == 201, made.text
        shown = made.json()
        assert shown["status"] == "Accepted"
        # step 1: evseId the configured one, no connectorType, the valid idToken
        sent = await cs.received_call("ReserveNow")
        assert sent["id"] == shown["reservation_id"]
        assert sent["evseId"] == 1 and "connectorType" not in sent
        assert sent["idToken"] == VALID
        # steps 3-6: Reserved, then (expiry passed) Available, each answered
        await cs.status("Reserved", hop.clock.now)
        hop.clock.now += timedelta(minutes=11)
        await cs.status("Available", hop.clock.now)
        # before the station says so, the cloud's clock already shows it expired
        assert (await reservation(hop, sent["id"]))["status"] == "Expired"
        # steps 7-8
        answer = await cs.call(
            "ReservationStatusUpdate",
            {"reservationId": sent["id"], "reservationUpdateStatus": "Expired"},
        )
        assert answer == {}
        hop.clock.now -= timedelta(minutes=30)  # stored, not computed: Expired all the same
        assert (await reservation(hop, sent["id"]))["status"] == "Expired"


async def test_tc_h_20_csms_a_reservation_removed_when_the_evse_faults(tmp_path: Path) -> None:
    async with hop_cloud(tmp_path) as hop, station201(hop, "H20") as cs:
        made = await hop.api.post("/reservations", json=body(hop, "H20"))
        assert made.status_code == 201, made.text
        sent = await cs.received_call("ReserveNow")
        assert sent["evseId"] == 1 and "connectorType" not in sent and sent["idToken"] == VALID
        await cs.status("Reserved", hop.clock.now)
        await cs.status("Faulted", hop.clock.now)
        answer = await cs.call(
            "ReservationStatusUpdate",
            {"reservationId": sent["id"], "reservationUpdateStatus": "Removed"},
        )
        assert answer == {}
        assert (await reservation(hop, sent["id"]))["status"] == "Removed"
        # nothing left to cancel
        refused = await hop.api.delete(f"/reservations/{sent['id']}")
        assert refused.status_code == 409
        assert "Removed" in refused.json()["detail"]


async def test_a_reservation_is_cancelled_used_or_refused_and_each_is_shown(
    tmp_path: Path,
) -> None:
    async with hop_cloud(tmp_path) as hop, station201(hop, "RES1") as cs:
        # cancelled (H02, TC_H_17): CancelReservation with the id of the ReserveNow
        first = (await hop.api.post("/reservations", json=body(hop, "RES1"))).json()
        cancelled = await hop.api.delete(f"/reservations/{first['reservation_id']}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "Cancelled"
        assert (await cs.received_call("CancelReservation")) == {
            "reservationId": first["reservation_id"]
        }
        # used: a transaction names it (H01.FR.15)
        second = (await hop.api.post("/reservations", json=body(hop, "RES1"))).json()
        stamp = hop.clock.now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        await cs.call(
            "TransactionEvent",
            {
                "eventType": "Started",
                "timestamp": stamp,
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": {"transactionId": "TX-RES1"},
                "idToken": VALID,
                "evse": {"id": 1, "connectorId": 1},
                "reservationId": second["reservation_id"],
            },
        )

        async def used() -> dict[str, Any] | None:
            found = await reservation(hop, second["reservation_id"])
            return found if found["status"] == "Used" else None

        assert (await until(used, "the reservation Used"))["transaction_id"] == "TX-RES1"
        # refused by the station: kept with its answer
        cs.answers["ReserveNow"] = {"status": "Occupied"}
        third = await hop.api.post("/reservations", json=body(hop, "RES1"))
        assert third.status_code == 201 and third.json()["status"] == "Occupied"
        # the station holds no such reservation
        cs.answers["ReserveNow"] = {"status": "Accepted"}
        cs.answers["CancelReservation"] = {"status": "Rejected"}
        fourth = await hop.api.post("/reservations", json=body(hop, "RES1", group_id_token="G1"))
        assert (await cs.received_call("ReserveNow"))["groupIdToken"] == {
            "idToken": "G1",
            "type": "Central",
        }
        gone = await hop.api.delete(f"/reservations/{fourth.json()['reservation_id']}")
        assert gone.status_code == 409 and "Rejected" in gone.json()["detail"]
        listed = await hop.api.get("/reservations", params={"station_id": "RES1"})
        assert [r["status"] for r in listed.json()] == [
            "Accepted",
            "Occupied",
            "Used",
            "Cancelled",
        ]


async def test_bad_reservations_are_refused_with_a_reason_and_nothing_is_kept(
    tmp_path: Path,
) -> None:
    async with hop_cloud(tmp_path) as hop:
        async with station201(hop, "RES2"):
            pass  # registered, then gone
        await until(lambda: not hop.cloud.gateway.is_connected("RES2"), "disconnected")
        async with station201(hop, "RES2") as cs:
            # an update of a reservation the cloud never made: answered, and kept only in
            # the message log
            strange = {"reservationId": 424242, "reservationUpdateStatus": "Expired"}
            assert await cs.call("ReservationStatusUpdate", strange) == {}
        await until(lambda: not hop.cloud.gateway.is_connected("RES2"), "disconnected again")
        offline = await hop.api.post("/reservations", json=body(hop, "RES2"))
        assert offline.status_code == 409
        assert "not connected" in offline.json()["detail"]
        unknown = await hop.api.post("/reservations", json=body(hop, "NOPE"))
        assert unknown.status_code == 404
        past = await hop.api.post("/reservations", json=body(hop, "RES2", minutes=-1))
        assert past.status_code == 422 and "future" in past.json()["detail"]
        naive = await hop.api.post(
            "/reservations", json={**body(hop, "RES2"), "expiry_date_time": "2030-01-01T00:00:00"}
        )
        assert naive.status_code == 422
        long_token = await hop.api.post("/reservations", json=body(hop, "RES2", id_token="x" * 37))
        assert long_token.status_code == 422 and "id_token" in long_token.json()["detail"]
        assert (await hop.api.get("/reservations")).json() == []
        assert (await hop.api.get("/reservations/12345")).status_code == 404
        assert (await hop.api.delete("/reservations/12345")).status_code == 404
        assert (await hop.api.get("/reservations/99999999999")).status_code == 422


async def test_a_reservation_the_station_answers_wrongly_is_kept_as_call_error(
    tmp_path: Path,
) -> None:
    async with hop_cloud(tmp_path) as hop:
        async with station201(hop, "RES3") as cs:
            cs.answers["ReserveNow"] = lambda payload: {"status": "NotAStatus"}
            refused = await hop.api.post("/reservations", json=body(hop, "RES3"))
            # a schema-invalid answer is a CALLERROR of the CSMS's own: 502, kept
            assert refused.status_code == 502, refused.text
        [kept] = (await hop.api.get("/reservations")).json()
        assert kept["status"] == "CallError"


async def test_a_reservation_of_any_evse_omits_evse_id_and_a_1_6_station_is_refused(
    tmp_path: Path,
) -> None:
    async with hop_cloud(tmp_path) as hop:
        async with station201(hop, "ANY1") as cs:
            made = await hop.api.post("/reservations", json=body(hop, "ANY1", evse_id=None))
            assert made.status_code == 201 and made.json()["evse_id"] is None
            assert "evseId" not in await cs.received_call("ReserveNow")
        async with booted16(hop.cloud.url("OLD16")):
            refused = await hop.api.post("/reservations", json=body(hop, "OLD16"))
            assert refused.status_code == 409
            assert "speaks OCPP 1.6" in refused.json()["detail"]
        assert [r["station_id"] for r in (await hop.api.get("/reservations")).json()] == ["ANY1"]


async def test_the_openapi_document_shows_reservations_display_messages_data_transfer(
    tmp_path: Path,
) -> None:
    async with hop_cloud(tmp_path) as hop:
        paths = (await hop.api.get("/openapi.json")).json()["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/reservations"])
    assert {"get", "delete"} <= set(paths["/api/v1/reservations/{reservation_id}"])
    assert "409" in paths["/api/v1/reservations"]["post"]["responses"]
    messages = "/api/v1/stations/{station_id}/display-messages"
    assert {"post", "get"} <= set(paths[messages])
    assert {"get", "delete"} <= set(paths[messages + "/{message_id}"])
    assert "post" in paths[messages + "/reports"]
    assert "get" in paths[messages + "/reports/{request_id}"]
    assert "get" in paths["/api/v1/data-transfer/vendors"]
    sent = paths["/api/v1/stations/{station_id}/data-transfer"]["post"]["responses"]
    assert {"200", "404", "409", "422", "502", "504"} <= set(sent)
