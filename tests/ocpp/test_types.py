"""The generated payload types (plugstream.ocpp.v16/v201/v21) against the OCA schemas."""

from __future__ import annotations

import importlib.resources
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import pytest

from plugstream.ocpp import v16, v21, v201

ROOT = Path(__file__).resolve().parents[2]
MODULES = {"v16": v16, "v201": v201, "v21": v21}


def load(folder: str) -> dict[str, dict[str, Any]]:
    """Every schema of ``folder``, by file name without ``.json``."""
    root = importlib.resources.files("ocpp") / folder / "schemas"
    return {
        p.name.removesuffix(".json"): json.loads(p.read_bytes().decode("utf-8-sig"))
        for p in root.iterdir()
        if p.name.endswith(".json")
    }


def payload_types(folder: str) -> dict[str, str]:
    """Schema file name -> name of the TypedDict of its payload."""
    found = {}
    for stem in load(folder):
        # 1.6 request files and the 2.1 SEND file carry no suffix.
        found[stem] = stem if stem.endswith(("Request", "Response")) else stem + "Request"
    return found


def actions(folder: str) -> set[str]:
    return {
        name.removesuffix("Request").removesuffix("Response")
        for name in payload_types(folder).values()
    }


@pytest.mark.parametrize("folder", MODULES)
@pytest.mark.unit
def test_every_action_has_a_member_and_both_payload_types(folder: str) -> None:
    module = MODULES[folder]
    expected = actions(folder)
    assert {a.value for a in module.Action} == expected
    for action in expected:
        assert module.Action[action] == action
        assert isinstance(getattr(module, f"{action}Request"), type)
        if folder == "v21" and action == "NotifyPeriodicEventStream":
            continue  # a SEND message: there is no response
        assert isinstance(getattr(module, f"{action}Response"), type)


@pytest.mark.unit
def test_action_counts() -> None:
    # 1.6 with the security extension, 2.0.1, 2.1 (plus its one SEND message).
    assert (len(v16.Action), len(v201.Action), len(v21.Action)) == (39, 64, 91)
    assert v21.Action("NotifyPeriodicEventStream") is v21.Action.NotifyPeriodicEventStream
    assert not hasattr(v21, "NotifyPeriodicEventStreamResponse")


@pytest.mark.parametrize(
    ("typed_dict", "required"),
    [
        (v16.BootNotificationRequest, {"chargePointVendor", "chargePointModel"}),
        (v16.BootNotificationResponse, {"status", "currentTime", "interval"}),
        (v16.StopTransactionRequest, {"transactionId", "timestamp", "meterStop"}),
        (v16.TransactionData, {"timestamp", "sampledValue"}),
        (v201.BootNotificationRequest, {"reason", "chargingStation"}),
        (v201.ChargingStationType, {"model", "vendorName"}),
        (
            v201.TransactionEventRequest,
            {"eventType", "timestamp", "triggerReason", "seqNo", "transactionInfo"},
        ),
    ],
)
@pytest.mark.unit
def test_required_keys_of_well_known_payloads(typed_dict: Any, required: set[str]) -> None:
    assert typed_dict.__required_keys__ == required


def _check(typed_dict: Any, schema: dict[str, Any], where: str) -> None:
    required = set(schema.get("required", []))
    optional = set(schema.get("properties", {})) - required
    assert typed_dict.__required_keys__ == required, where
    assert typed_dict.__optional_keys__ == optional, where


@pytest.mark.parametrize("folder", MODULES)
@pytest.mark.unit
def test_keys_of_every_payload_match_its_schema(folder: str) -> None:
    module = MODULES[folder]
    schemas = load(folder)
    for stem, type_name in payload_types(folder).items():
        _check(getattr(module, type_name), schemas[stem], f"{folder} {stem}")


@pytest.mark.parametrize("folder", MODULES)
@pytest.mark.unit
def test_definitions_become_typed_dicts_and_literals(folder: str) -> None:
    module: ModuleType = MODULES[folder]
    for stem, schema in load(folder).items():
        for name, node in schema.get("definitions", {}).items():
            where = f"{folder} {stem} {name}"
            if "enum" in node:
                assert set(get_args(getattr(module, name))) == set(node["enum"]), where
            else:
                _check(getattr(module, name), node, where)


@pytest.mark.unit
def test_v16_inline_types_are_named_and_shared() -> None:
    assert v16.AuthorizeResponse.__annotations__["idTagInfo"] is v16.IdTagInfo
    assert v16.StartTransactionResponse.__annotations__["idTagInfo"] is v16.IdTagInfo
    assert "Accepted" in get_args(v16.IdTagInfoStatus)
    # StopTransaction's transactionData lacks the "Hertz" unit that MeterValues has.
    assert "Hertz" in get_args(v16.SampledValueUnit)
    assert "Hertz" not in get_args(v16.TransactionDataSampledValueUnit)


@pytest.mark.socket
def test_generated_modules_are_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_types.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
