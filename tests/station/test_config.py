"""Station configuration: OCPP 1.6 configuration keys and the OCPP 2.0.1 device model."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from plugstream.ocpp import OcppVersion, schemas
from plugstream.station.config import (
    Config16,
    DeviceModel201,
    Key16,
    VariableChange,
    VariableDef,
)

pytestmark = pytest.mark.unit

V16 = schemas(OcppVersion.V16)
V201 = schemas(OcppVersion.V201)


def valid16(action: str, kind: str, payload: Any) -> None:
    error = V16.validate(action, kind, payload)
    assert error is None, error


def valid201(action: str, kind: str, payload: Any) -> None:
    error = V201.validate(action, kind, payload)
    assert error is None, error


# ---------------------------------------------------------------------------- OCPP 1.6


def get16(config: Config16, keys: list[str] | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {} if keys is None else {"key": keys}
    valid16("GetConfiguration", "request", request)
    payload = config.response(keys)
    valid16("GetConfiguration", "response", payload)
    return payload


def change16(config: Config16, key: str, value: str) -> str:
    valid16("ChangeConfiguration", "request", {"key": key, "value": value})
    status = config.change(key, value)
    valid16("ChangeConfiguration", "response", {"status": status})
    return status


def test_get_configuration_all_keys_lists_standard_keys_with_accessibility() -> None:
    config = Config16(number_of_connectors=2)
    payload = get16(config)
    keys = {k["key"]: k for k in payload["configurationKey"]}
    assert "unknownKey" not in payload
    assert keys["HeartbeatInterval"]["readonly"] is False
    assert keys["NumberOfConnectors"] == {
        "key": "NumberOfConnectors",
        "readonly": True,
        "value": "2",
    }
    assert keys["SupportedFeatureProfiles"]["readonly"] is True
    for required in (
        "AuthorizeRemoteTxRequests",
        "ClockAlignedDataInterval",
        "ConnectionTimeOut",
        "GetConfigurationMaxKeys",
        "LocalAuthorizeOffline",
        "LocalPreAuthorize",
        "MeterValuesAlignedData",
        "MeterValuesSampledData",
        "MeterValueSampleInterval",
        "ResetRetries",
        "StopTransactionOnEVSideDisconnect",
        "StopTransactionOnInvalidId",
        "StopTxnAlignedData",
        "StopTxnSampledData",
        "TransactionMessageAttempts",
        "TransactionMessageRetryInterval",
        "UnlockConnectorOnEVSideDisconnect",
        "LocalAuthListEnabled",
        "LocalAuthListMaxLength",
        "SendLocalListMaxLength",
        "ChargeProfileMaxStackLevel",
        "ChargingScheduleAllowedChargingRateUnit",
        "ChargingScheduleMaxPeriods",
        "MaxChargingProfilesInstalled",
    ):
        assert required in keys, required
    assert len(keys) <= config.get_int("GetConfigurationMaxKeys")


def test_get_configuration_named_and_unknown_keys() -> None:
    config = Config16()
    payload = get16(config, ["heartbeatinterval", "NoSuchKey", "MeterValueSampleInterval"])
    assert [k["key"] for k in payload["configurationKey"]] == [
        "HeartbeatInterval",
        "MeterValueSampleInterval",
    ]
    assert payload["unknownKey"] == ["NoSuchKey"]


def test_write_only_authorization_key_is_never_disclosed() -> None:
    config = Config16()
    assert change16(config, "AuthorizationKey", "0123456789abcdef0123") == "Accepted"
    assert config.authorization_key == "0123456789abcdef0123"
    everything = get16(config)
    assert "AuthorizationKey" not in {k["key"] for k in everything["configurationKey"]}
    assert "0123456789abcdef0123" not in json.dumps(everything)
    named = get16(config, ["AuthorizationKey"])
    assert named == {"unknownKey": ["AuthorizationKey"]}


def test_authorization_key_too_short_is_rejected() -> None:
    config = Config16()
    assert change16(config, "AuthorizationKey", "short") == "Rejected"
    assert config.authorization_key is None


def test_change_configuration_accepted_and_typed_accessor() -> None:
    config = Config16()
    assert change16(config, "HeartbeatInterval", "120") == "Accepted"
    assert config.heartbeat_interval == 120
    assert change16(config, "LocalAuthorizeOffline", "FALSE") == "Accepted"
    assert config.local_authorize_offline is False
    assert config.value("LocalAuthorizeOffline") == "false"
    assert (
        change16(config, "MeterValuesSampledData", "Energy.Active.Import.Register,Voltage.L1-N")
        == "Accepted"
    )
    assert config.meter_values_sampled_data == ["Energy.Active.Import.Register", "Voltage.L1-N"]


def test_change_configuration_read_only_key_rejected() -> None:
    config = Config16()
    for key, value in (
        ("NumberOfConnectors", "4"),
        ("SupportedFeatureProfiles", "Core"),
        ("ChargeProfileMaxStackLevel", "3"),
        ("LocalAuthListMaxLength", "5"),
    ):
        before = config.value(key)
        assert change16(config, key, value) == "Rejected"
        assert config.value(key) == before


def test_change_configuration_unknown_key_not_supported() -> None:
    assert change16(Config16(), "NoSuchKey", "1") == "NotSupported"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HeartbeatInterval", "abc"),
        ("HeartbeatInterval", "1.5"),
        ("HeartbeatInterval", "-1"),
        ("ConnectionTimeOut", "0"),
        ("LocalPreAuthorize", "yes"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,NotAMeasurand"),
        ("MeterValuesSampledData", "Voltage,Voltage"),
        ("ConnectorPhaseRotation", "0.RST,5.RST"),
        ("ConnectorPhaseRotation", "1.XYZ"),
    ],
)
def test_change_configuration_invalid_value_rejected(key: str, value: str) -> None:
    config = Config16()
    before = config.value(key)
    assert change16(config, key, value) == "Rejected"
    assert config.value(key) == before


def test_csl_longer_than_its_max_length_key_rejected() -> None:
    config = Config16(defaults={"MeterValuesSampledDataMaxLength": "2"})
    assert change16(config, "MeterValuesSampledData", "Voltage,SoC") == "Accepted"
    assert change16(config, "MeterValuesSampledData", "Voltage,SoC,Frequency") == "Rejected"


def test_security_profile_can_be_raised_not_lowered() -> None:
    config = Config16()
    assert change16(config, "SecurityProfile", "2") == "Accepted"
    assert change16(config, "SecurityProfile", "1") == "Rejected"
    assert config.security_profile == 2


def test_reboot_required_key_is_stored_but_not_announced(tmp_path: Path) -> None:
    vendor = Key16("PlugStreamLteApn", "string", "RW", "internet", reboot=True)
    config = Config16(tmp_path, extra_keys=[vendor])
    seen: list[tuple[str, str]] = []
    config.add_listener(lambda k, v: seen.append((k, v)))
    assert change16(config, "PlugStreamLteApn", "m2m.example") == "RebootRequired"
    assert seen == []
    reloaded = Config16.load(tmp_path, extra_keys=[vendor])
    assert reloaded.value("PlugStreamLteApn") == "m2m.example"


def test_listener_fired_on_accepted_change_only() -> None:
    config = Config16()
    seen: list[tuple[str, str]] = []
    config.add_listener(lambda k, v: seen.append((k, v)))
    config.change("heartbeatInterval", "60")
    config.change("HeartbeatInterval", "x")
    config.change("NumberOfConnectors", "3")
    assert seen == [("HeartbeatInterval", "60")]


def test_persisted_across_restart(tmp_path: Path) -> None:
    config = Config16.load(tmp_path, number_of_connectors=2)
    assert config.path == tmp_path / Config16.FILENAME
    assert config.change("HeartbeatInterval", "900") == "Accepted"
    assert config.change("AuthorizationKey", "A" * 20) == "Accepted"
    assert config.path is not None and config.path.exists()
    assert list(tmp_path.iterdir()) == [config.path]  # no temporary files left behind
    again = Config16.load(tmp_path, number_of_connectors=2)
    assert again.heartbeat_interval == 900
    assert again.authorization_key == "A" * 20
    assert again.number_of_connectors == 2


def test_load_ignores_corrupt_and_read_only_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "values": {
                    "HeartbeatInterval": "oops",
                    "NumberOfConnectors": "9",
                    "Gone": "1",
                    "ResetRetries": "7",
                }
            }
        )
    )
    config = Config16.load(path)
    assert config.heartbeat_interval == 300
    assert config.number_of_connectors == 1
    assert config.reset_retries == 7


# ---------------------------------------------------------------------------- OCPP 2.0.1


def cv(component: str, variable: str, **extra: Any) -> dict[str, Any]:
    comp: dict[str, Any] = {"name": component}
    var: dict[str, Any] = {"name": variable}
    if "instance" in extra:
        var["instance"] = extra.pop("instance")
    if "evse" in extra:
        comp["evse"] = extra.pop("evse")
    return {"component": comp, "variable": var, **extra}


def get201(model: DeviceModel201, *items: dict[str, Any]) -> list[dict[str, Any]]:
    request = {"getVariableData": list(items)}
    valid201("GetVariables", "request", request)
    results = model.get_variables(request["getVariableData"])
    valid201("GetVariables", "response", {"getVariableResult": results})
    assert len(results) == len(items)  # B06.FR.01
    return results


def set201(model: DeviceModel201, *items: dict[str, Any]) -> list[dict[str, Any]]:
    request = {"setVariableData": list(items)}
    valid201("SetVariables", "request", request)
    results = model.set_variables(request["setVariableData"])
    valid201("SetVariables", "response", {"setVariableResult": results})
    assert len(results) == len(items)  # B05.FR.01
    return results


def test_TC_B_06_CS_get_variables_single_value() -> None:
    (result,) = get201(DeviceModel201(), cv("OCPPCommCtrlr", "OfflineThreshold"))
    assert result == {
        "attributeStatus": "Accepted",
        "attributeType": "Actual",  # B06.FR.11
        "attributeValue": "60",
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "OfflineThreshold"},
    }


def test_TC_B_07_CS_get_variables_multiple_values() -> None:
    model = DeviceModel201(evses={1: 1, 2: 1})
    results = get201(
        model,
        cv("OCPPCommCtrlr", "MessageAttempts", instance="TransactionEvent"),
        cv("ocppcommctrlr", "heartbeatinterval", attributeType="Actual"),
        cv("EVSE", "AvailabilityState", evse={"id": 2}),
        cv("Connector", "ConnectorType", evse={"id": 1, "connectorId": 1}),
    )
    assert [r["attributeStatus"] for r in results] == ["Accepted"] * 4
    assert [r["attributeValue"] for r in results] == ["3", "300", "Available", "cType2"]
    assert results[1]["component"] == {"name": "ocppcommctrlr"}  # echoed as asked (B06.FR.02)


def test_TC_B_32_CS_get_variables_unknown_component() -> None:
    model = DeviceModel201()
    unknown, evse9 = get201(
        model, cv("NoSuchCtrlr", "Enabled"), cv("EVSE", "AvailabilityState", evse={"id": 9})
    )
    for result in (unknown, evse9):
        assert result["attributeStatus"] == "UnknownComponent"
        assert "attributeValue" not in result  # B06.FR.06


def test_TC_B_33_CS_get_variables_unknown_variable() -> None:
    unknown, no_instance = get201(
        DeviceModel201(),
        cv("OCPPCommCtrlr", "NoSuchVariable"),
        cv("OCPPCommCtrlr", "MessageAttempts"),  # exists only with instance TransactionEvent
    )
    assert unknown["attributeStatus"] == "UnknownVariable"
    assert no_instance["attributeStatus"] == "UnknownVariable"  # B06.FR.15
    assert "attributeValue" not in unknown


def test_TC_B_34_CS_get_variables_not_supported_attribute_type() -> None:
    (result,) = get201(
        DeviceModel201(), cv("OCPPCommCtrlr", "OfflineThreshold", attributeType="Target")
    )
    assert result["attributeStatus"] == "NotSupportedAttributeType"
    assert result["attributeType"] == "Target"
    assert "attributeValue" not in result


def test_get_variables_write_only_rejected() -> None:
    model = DeviceModel201()
    set201(model, cv("SecurityCtrlr", "BasicAuthPassword", attributeValue="s3cret-s3cret-s3cret"))
    (result,) = get201(model, cv("SecurityCtrlr", "BasicAuthPassword"))
    assert result["attributeStatus"] == "Rejected"  # B06.FR.09
    assert result["attributeStatusInfo"] == {"reasonCode": "WriteOnly"}
    assert "attributeValue" not in result
    assert model.basic_auth_password == "s3cret-s3cret-s3cret"


def test_TC_B_09_CS_set_variables_single_value_and_listener() -> None:
    model = DeviceModel201()
    seen: list[VariableChange] = []
    model.add_listener(seen.append)
    (result,) = set201(model, cv("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="90"))
    assert result == {
        "attributeStatus": "Accepted",
        "attributeType": "Actual",  # B05.FR.12
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "HeartbeatInterval"},
    }
    assert model.heartbeat_interval == 90
    assert [(c.component, c.variable, c.attribute, c.value) for c in seen] == [
        ("OCPPCommCtrlr", "HeartbeatInterval", "Actual", "90")
    ]
    (read,) = get201(model, cv("OCPPCommCtrlr", "HeartbeatInterval"))
    assert read["attributeValue"] == "90"


def test_TC_B_10_CS_set_variables_multiple_values() -> None:
    model = DeviceModel201()
    results = set201(
        model,
        cv("OCPPCommCtrlr", "MessageAttempts", instance="TransactionEvent", attributeValue="5"),
        cv(
            "OCPPCommCtrlr",
            "MessageAttemptInterval",
            instance="TransactionEvent",
            attributeValue="30",
        ),
        cv("TxCtrlr", "TxStartPoint", attributeValue="EVConnected,Authorized"),
        cv("TxCtrlr", "EVConnectionTimeOut", attributeValue="120"),
        cv("AuthCtrlr", "LocalAuthorizeOffline", attributeValue="false"),
        cv(
            "SampledDataCtrlr",
            "TxUpdatedMeasurands",
            attributeValue="Energy.Active.Import.Register,SoC",
        ),
    )
    assert [r["attributeStatus"] for r in results] == ["Accepted"] * 6
    assert model.message_attempts_transaction_event == 5
    assert model.message_attempt_interval_transaction_event == 30
    assert model.tx_start_point == ["EVConnected", "Authorized"]
    assert model.ev_connection_timeout == 120
    assert model.local_authorize_offline is False
    assert model.sampled_data_tx_updated_measurands == ["Energy.Active.Import.Register", "SoC"]


@pytest.mark.parametrize(
    ("component", "variable", "value", "reason"),
    [
        ("OCPPCommCtrlr", "OfflineThreshold", "60.1", "InvalidValue"),
        ("OCPPCommCtrlr", "OfflineThreshold", "true", "InvalidValue"),
        ("OCPPCommCtrlr", "OfflineThreshold", "abc", "InvalidValue"),
        ("OCPPCommCtrlr", "OfflineThreshold", "-5", "ValueOutOfRange"),
        ("OCPPCommCtrlr", "HeartbeatInterval", "0", "ValueOutOfRange"),
        ("SmartChargingCtrlr", "LimitChangeSignificance", "true", "InvalidValue"),
        ("SmartChargingCtrlr", "LimitChangeSignificance", "101", "ValueOutOfRange"),
        ("AuthCtrlr", "AuthorizeRemoteStart", "abc", "InvalidValue"),
        ("AuthCtrlr", "AuthorizeRemoteStart", "1", "InvalidValue"),
        ("ClockCtrlr", "NextTimeOffsetTransitionDateTime", "abc", "InvalidValue"),
        ("AuthCacheCtrlr", "Policy", "MRU", "InvalidValue"),
        ("TxCtrlr", "TxStartPoint", "EVConnected,Sunrise", "InvalidValue"),
        ("TxCtrlr", "TxStartPoint", "", "InvalidValue"),
        ("AlignedDataCtrlr", "Measurands", "Voltage,Voltage", "InvalidValue"),
        ("ClockCtrlr", "TimeSource", "NTP,Sundial", "InvalidValue"),
        ("SecurityCtrlr", "BasicAuthPassword", "short", "ValueOutOfRange"),
        ("SecurityCtrlr", "BasicAuthPassword", "x" * 41, "ValueOutOfRange"),
    ],
)
def test_TC_B_11_CS_set_variables_invalid_values_rejected(
    component: str, variable: str, value: str, reason: str
) -> None:
    model = DeviceModel201()
    before = model.value(component, variable)
    (result,) = set201(model, cv(component, variable, attributeValue=value))
    assert result["attributeStatus"] == "Rejected"  # B05.FR.07 / B05.FR.08
    assert result["attributeStatusInfo"] == {"reasonCode": reason}
    assert model.value(component, variable) == before


def test_TC_B_11_CS_valid_values_of_each_type_accepted() -> None:
    model = DeviceModel201()
    results = set201(
        model,
        cv("SmartChargingCtrlr", "LimitChangeSignificance", attributeValue="60"),
        cv("SmartChargingCtrlr", "LimitChangeSignificance", attributeValue="12.5"),
        cv("ClockCtrlr", "NextTimeOffsetTransitionDateTime", attributeValue="2026-03-29T01:00:00Z"),
        cv("ClockCtrlr", "TimeSource", attributeValue="Heartbeat,NTP"),
    )
    assert [r["attributeStatus"] for r in results] == ["Accepted"] * 4
    assert model.value("SmartChargingCtrlr", "LimitChangeSignificance") == "12.5"


def test_TC_B_35_CS_set_variables_unknown_component() -> None:
    (result,) = set201(DeviceModel201(), cv("NoSuchCtrlr", "Enabled", attributeValue="true"))
    assert result["attributeStatus"] == "UnknownComponent"


def test_TC_B_36_CS_set_variables_unknown_variable() -> None:
    (result,) = set201(DeviceModel201(), cv("OCPPCommCtrlr", "NoSuchVariable", attributeValue="1"))
    assert result["attributeStatus"] == "UnknownVariable"


def test_TC_B_37_CS_set_variables_not_supported_attribute_type() -> None:
    (result,) = set201(
        DeviceModel201(),
        cv("OCPPCommCtrlr", "OfflineThreshold", attributeType="MaxSet", attributeValue="10"),
    )
    assert result["attributeStatus"] == "NotSupportedAttributeType"
    assert result["attributeType"] == "MaxSet"


def test_TC_B_39_CS_set_variables_read_only_rejected() -> None:
    model = DeviceModel201()
    results = set201(
        model,
        cv("SecurityCtrlr", "SecurityProfile", attributeValue="2"),
        cv("SmartChargingCtrlr", "ProfileStackLevel", attributeValue="3"),
        cv("EVSE", "AvailabilityState", evse={"id": 1}, attributeValue="Unavailable"),
    )
    for result in results:
        assert result["attributeStatus"] == "Rejected"  # B05.FR.09
        assert result["attributeStatusInfo"] == {"reasonCode": "ReadOnly"}
    assert model.security_profile == 0
    assert model.value("EVSE", "AvailabilityState", evse=1) == "Available"


def test_reboot_required_variable() -> None:
    vendor = VariableDef("PlugStreamCtrlr", "LteApn", "string", "internet", reboot=True)
    model = DeviceModel201(extra=[vendor])
    seen: list[VariableChange] = []
    model.add_listener(seen.append)
    (result,) = set201(model, cv("PlugStreamCtrlr", "LteApn", attributeValue="m2m"))
    assert result["attributeStatus"] == "RebootRequired"
    assert seen == []
    assert model.value("PlugStreamCtrlr", "LteApn") == "m2m"


def test_device_model_persisted_across_restart(tmp_path: Path) -> None:
    model = DeviceModel201.load(tmp_path, evses={1: 2})
    set201(
        model,
        cv("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="45"),
        cv("SecurityCtrlr", "BasicAuthPassword", attributeValue="p" * 20),
        cv("TxCtrlr", "TxStopPoint", attributeValue="EVConnected"),
    )
    model.set_value("EVSE", "AvailabilityState", "Unavailable", evse=1)  # runtime state
    assert model.path is not None
    assert list(tmp_path.iterdir()) == [model.path]
    again = DeviceModel201.load(tmp_path, evses={1: 2})
    assert again.heartbeat_interval == 45
    assert again.basic_auth_password == "p" * 20
    assert again.tx_stop_point == ["EVConnected"]
    assert again.value("EVSE", "AvailabilityState", evse=1) == "Available"


def test_set_value_from_station_notifies_and_validates() -> None:
    model = DeviceModel201()
    seen: list[VariableChange] = []
    model.add_listener(seen.append)
    model.set_value("Connector", "AvailabilityState", "Occupied", evse=1, connector=1)
    model.set_value("Connector", "AvailabilityState", "Occupied", evse=1, connector=1)
    assert len(seen) == 1 and seen[0].value == "Occupied"
    with pytest.raises(ValueError):
        model.set_value("Connector", "AvailabilityState", "Sleepy", evse=1, connector=1)


def test_provider_supplies_live_value() -> None:
    model = DeviceModel201()
    model.provide("ClockCtrlr", "DateTime", lambda: "2026-11-25T12:00:00Z")
    (result,) = get201(model, cv("ClockCtrlr", "DateTime"))
    assert result["attributeValue"] == "2026-11-25T12:00:00Z"


def idents(report: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["component"]["name"], r["variable"]["name"]) for r in report}


def test_TC_B_12_CS_base_report_configuration_inventory() -> None:
    model = DeviceModel201()
    report = model.report("ConfigurationInventory")
    assert ("OCPPCommCtrlr", "HeartbeatInterval") in idents(report)
    assert ("SecurityCtrlr", "BasicAuthPassword") in idents(report)
    assert ("SecurityCtrlr", "SecurityProfile") not in idents(report)
    assert ("EVSE", "AvailabilityState") not in idents(report)
    for entry in report:
        assert entry["variableAttribute"][0]["mutability"] in ("ReadWrite", "WriteOnly")
        assert "dataType" in entry["variableCharacteristics"]  # B07.FR.07
    (password,) = [r for r in report if r["variable"]["name"] == "BasicAuthPassword"]
    assert "value" not in password["variableAttribute"][0]


def test_TC_B_13_CS_base_report_full_inventory() -> None:
    model = DeviceModel201(evses={1: 1, 2: 2})
    full = model.report("FullInventory")
    config = model.report("ConfigurationInventory")
    assert idents(config) < idents(full)
    assert len(full) == len(model.variables())
    for required in (
        ("ChargingStation", "AvailabilityState"),
        ("SecurityCtrlr", "SecurityProfile"),
        ("SmartChargingCtrlr", "ProfileStackLevel"),
        ("DeviceDataCtrlr", "ItemsPerMessage"),
        ("ClockCtrlr", "DateTime"),
        ("Connector", "ConnectorType"),
    ):
        assert required in idents(full), required
    connectors = [
        r
        for r in full
        if r["component"]["name"] == "Connector" and r["variable"]["name"] == "ConnectorType"
    ]
    assert sorted(
        (c["component"]["evse"]["id"], c["component"]["evse"]["connectorId"]) for c in connectors
    ) == [
        (1, 1),
        (2, 1),
        (2, 2),
    ]
    # every report validates as NotifyReportRequest, split per ItemsPerMessage[GetReport]
    messages = model.notify_reports(
        "FullInventory", 7, "2026-11-25T12:00:00Z", items_per_message=40
    )
    assert [m["seqNo"] for m in messages] == list(range(len(messages)))
    assert [m["tbc"] for m in messages] == [True] * (len(messages) - 1) + [False]
    assert sum(len(m["reportData"]) for m in messages) == len(full)
    for message in messages:
        valid201("NotifyReport", "request", message)


def test_TC_B_14_CS_base_report_summary_inventory() -> None:
    model = DeviceModel201(evses={1: 1})
    model.set_value("EVSE", "AvailabilityState", "Faulted", evse=1)
    summary = model.report("SummaryInventory")
    assert idents(summary) == {
        ("ChargingStation", "AvailabilityState"),
        ("EVSE", "AvailabilityState"),
        ("Connector", "AvailabilityState"),
    }
    (evse,) = [r for r in summary if r["component"]["name"] == "EVSE"]
    assert evse["variableAttribute"][0]["value"] == "Faulted"
    for message in model.notify_reports("SummaryInventory", 1, "2026-11-25T12:00:00Z"):
        valid201("NotifyReport", "request", message)


def test_TC_B_15_CS_unsupported_base_report() -> None:
    with pytest.raises(ValueError):
        DeviceModel201().report("NoSuchInventory")


@pytest.mark.parametrize("base", ["ConfigurationInventory", "FullInventory", "SummaryInventory"])
def test_every_report_entry_validates(base: str) -> None:
    model = DeviceModel201(evses={1: 2, 2: 1})
    model.provide("ClockCtrlr", "DateTime", lambda: "2026-11-25T12:00:00Z")
    report = model.report(base)
    valid201(
        "NotifyReport",
        "request",
        {"requestId": 1, "generatedAt": "2026-11-25T12:00:00Z", "seqNo": 0, "reportData": report},
    )


def test_files_are_private_and_a_corrupt_file_falls_back_to_defaults(tmp_path: Path) -> None:
    model = DeviceModel201.load(tmp_path)
    set201(model, cv("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="45"))
    assert model.path is not None
    assert model.path.stat().st_mode & 0o777 == 0o600
    model.path.write_text("{not json")
    assert DeviceModel201.load(tmp_path).heartbeat_interval == 300


def test_stations_share_the_default_values_and_keep_their_own_changes() -> None:
    """A fleet of 10,000 holds the keys and defaults once; a change stays with its station."""
    one, two = Config16(None), Config16(None)
    assert one._keys is two._keys
    assert one._values.maps[1] is two._values.maps[1]  # the shared defaults
    assert change16(one, "HeartbeatInterval", "600") == "Accepted"
    assert one.heartbeat_interval == 600
    assert two.heartbeat_interval == Config16(None).heartbeat_interval != 600
    assert one._values.maps[0] == {"HeartbeatInterval": "600"}  # only what it changed
    assert two._values.maps[0] == {}


def test_set_internal_to_the_same_value_writes_nothing(tmp_path: Path) -> None:
    """The HeartbeatInterval of every boot is stored only when it changed."""
    config = Config16(tmp_path)
    config.set_internal("HeartbeatInterval", "777")
    assert config.path is not None and config.path.exists()
    config.path.unlink()
    config.set_internal("HeartbeatInterval", "777")
    assert not config.path.exists()


HEARTBEAT201 = ("OCPPCommCtrlr", "HeartbeatInterval")


def test_device_models_of_a_fleet_share_their_defaults_and_keep_their_own_changes(
    tmp_path: Path,
) -> None:
    """10,000 stations hold 120 variables each: the definitions and default values are
    held once, and what one station's CSMS sets is that station's alone."""
    a = DeviceModel201(tmp_path / "a", identity="CP-A")
    b = DeviceModel201(tmp_path / "b", identity="CP-B")
    assert a._shared is b._shared  # definitions, default values, index: once for both
    assert a._own is None and b._own is None  # nothing of their own until a change
    same = [x is y for x, y in zip(a.variables(), b.variables(), strict=True)]
    assert same.count(False) == 1  # all the same objects but the station's own Identity
    assert a.definition("SecurityCtrlr", "Identity").default == "CP-A"
    assert a.value("SecurityCtrlr", "Identity") == "CP-A"
    assert b.value("SecurityCtrlr", "Identity") == "CP-B"
    assert get201(b, cv("SecurityCtrlr", "Identity"))[0]["attributeValue"] == "CP-B"

    (result,) = set201(a, cv(*HEARTBEAT201, attributeValue="120"))
    assert result["attributeStatus"] == "Accepted"
    a.set_value("ClockCtrlr", "TimeZone", "Europe/Berlin")
    assert a.heartbeat_interval == 120
    assert a.value("ClockCtrlr", "TimeZone") == "Europe/Berlin"
    assert a._own is not None and len(a._own) == 2  # only what it changed
    assert b._own is None  # b's values untouched
    assert b.heartbeat_interval == 300
    assert b.value("ClockCtrlr", "TimeZone") == ""
    assert get201(b, cv(*HEARTBEAT201))[0]["attributeValue"] == "300"
    full_b = {
        (e["component"]["name"], e["variable"]["name"]): e["variableAttribute"][0].get("value")
        for e in b.report("FullInventory")
    }
    assert full_b[HEARTBEAT201] == "300"
    assert full_b[("SecurityCtrlr", "Identity")] == "CP-B"
    assert DeviceModel201(tmp_path / "c").heartbeat_interval == 300  # a new one neither

    b.provide("ClockCtrlr", "DateTime", lambda: "2026-11-25T12:00:00Z")
    assert b.value("ClockCtrlr", "DateTime") == "2026-11-25T12:00:00Z"
    assert a.value("ClockCtrlr", "DateTime") == ""  # a provider is the station's own too

    reloaded = DeviceModel201.load(tmp_path / "a", identity="CP-A")
    assert reloaded.heartbeat_interval == 120
    assert reloaded.value("ClockCtrlr", "TimeZone") == "Europe/Berlin"
    # the file lists every settable variable; what is at its default is not held twice
    assert reloaded._own is not None and len(reloaded._own) == 2
    set201(reloaded, cv(*HEARTBEAT201, attributeValue="300"))  # back to the default
    assert reloaded.heartbeat_interval == 300
    assert len(reloaded._own) == 1
    assert DeviceModel201.load(tmp_path / "a").heartbeat_interval == 300


def test_a_device_model_of_a_fleet_holds_little_of_its_own() -> None:
    """A fresh station's device model is a few hundred bytes, not a copy of 120 variables
    (each was an object with its own index key: ~40 KB a station of a 2.0.1 fleet)."""
    count = 200
    kwargs: dict[str, Any] = {"evses": {1: 1}, "model": "Footprint 11", "max_power_w": 11000.0}
    DeviceModel201(identity="CP-warm", **kwargs)  # the kind's shared part is made once
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        models = [DeviceModel201(identity=f"CP-{n:05d}", **kwargs) for n in range(count)]
        for model in models:  # every station reads its settings: nothing is copied for that
            assert model.heartbeat_interval == 300
            model.provide("ClockCtrlr", "DateTime", lambda: "2026-11-25T12:00:00Z")
        per_model = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert all(model._own is None for model in models)
    assert per_model < 2000, f"{per_model:.0f} bytes a device model"
