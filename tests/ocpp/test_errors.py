"""Every RPC framework error the core produces, with each version's spelling (OCPP-J 1.6 §4.2.3,
2.0.1 and 2.1 part 4 §4.2.3/§4.3): what a peer sending bad frames sees."""

from __future__ import annotations

import orjson
import pytest

from plugstream.ocpp import ErrorCode, OcppVersion, RpcSession, Transmit

pytestmark = pytest.mark.unit

V16, V201, V21 = OcppVersion.V16, OcppVersion.V201, OcppVersion.V21

BOOT16 = {"chargePointVendor": "PlugStream", "chargePointModel": "PlugStream 7"}
BOOT201 = {
    "reason": "PowerUp",
    "chargingStation": {"vendorName": "PlugStream", "model": "PlugStream 7"},
}


def answer(version: OcppVersion, text: str, supported: set[str] | None = None) -> list[object]:
    session = RpcSession(version, clock=lambda: 0.0, supported_actions=supported)
    sent = [e for e in session.receive(text) if isinstance(e, Transmit)]
    assert len(sent) == 1, f"expected exactly one CALLERROR, got {sent}"
    reply: list[object] = orjson.loads(sent[0].text)
    assert reply[0] == 4 and len(reply) == 5
    assert isinstance(reply[3], str) and len(reply[3]) <= 255
    assert isinstance(reply[4], dict)
    return reply


# (case, version, frame text, wire error code, echoed message id)
CASES = [
    # not JSON / not an array: the version's framework error, id unreadable
    ("not-json", V16, "{nope", "FormationViolation", "-1"),
    ("not-json", V201, "{nope", "RpcFrameworkError", "-1"),
    ("not-json", V21, "[2, 'x'", "RpcFrameworkError", "-1"),
    ("not-utf8", V201, b"\xff\xfe[2]", "RpcFrameworkError", "-1"),
    ("object", V16, '{"a": 1}', "FormationViolation", "-1"),
    ("object", V201, '{"a": 1}', "RpcFrameworkError", "-1"),
    ("string", V201, '"hello"', "RpcFrameworkError", "-1"),
    ("empty-array", V201, "[]", "RpcFrameworkError", "-1"),
    # envelope errors: the id is echoed where it can be read
    ("type-not-int", V201, '["2", "m1", "Heartbeat", {}]', "RpcFrameworkError", "m1"),
    ("id-not-string", V201, '[2, 17, "Heartbeat", {}]', "RpcFrameworkError", "-1"),
    # an id beyond string[36] cannot be echoed (the CALLERROR's MessageId is string[36]):
    # it is one that "cannot be read"
    (
        "id-too-long",
        V201,
        '[2, "' + "x" * 37 + '", "Heartbeat", {}]',
        "RpcFrameworkError",
        "-1",
    ),
    ("id-10000", V16, '[2, "' + "x" * 10_000 + '", "Heartbeat", {}]', "FormationViolation", "-1"),
    (
        "id-too-long-type",
        V201,
        '["2", "' + "x" * 37 + '", "Heartbeat", {}]',
        "RpcFrameworkError",
        "-1",
    ),
    ("call-3-elements", V16, '[2, "m2", "Heartbeat"]', "FormationViolation", "m2"),
    ("call-5-elements", V201, '[2, "m2", "Heartbeat", {}, {}]', "RpcFrameworkError", "m2"),
    ("action-not-string", V201, '[2, "m3", 5, {}]', "RpcFrameworkError", "m3"),
    ("payload-not-object", V16, '[2, "m4", "Heartbeat", []]', "FormationViolation", "m4"),
    ("payload-not-object", V201, '[2, "m4", "Heartbeat", null]', "FormatViolation", "m4"),
    # message types
    ("unknown-type", V201, '[9, "m5", "Heartbeat", {}]', "MessageTypeNotSupported", "m5"),
    (
        "send-before-2.1",
        V201,
        '[6, "m6", "NotifyPeriodicEventStream", {}]',
        "MessageTypeNotSupported",
        "m6",
    ),
    ("unknown-type", V16, '[7, "m5", "Heartbeat", {}]', "FormationViolation", "m5"),
    # actions
    ("unknown-action", V16, '[2, "m7", "Teleport", {}]', "NotImplemented", "m7"),
    ("unknown-action", V201, '[2, "m7", "Teleport", {}]', "NotImplemented", "m7"),
    ("wrong-version-action", V201, '[2, "m8", "StartTransaction", {}]', "NotImplemented", "m8"),
    # schema violations
    ("missing-field", V16, '[2, "s1", "Authorize", {}]', "OccurenceConstraintViolation", "s1"),
    ("missing-field", V201, '[2, "s1", "Authorize", {}]', "OccurrenceConstraintViolation", "s1"),
    ("wrong-type", V16, '[2, "s2", "Authorize", {"idTag": 42}]', "TypeConstraintViolation", "s2"),
    (
        "wrong-type",
        V201,
        '[2, "s2", "Heartbeat", {"customData": 1}]',
        "TypeConstraintViolation",
        "s2",
    ),
    (
        "too-long",
        V16,
        '[2, "s3", "Authorize", {"idTag": "' + "A" * 21 + '"}]',
        "TypeConstraintViolation",
        "s3",
    ),
    (
        "bad-datetime",
        V16,
        '[2, "s4", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "yesterday"}]',
        "TypeConstraintViolation",
        "s4",
    ),
    (
        "unknown-field",
        V16,
        '[2, "s5", "BootNotification", {"chargePointVendor": "P", "chargePointModel": "M", "x": 1}]',
        "FormationViolation",
        "s5",
    ),
    (
        "enum-value",
        V201,
        '[2, "s6", "BootNotification", {"reason": "Boredom", "chargingStation": {"vendorName": "P", "model": "M"}}]',
        "PropertyConstraintViolation",
        "s6",
    ),
    (
        "not-multiple-of-0.1",
        V16,
        '[2, "s7", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 4.11}]}}}]',
        "PropertyConstraintViolation",
        "s7",
    ),
    ("unknown-field", V201, '[2, "s8", "Heartbeat", {"x": 1}]', "FormatViolation", "s8"),
    (
        "empty-array",
        V201,
        '[2, "s9", "MeterValues", {"evseId": 1, "meterValue": []}]',
        "OccurrenceConstraintViolation",
        "s9",
    ),
]


