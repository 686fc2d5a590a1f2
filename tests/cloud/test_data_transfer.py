"""DataTransfer in PlugStream Cloud (2.0.1 P01, P02): a registry of vendor handlers
answers a station's DataTransfer, UnknownVendorId / UnknownMessageId otherwise
(P02.FR.06, P02.FR.07; TC_P_02_CSMS); operators list the vendors and send one."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugstream.cloud.data_transfer.registry import (
    VENDORS,
    VendorAnswer,
    VendorRegistry,
    VendorRequest,
)
from tests.cloud.raw_station201 import hop_cloud, station201


def request(vendor_id: str, message_id: str | None = None, data: object = None) -> VendorRequest:
    return VendorRequest("CS1", vendor_id, message_id, data)


@pytest.mark.unit
async def test_the_registry_answers_unknown_vendor_and_unknown_message_ids() -> None:
    registry = VendorRegistry()

    @registry.message("com.Example", "Hello")
    async def hello(req: VendorRequest) -> VendorAnswer:
        return VendorAnswer("Accepted", {"to": req.station_id})

    @registry.message("com.example")
    async def plain(req: VendorRequest) -> VendorAnswer:
        return VendorAnswer("Rejected")

    assert (await registry.handle(request("com.example", "Hello"))).payload() == {
        "status": "Accepted",
        "data": {"to": "CS1"},
    }
    assert (await registry.handle(request("COM.EXAMPLE"))).status == "Rejected"
    assert (await registry.handle(request("com.example", "Bye"))).status == "UnknownMessageId"
    assert (await registry.handle(request("org.other", "Hello"))).status == "UnknownVendorId"
    assert registry.vendors() == {"com.Example": [None, "Hello"]}
    with pytest.raises(ValueError, match="has a handler already"):
        registry.message("com.example", "Hello")(hello)
    with pytest.raises(ValueError, match="vendorId"):
        registry.message("")


@pytest.mark.unit
async def test_the_built_in_plugstream_vendor_pings_and_echoes() -> None:
    assert (await VENDORS.handle(request("org.plugstream", "ping"))).payload() == {
        "status": "Accepted",
        "data": "pong",
    }
    echoed = await VENDORS.handle(request("org.plugstream", "echo", {"a": [1, 2]}))
    assert echoed.payload() == {"status": "Accepted", "data": {"a": [1, 2]}}


@pytest.mark.socket
@pytest.mark.parametrize(
    ("vendor_id", "message_id", "status"),
    [
        ("org.octt.unknown", "Any", "UnknownVendorId"),
        ("org.plugstream", "nope", "UnknownMessageId"),
    ],
)
async def test_tc_p_02_csms_data_transfer_to_the_csms_unknown_vendor_or_message(
    tmp_path: Path, vendor_id: str, message_id: str, status: str
) -> None:
    async with hop_cloud(tmp_path) as hop, station201(hop, "P02") as cs:
        answer = await cs.call("DataTransfer", {"vendorId": vendor_id, "messageId": message_id})
        assert answer == {"status": status}
        known = await cs.call(
            "DataTransfer", {"vendorId": "org.plugstream", "messageId": "echo", "data": "hi"}
        )
        assert known == {"status": "Accepted", "data": "hi"}
        # kept whole in the message log before it was answered
        page = (await hop.api.get("/stations/P02/messages")).json()
        frames = [m["text"] for m in page["messages"] if m["direction"] == "in"]
        assert any(f'"vendorId":"{vendor_id}"' in f.replace(" ", "") for f in frames)


@pytest.mark.socket
async def test_operators_list_vendors_and_send_a_station_a_data_transfer(tmp_path: Path) -> None:
    async with hop_cloud(tmp_path) as hop:
        vendors = (await hop.api.get("/data-transfer/vendors")).json()
        assert {"vendor_id": "org.plugstream", "message_ids": ["echo", "ping"]} in vendors
        async with station201(hop, "P01") as cs:
            cs.answers["DataTransfer"] = {"status": "Accepted", "data": {"v": 1}}
            sent = await hop.api.post(
                "/stations/P01/data-transfer",
                json={"vendor_id": "com.vendor", "message_id": "Get", "data": [1]},
            )
            assert sent.status_code == 200, sent.text
            assert sent.json() == {"status": "Accepted", "data": {"v": 1}, "status_info": None}
            assert await cs.received_call("DataTransfer") == {
                "vendorId": "com.vendor",
                "messageId": "Get",
                "data": [1],
            }
            bad = await hop.api.post("/stations/P01/data-transfer", json={"vendor_id": ""})
            assert bad.status_code == 422
        offline = await hop.api.post(
            "/stations/P01/data-transfer", json={"vendor_id": "com.vendor"}
        )
        assert offline.status_code == 409
