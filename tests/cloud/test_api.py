"""The REST API of PlugStream Cloud against a real Store (SQLite in tmp_path) and a real
Gateway, with a real OCPP 1.6 station connected over a loopback WebSocket where a test
needs one: bearer auth, stations, id tokens, commands, the message log, transactions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from plugstream.cloud.api.common import include_guarded
from plugstream.cloud.app import API_ROUTERS
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.handlers import csms_handlers
from plugstream.cloud.storage import MeterSample, Store
from plugstream.ocpp import Handlers, OcppEndpoint, OcppVersion, on
from tests.support import serving, until

TOKEN = "test-token-0123456789"
PASSWORD = "correct-horse-battery"  # 21 characters
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class Station(Handlers):
    """The charge point's side: answers Reset, sits on GetConfiguration, has no ClearCache."""

    def __init__(self) -> None:
        self.resets: list[dict[str, Any]] = []

    @on("Reset")
    def reset(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.resets.append(payload)
        return {"status": "Accepted"}

    @on("GetConfiguration")
    async def get_configuration(self, payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()  # never answers (cancelled with the connection)
        return {"configurationKey": []}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite:///{tmp_path / 'cloud.db'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def gateway(store: Store) -> AsyncIterator[Gateway]:
    gw = Gateway(store, CloudConfig(call_timeout=10.0), handlers=csms_handlers())
    try:
        yield gw
    finally:
        await gw.close()


@pytest.fixture
def app(store: Store, gateway: Gateway) -> FastAPI:
    application = FastAPI(openapi_url="/api/v1/openapi.json")
    application.state.store, application.state.gateway = store, gateway
    application.state.config = CloudConfig(api_token=TOKEN)
    include_guarded(application, *API_ROUTERS)

    @application.websocket("/ocpp/{station_id:path}")
    async def ocpp(websocket: WebSocket, station_id: str) -> None:
        await gateway.serve(websocket, station_id)

    return application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://cloud.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


@pytest.fixture
async def server(app: FastAPI) -> AsyncIterator[int]:
    """The same app on a loopback port, for the station's WebSocket; yields the port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    srv = uvicorn.Server(config)
    async with serving(srv):
        yield srv.servers[0].sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def station_connected(
    port: int, gateway: Gateway, station_id: str, handlers: Handlers
) -> AsyncIterator[None]:
    url = f"ws://127.0.0.1:{port}/ocpp/{station_id}"
    async with connect(url, subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        endpoint = OcppEndpoint(ws, OcppVersion.V16, handlers)
        task = asyncio.create_task(endpoint.run())
        await until(lambda: gateway.is_connected(station_id), f"{station_id} connected")
        try:
            yield
        finally:
            await ws.close()
            await task


# -- auth -------------------------------------------------------------------------------


@pytest.mark.unit
async def test_no_token_is_401_with_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/stations", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token required" in response.json()["detail"]


@pytest.mark.unit
async def test_wrong_token_is_401_even_before_body_validation(client: httpx.AsyncClient) -> None:
    wrong = {"Authorization": "Bearer not-the-token"}
    response = await client.get("/api/v1/stations", headers=wrong)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json() == {"detail": "wrong bearer token"}
    response = await client.put("/api/v1/stations/CP-1", headers=wrong, content=b"{not json")
    assert response.status_code == 401
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert (await client.get("/api/v1/id-tokens", headers=basic)).status_code == 401


@pytest.mark.unit
async def test_open_api_without_token(store: Store, gateway: Gateway) -> None:
    app = FastAPI()
    app.state.store, app.state.gateway, app.state.config = store, gateway, CloudConfig()
    include_guarded(app, *API_ROUTERS)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://cloud.test"
    ) as c:
        assert (await c.get("/api/v1/stations")).json() == []


# -- stations -------------------------------------------------------------------------


@pytest.mark.unit
async def test_register_get_and_list_stations(client: httpx.AsyncClient) -> None:
    body = {"password": PASSWORD, "security_profile": 1, "lenient": True}
    created = await client.put("/api/v1/stations/CP-1", json=body)
    assert created.status_code == 201, created.text
    station = created.json()
    assert station["station_id"] == "CP-1"
    assert station["security_profile"] == 1
    assert station["lenient"] is True
    assert station["has_password"] is True
    assert station["connected"] is False
    assert station["ocpp_version"] is None
    assert station["connectors"] == []
    assert station["registered_at"].endswith("Z")
    assert "password" not in station

    # Without a password the stored one is kept; now strict.
    updated = await client.put("/api/v1/stations/CP-1", json={"security_profile": 2})
    assert updated.status_code == 200, updated.text
    assert updated.json()["lenient"] is False
    assert updated.json()["has_password"] is True
    await client.put("/api/v1/stations/CP-0", json={"security_profile": 0})

    got = await client.get("/api/v1/stations/CP-1")
    assert got.status_code == 200
    assert got.json()["security_profile"] == 2
    listed = await client.get("/api/v1/stations")
    assert sorted(s["station_id"] for s in listed.json()) == ["CP-0", "CP-1"]

    missing = await client.get("/api/v1/stations/CP-9")
    assert missing.status_code == 404
    assert "CP-9" in missing.json()["detail"]


@pytest.mark.unit
async def test_an_operator_holds_a_station_back_and_lets_it_go(client: httpx.AsyncClient) -> None:
    """The boot status a station's BootNotification will be answered with."""
    held = await client.put(
        "/api/v1/stations/CP-9", json={"security_profile": 0, "boot_status": "Pending"}
    )
    assert held.status_code == 201 and held.json()["boot_status"] == "Pending"
    assert (await client.get("/api/v1/stations/CP-9")).json()["boot_status"] == "Pending"
    freed = await client.put("/api/v1/stations/CP-9", json={"security_profile": 0})
    assert freed.json()["boot_status"] == "Accepted"


@pytest.mark.parametrize(
    ("station_id", "reason"),
    [
        ("CP:1", "':'"),
        ("x" * 49, "1 to 48 characters"),
        ("CP%231", "identifierString"),  # CP#1
    ],
)
@pytest.mark.unit
async def test_bad_station_id_is_422_with_reason(
    client: httpx.AsyncClient, station_id: str, reason: str
) -> None:
    for response in (
        await client.get(f"/api/v1/stations/{station_id}"),
        await client.put(f"/api/v1/stations/{station_id}", json={"security_profile": 0}),
        await client.get(
            "/api/v1/transactions", params={"station": station_id.replace("%23", "#")}
        ),
    ):
        assert response.status_code == 422, response.text
        assert reason in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"password": "short", "security_profile": 1}, "16 to 40 characters"),
        ({"password": "p" * 41, "security_profile": 2}, "not 41"),
        ({"security_profile": 1}, "needs a password"),
        ({"password": PASSWORD, "security_profile": 4}, "security_profile"),
        ({"password": PASSWORD, "colour": "red"}, "colour"),
        ({"security_profile": 0, "boot_status": "Maybe"}, "boot_status"),
    ],
)
@pytest.mark.unit
async def test_bad_station_registration_is_422(
    client: httpx.AsyncClient, body: dict[str, Any], reason: str
) -> None:
    response = await client.put("/api/v1/stations/CP-1", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert reason in detail


@pytest.mark.unit
async def test_broken_json_body_is_422_with_reason(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/api/v1/stations/CP-1", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json() == {"detail": "the body is not valid JSON"}


# -- id tokens ------------------------------------------------------------------------


@pytest.mark.unit
async def test_id_token_crud(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/id-tokens")).json() == []
    missing = await client.get("/api/v1/id-tokens/04A2B3C4")
    assert missing.status_code == 404
    assert "04A2B3C4" in missing.json()["detail"]

    body = {
        "status": "Accepted",
        "expiry": "2027-01-01T01:00:00+01:00",
        "parent_id_token": "FLEET-1",
        "token_type": "ISO14443",
    }
    created = await client.put("/api/v1/id-tokens/04A2B3C4", json=body)
    assert created.status_code == 201, created.text
    assert created.json() == {
        "id_token": "04A2B3C4",
        "status": "Accepted",
        "expiry": "2027-01-01T00:00:00Z",
        "parent_id_token": "FLEET-1",
        "token_type": "ISO14443",
    }
    replaced = await client.put("/api/v1/id-tokens/04A2B3C4", json={"status": "Blocked"})
    assert replaced.status_code == 200
    assert replaced.json()["status"] == "Blocked"
    assert replaced.json()["expiry"] is None
    assert (await client.get("/api/v1/id-tokens/04A2B3C4")).json()["status"] == "Blocked"
    assert [t["id_token"] for t in (await client.get("/api/v1/id-tokens")).json()] == ["04A2B3C4"]

    deleted = await client.delete("/api/v1/id-tokens/04A2B3C4")
    assert deleted.status_code == 204
    assert (await client.get("/api/v1/id-tokens/04A2B3C4")).status_code == 404
    again = await client.delete("/api/v1/id-tokens/04A2B3C4")
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"status": "Maybe"}, "status"),
        ({"expiry": "2027-01-01T00:00:00"}, "expiry"),  # no offset: ambiguous
        ({"token_type": "Barcode"}, "token_type"),
    ],
)
@pytest.mark.unit
async def test_bad_id_token_is_422(
    client: httpx.AsyncClient, body: dict[str, Any], reason: str
) -> None:
    response = await client.put("/api/v1/id-tokens/TAG", json=body)
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    too_long = await client.put("/api/v1/id-tokens/" + "T" * 37, json={})
    assert too_long.status_code == 422
    assert "1 to 36 characters" in too_long.json()["detail"]