@pytest.mark.parametrize(
    ("version", "text", "code", "message_id"),
    [c[1:] for c in CASES],
    ids=[f"{c[1].value}-{c[0]}" for c in CASES],
)
def test_bad_frame_gets_the_specs_callerror(
    version: OcppVersion, text: str, code: str, message_id: str
) -> None:
    reply = answer(version, text)
    assert reply[2] == code, reply
    assert reply[1] == message_id


def test_known_but_unsupported_action_is_NotSupported() -> None:
    # TC_K_15_CSMS: a station without smart charging answers SetChargingProfile with NotSupported.
    frame = '[2, "k15", "ClearCache", {}]'
    assert answer(V16, frame, supported={"Reset"})[2] == "NotSupported"
    assert answer(V201, frame, supported={"Reset"})[2] == "NotSupported"


def test_error_description_names_the_field_at_fault() -> None:
    reply = answer(V16, '[2, "d1", "Authorize", {"idTag": "' + "A" * 21 + '"}]')
    assert "idTag" in str(reply[3])
    assert reply[4] == {"rule": "maxLength", "path": "idTag"}


def test_each_version_spells_its_own_codes() -> None:
    assert ErrorCode.OccurrenceConstraintViolation.spelled(V16) == "OccurenceConstraintViolation"
    assert ErrorCode.FormatViolation.spelled(V16) == "FormationViolation"
    assert ErrorCode.RpcFrameworkError.spelled(V16) == "FormationViolation"
    assert ErrorCode.OccurrenceConstraintViolation.spelled(V201) == "OccurrenceConstraintViolation"
    assert (
        ErrorCode.from_wire("OccurenceConstraintViolation")
        is ErrorCode.OccurrenceConstraintViolation
    )
    assert ErrorCode.from_wire("FormationViolation") is ErrorCode.FormatViolation
    assert ErrorCode.from_wire("SomethingNew") is ErrorCode.GenericError
