"""Display messages in PlugStream Cloud (2.0.1 O01-O05): set, listed, reported and
cleared through the REST API, against a station played frame by frame as the OCTT
plays it (TC_O_02_CSMS, TC_O_07_CSMS, TC_O_08_CSMS, TC_O_09_CSMS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cloud.raw_station201 import Hop, RawStation201, hop_cloud, station201
from tests.support import until

pytestmark = pytest.mark.socket


def info(message_id: int, priority: str = "NormalCycle", **extra: Any) -> dict[str, Any]:
    return {
        "id": message_id,
        "priority": priority,
        "message": {"format": "UTF8", "content": f"Welcome {message_id}"},
        **extra,
    }


async def get_report(
    hop: Hop, cs: RawStation201, station_id: str, criteria: dict[str, Any], parts: list[list[Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Steps 1-4 of TC_O_02/07/08/09: the CSMS sends GetDisplayMessages, the station
    answers Accepted and sends its NotifyDisplayMessages (in ``parts``), each answered.
    The GetDisplayMessagesRequest sent, and the report as the REST API then shows it."""
    asked = await hop.api.post(f"/stations/{station_id}/display-messages/reports", json=criteria)
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert request["status"] == "Accepted"
    sent = await cs.received_call("GetDisplayMessages")
    assert sent["requestId"] == request["request_id"]
    for n, messages in enumerate(parts):
        payload: dict[str, Any] = {"requestId": sent["requestId"], "messageInfo": messages}
        if n < len(parts) - 1:
            payload["tbc"] = True
        assert await cs.call("NotifyDisplayMessages", payload) == {}
    shown = await hop.api.get(
        f"/stations/{station_id}/display-messages/reports/{request['request_id']}"
    )
    assert shown.status_code == 200, shown.text
    report: dict[str, Any] = shown.json()
    return sent, report


async def test_tc_o_02_csms_get_all_display_messages(tmp_path: Path) -> None:
    async with hop_cloud(tmp_path) as hop, station201(hop, "O02") as cs:
        sent, report = await get_report(
            hop, cs, "O02", {}, [[info(1), info(2, "InFront")], [info(3, "AlwaysFront")]]
        )
        # step 1: requestId generated; id, priority, state omitted
        assert set(sent) == {"requestId"}
        assert (report["status"], report["parts"]) == ("Complete", 2)
        assert [m["message_id"] for m in report["messages"]] == [1, 2, 3]
        listed = (await hop.api.get("/stations/O02/display-messages")).json()
        assert [(m["message_id"], m["priority"], m["status"]) for m in listed] == [
            (1, "NormalCycle", "Reported"),
            (2, "InFront", "Reported"),
            (3, "AlwaysFront", "Reported"),
        ]
        assert listed[0]["message"]["message"]["content"] == "Welcome 1"


async def test_tc_o_07_csms_get_a_specific_display_message_by_id(tmp_path: Path) -> None:
    async with hop_cloud(tmp_path) as hop, station201(hop, "O07") as cs:
        sent, report = await get_report(hop, cs, "O07", {"id": [5]}, [[info(5)]])
        assert sent == {"requestId": sent["requestId"], "id": [5]}  # no priority, no state
        assert [m["message_id"] for m in report["messages"]] == [5]
        assert report["criteria"] == {"id": [5]}


async def test_tc_o_08_csms_get_display_messages_by_priority(tmp_path: Path) -> None:
    async with hop_cloud(tmp_path) as hop, station201(hop, "O08") as cs:
        sent, report = await get_report(
            hop, cs, "O08", {"priority": "InFront"}, [[info(8, "InFront")]]
        )
        assert sent == {"requestId": sent["requestId"], "priority": "InFront"}
        assert [m["priority"] for m in report["messages"]] == ["InFront"]


async def test_tc_o_09_csms_get_display_messages_by_state(tmp_path: Path) -> None:
    async with hop_cloud(tmp_path) as hop, station201(hop, "O09") as cs:
        sent, report = await get_report(
            hop, cs, "O09", {"state": "Charging"}, [[info(9, state="Charging")]]
        )
        assert sent == {"requestId": sent["requestId"], "state": "Charging"}
        assert [m["state"] for m in report["messages"]] == ["Charging"]
        assert report["status"] == "Complete"


async def test_a_display_message_is_set_listed_and_cleared(tmp_path: Path) -> None:
    async with hop_cloud(tmp_path) as hop, station201(hop, "O01") as cs:
        made = await hop.api.post(
            "/stations/O01/display-messages",
            json={"priority": "InFront", "content": "Free parking", "language": "en"},
        )
        assert made.status_code == 201, made.text
        shown = made.json()
        assert (shown["message_id"], shown["status"]) == (1, "Accepted")
        sent = await cs.received_call("SetDisplayMessage")
        assert sent["message"] == {
            "id": 1,
            "priority": "InFront",
            "message": {"format": "UTF8", "content": "Free parking", "language": "en"},
        }
        # the next one gets the next id; a refused one is kept with its answer
        cs.answers["SetDisplayMessage"] = {"status": "NotSupportedPriority"}
        refused = await hop.api.post(
            "/stations/O01/display-messages", json={"priority": "AlwaysFront", "content": "x"}
        )
        assert refused.status_code == 201 and refused.json()["status"] == "NotSupportedPriority"
        assert refused.json()["message_id"] == 2
        one = await hop.api.get("/stations/O01/display-messages/1")
        assert one.json()["message"]["message"]["content"] == "Free parking"
        # cleared (O05)
        cleared = await hop.api.delete("/stations/O01/display-messages/1")
        assert cleared.status_code == 204
        assert await cs.received_call("ClearDisplayMessage") == {"id": 1}
        assert (await hop.api.get("/stations/O01/display-messages/1")).status_code == 404
        cs.answers["ClearDisplayMessage"] = {"status": "Unknown"}
        unknown = await hop.api.delete("/stations/O01/display-messages/77")
        assert unknown.status_code == 404 and "Unknown" in unknown.json()["detail"]
        # a station with nothing to report answers Unknown (TC_O_03): no parts come
        cs.answers["GetDisplayMessages"] = {"status": "Unknown"}
        asked = await hop.api.post("/stations/O01/display-messages/reports", json={})
        assert asked.status_code == 201 and asked.json()["status"] == "Unknown"


async def test_bad_display_messages_are_refused_with_a_reason(tmp_path: Path) -> None:
    async with hop_cloud(tmp_path) as hop:
        async with station201(hop, "O99"):
            bad = [
                {"content": ""},
                {"content": "x" * 513},
                {"content": "x", "priority": "Sometimes"},
                {"content": "x", "format": "PDF"},
                {
                    "content": "x",
                    "start_date_time": "2030-01-02T00:00:00Z",
                    "end_date_time": "2030-01-01T00:00:00Z",
                },
            ]
            for item in bad:
                answer = await hop.api.post("/stations/O99/display-messages", json=item)
                assert answer.status_code == 422, (item, answer.text)
                assert answer.json()["detail"]
            wrong = await hop.api.post("/stations/O99/display-messages/reports", json={"id": []})
            assert wrong.status_code == 422
        await until(lambda: not hop.cloud.gateway.is_connected("O99"), "disconnected")
        offline = await hop.api.post("/stations/O99/display-messages", json={"content": "x"})
        assert offline.status_code == 409
        assert (await hop.api.get("/stations/O99/display-messages")).json() == []
        assert (await hop.api.get("/stations/NOPE/display-messages")).status_code == 404
        assert (await hop.api.get("/stations/O99/display-messages/reports/1")).status_code == 404