# -- commands -------------------------------------------------------------------------


@pytest.mark.socket
async def test_command_to_connected_station(
    client: httpx.AsyncClient, gateway: Gateway, server: int, store: Store
) -> None:
    await client.put("/api/v1/stations/CP-1", json={"security_profile": 0})
    station = Station()
    async with station_connected(server, gateway, "CP-1", station):
        view = (await client.get("/api/v1/stations/CP-1")).json()
        assert view["connected"] is True
        assert view["ocpp_version"] == "1.6"

        ok = await client.post("/api/v1/stations/CP-1/commands/Reset", json={"type": "Soft"})
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"status": "Accepted"}
        assert station.resets == [{"type": "Soft"}]

        invalid = await client.post("/api/v1/stations/CP-1/commands/Reset", json={"type": "Hard!"})
        assert invalid.status_code == 422
        assert "type" in invalid.json()["detail"]
        assert invalid.json()["error_code"] == "PropertyConstraintViolation"
        assert invalid.json()["error_details"]["path"] == "type"
        missing = await client.post("/api/v1/stations/CP-1/commands/Reset", json={})
        assert missing.status_code == 422
        assert "type" in missing.json()["detail"]
        assert len(station.resets) == 1  # nothing invalid went out

        refused = await client.post("/api/v1/stations/CP-1/commands/ClearCache", json={})
        assert refused.status_code == 502, refused.text
        assert refused.json()["error_code"] == "NotSupported"
        assert "ClearCache" in refused.json()["detail"]

        # 2.0.1's action name is not a 1.6 one.
        wrong_version = await client.post(
            "/api/v1/stations/CP-1/commands/RequestStartTransaction", json={}
        )
        assert wrong_version.status_code == 404
        assert "OCPP 1.6" in wrong_version.json()["detail"]

    # The gateway logged the exchange: newest first, our Reset went out before its answer.
    async def messages() -> list[dict[str, Any]] | None:
        listed: list[dict[str, Any]] = (await client.get("/api/v1/stations/CP-1/messages")).json()[
            "messages"
        ]
        return listed if len(listed) >= 4 else None

    logged = await until(messages, "the exchange logged")
    frames = [(m["direction"], orjson.loads(m["text"])) for m in reversed(logged)]
    assert frames[0][0] == "out"
    assert frames[0][1][2:] == ["Reset", {"type": "Soft"}]
    assert frames[1] == ("in", [3, frames[0][1][1], {"status": "Accepted"}])


