"""The command catalogue (issue 16): every action the CSMS may send a station, in the
station's OCPP version, with the official JSON schema of its request, so a client (the
console's command forms) can offer exactly what ``POST .../commands/{action}`` accepts."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from plugstream.ocpp import OcppVersion, csms_actions
from tests.cloud.raw_station201 import Hop, station201
from tests.support import booted16, until

pytestmark = pytest.mark.socket


async def catalogue(api: httpx.AsyncClient, station_id: str) -> dict[str, Any]:
    answer = await api.get(f"/stations/{station_id}/commands")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def schemas_by_action(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["action"]: entry["request_schema"] for entry in found["actions"]}


async def test_a_16_station_is_offered_the_16_actions_each_with_its_request_schema(
    hop: Hop,
) -> None:
    async with booted16(hop.cloud.url("CAT-16")):
        found = await catalogue(hop.api, "CAT-16")
        assert found["ocpp_version"] == "1.6" and found["connected"] is True
        offered = schemas_by_action(found)
        assert set(offered) == set(csms_actions(OcppVersion.V16))
        assert "RemoteStartTransaction" in offered and "RequestStartTransaction" not in offered
        remote_start = offered["RemoteStartTransaction"]
        assert remote_start["required"] == ["idTag"]
        assert remote_start["properties"]["connectorId"]["type"] == "integer"
        assert all(schema.get("type") == "object" for schema in offered.values())
    # offline, it keeps the version it last spoke
    await until(lambda: not hop.cloud.gateway.is_connected("CAT-16"), "CAT-16 gone")
    found = await catalogue(hop.api, "CAT-16")
    assert found["ocpp_version"] == "1.6" and found["connected"] is False
    assert set(schemas_by_action(found)) == set(csms_actions(OcppVersion.V16))


async def test_a_201_station_is_offered_the_201_actions_with_schemas_that_refer_to_their_definitions(
    hop: Hop,
) -> None:
    async with station201(hop, "CAT-201"):
        found = await catalogue(hop.api, "CAT-201")
    assert found["ocpp_version"] == "2.0.1"
    offered = schemas_by_action(found)
    assert set(offered) == set(csms_actions(OcppVersion.V201))
    assert "RemoteStartTransaction" not in offered
    start = offered["RequestStartTransaction"]
    assert set(start["required"]) == {"idToken", "remoteStartId"}
    ref = start["properties"]["idToken"]["$ref"]
    assert ref.startswith("#/definitions/") and ref.rsplit("/", 1)[1] in start["definitions"]
    assert [entry["action"] for entry in found["actions"]] == sorted(offered)


async def test_an_unknown_station_has_no_catalogue_and_a_bad_id_is_refused(hop: Hop) -> None:
    missing = await hop.api.get("/stations/NOBODY/commands")
    assert missing.status_code == 404
    assert "NOBODY" in missing.json()["detail"]
    bad = await hop.api.get("/stations/a%20b/commands")
    assert bad.status_code == 422


async def test_the_catalogue_needs_the_token(hop: Hop) -> None:
    async with httpx.AsyncClient(base_url=str(hop.api.base_url)) as anonymous:
        assert (await anonymous.get("/stations/ANY/commands")).status_code == 401