@pytest.mark.socket
async def test_command_timeout_is_504(
    client: httpx.AsyncClient, gateway: Gateway, server: int
) -> None:
    await client.put("/api/v1/stations/CP-1", json={"security_profile": 0})
    async with station_connected(server, gateway, "CP-1", Station()):
        too_short = await client.post(
            "/api/v1/stations/CP-1/commands/GetConfiguration", params={"timeout": 0.5}, json={}
        )
        assert too_short.status_code == 422
        assert "timeout" in too_short.json()["detail"]
        response = await client.post(
            "/api/v1/stations/CP-1/commands/GetConfiguration", params={"timeout": 1}, json={}
        )
        assert response.status_code == 504
        assert "GetConfiguration got no answer within 1 s" in response.json()["detail"]


COMMANDS_16 = "RemoteStartTransaction RemoteStopTransaction Reset UnlockConnector ChangeAvailability ChangeConfiguration GetConfiguration TriggerMessage ClearCache SendLocalList GetLocalListVersion UpdateFirmware GetDiagnostics SetChargingProfile ClearChargingProfile GetCompositeSchedule ReserveNow CancelReservation DataTransfer"
COMMANDS_201 = "RequestStartTransaction RequestStopTransaction Reset UnlockConnector ChangeAvailability SetVariables GetVariables GetBaseReport TriggerMessage UpdateFirmware GetLog SetChargingProfile ClearChargingProfile GetCompositeSchedule SendLocalList ReserveNow CancelReservation DataTransfer"


@pytest.mark.parametrize(
    ("version", "action"),
    [("1.6", a) for a in COMMANDS_16.split()] + [("2.0.1", a) for a in COMMANDS_201.split()],
)
@pytest.mark.unit
async def test_every_operator_command_of_the_issue_is_known(
    client: httpx.AsyncClient, store: Store, version: str, action: str
) -> None:
    """Each command the operator may send is routed (offline: 409), never unknown (404)."""
    await client.put("/api/v1/stations/CP-V", json={"security_profile": 0})
    await store.stations.record_boot(
        "CP-V",
        ocpp_version=version,
        vendor="PlugStream",
        model="PlugStream 7",
        serial_number=None,
        firmware_version=None,
        at=datetime.now(UTC),
    )
    response = await client.post(f"/api/v1/stations/CP-V/commands/{action}", json={})
    assert response.status_code == 409, response.text


@pytest.mark.unit
async def test_command_to_offline_or_unknown_station(client: httpx.AsyncClient) -> None:
    await client.put("/api/v1/stations/CP-1", json={"security_profile": 0})
    offline = await client.post("/api/v1/stations/CP-1/commands/Reset", json={"type": "Soft"})
    assert offline.status_code == 409
    assert "not connected" in offline.json()["detail"]

    unknown = await client.post("/api/v1/stations/CP-9/commands/Reset", json={"type": "Soft"})
    assert unknown.status_code == 404

    typo = await client.post("/api/v1/stations/CP-1/commands/Rest", json={})
    assert typo.status_code == 404
    assert "did you mean Reset" in typo.json()["detail"]
    station_sends = await client.post("/api/v1/stations/CP-1/commands/BootNotification", json={})
    assert station_sends.status_code == 404
    assert "not an action the CSMS sends" in station_sends.json()["detail"]

    not_an_object = await client.post("/api/v1/stations/CP-1/commands/Reset", json=["Soft"])
    assert not_an_object.status_code == 422
    assert isinstance(not_an_object.json()["detail"], str)


# -- message log ----------------------------------------------------------------------


@pytest.mark.unit
async def test_messages_newest_first_and_paged(client: httpx.AsyncClient, store: Store) -> None:
    await client.put("/api/v1/stations/CP-1", json={"security_profile": 0})
    for n in range(7):
        text = orjson.dumps([2, f"m{n}", "Heartbeat", {}]).decode()
        await store.messages.log("CP-1", "in", text, T0 + timedelta(seconds=n))
    await store.messages.log("CP-2", "in", '[2,"x","Heartbeat",{}]', T0)

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    pages = 0
    while True:
        page = (await client.get("/api/v1/stations/CP-1/messages", params=params)).json()
        pages += 1
        seen += [orjson.loads(m["text"])[1] for m in page["messages"]]
        if page["next_before"] is None:
            break
        params["before"] = page["next_before"]
    assert seen == [f"m{n}" for n in reversed(range(7))]
    assert pages == 3

    first = (await client.get("/api/v1/stations/CP-1/messages", params={"limit": 1})).json()
    assert first["messages"][0]["at"] == "2026-03-01T08:00:06Z"
    assert first["messages"][0]["direction"] == "in"

    too_many = await client.get("/api/v1/stations/CP-1/messages", params={"limit": 501})
    assert too_many.status_code == 422
    assert "limit" in too_many.json()["detail"]
    assert (await client.get("/api/v1/stations/CP-9/messages")).status_code == 404


# -- transactions ---------------------------------------------------------------------


@pytest.mark.unit
async def test_transactions_with_exact_energy_and_flags(
    client: httpx.AsyncClient, store: Store
) -> None:
    await client.put("/api/v1/stations/CP-1", json={"security_profile": 0})
    tx, _ = await store.transactions.start(
        "CP-1",
        connector_id=1,
        id_token="04A2B3C4",
        meter_start_wh=Decimal("1000.5"),
        timestamp=T0,
        received_at=T0,
    )
    sample = MeterSample(
        timestamp=T0 + timedelta(minutes=30),
        measurand="Energy.Active.Import.Register",
        value=Decimal("1617.25"),
        unit="Wh",
    )
    await store.transactions.stop(
        "CP-1",
        transaction_id=tx.id,
        meter_stop_wh=Decimal("2235.0"),
        timestamp=T0 + timedelta(hours=1),
        received_at=T0 + timedelta(hours=1),
        reason="EVDisconnected",
        samples=[sample],
    )
    # The station repeats its StartTransaction after the stop: stored as a flag, not dropped.
    await store.transactions.start(
        "CP-1",
        connector_id=1,
        id_token="04A2B3C4",
        meter_start_wh=Decimal("1000.5"),
        timestamp=T0,
        received_at=T0 + timedelta(hours=2),
    )

    listed = await client.get("/api/v1/transactions", params={"station": "CP-1"})
    assert listed.status_code == 200
    (summary,) = listed.json()
    assert summary["id"] == tx.id
    assert summary["energy_wh"] == 1234.5
    assert b'"energy_wh":1234.5' in listed.content  # a JSON number, exactly
    assert b'"meter_start_wh":1000.5' in listed.content
    assert b'"meter_stop_wh":2235' in listed.content
    assert "meter_values" not in summary
    assert [f["code"] for f in summary["flags"]] == ["StartAfterStop"]

    detail = await client.get(f"/api/v1/transactions/{tx.id}")
    assert detail.status_code == 200
    body = detail.json()
    assert body["station_id"] == "CP-1"
    assert body["id_token"] == "04A2B3C4"
    assert body["started_at"] == "2026-03-01T08:00:00Z"
    assert body["stopped_at"] == "2026-03-01T09:00:00Z"
    assert body["stop_reason"] == "EVDisconnected"
    assert body["active"] is False
    assert body["flags"][0]["code"] == "StartAfterStop"
    assert body["flags"][0]["at"].endswith("Z")
    values = [(m["measurand"], m["value"], m["unit"]) for m in body["meter_values"]]
    assert ("Energy.Active.Import.Register", 1617.25, "Wh") in values
    assert b'"value":1617.25' in detail.content

    assert (await client.get("/api/v1/transactions", params={"station": "CP-2"})).json() == []
    assert len((await client.get("/api/v1/transactions")).json()) == 1
    assert (await client.get("/api/v1/transactions/999")).status_code == 404
    not_a_number = await client.get("/api/v1/transactions/abc")
    assert not_a_number.status_code == 422
    assert "tx_id" in not_a_number.json()["detail"]


# -- OpenAPI --------------------------------------------------------------------------


@pytest.mark.unit
async def test_openapi_document(client: httpx.AsyncClient, app: FastAPI) -> None:
    doc = app.openapi()
    assert "/api/v1/stations/{station_id}/commands/{action}" in doc["paths"]
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    schemas = doc["components"]["schemas"]
    energy = schemas["TransactionOut"]["properties"]["energy_wh"]
    assert {"type": "number"} in energy["anyOf"]
    command = doc["paths"]["/api/v1/stations/{station_id}/commands/{action}"]["post"]
    assert {"409", "422", "502", "504"} <= set(command["responses"])
