"""Our compilation of the OCPP schemas: enums checked by set membership behave exactly as
fastjsonschema's own, and a schema can never make the validator reach the network."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import pytest

from plugstream.ocpp import compiler

pytestmark = pytest.mark.unit

ENUM = {
    "$schema": "http://json-schema.org/draft-06/schema#",
    "type": "object",
    "properties": {
        "measurand": {
            "type": "string",
            "enum": ["Voltage", "SoC", "Energy.Active.Import.Register"],
        },
        "mixed": {"enum": ["a", 1, None]},
    },
}


def test_the_fast_generators_are_in_use() -> None:
    # A fastjsonschema upgrade that changed its generators would silently fall back.
    assert compiler._GENERATORS is not None


@pytest.mark.parametrize(
    "payload",
    [
        {"measurand": "SoC"},
        {"measurand": "Soc"},
        {"measurand": 5},
        {"measurand": ["SoC"]},
        {"mixed": 1},
        {"mixed": "a"},
        {"mixed": None},
        {"mixed": True},
        {"mixed": "b"},
    ],
)
def test_enum_results_match_fastjsonschema(payload: dict[str, Any]) -> None:
    ours = compiler.compile_schema(ENUM)
    theirs = fastjsonschema.compile(ENUM)

    def outcome(validate: compiler.Validator) -> tuple[str, str, str] | None:
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            return (str(exc.rule), str(exc.path), str(exc.message))
        return None

    assert outcome(ours) == outcome(theirs)


@pytest.mark.parametrize("scheme", ["http", "https", "file"])
def test_a_remote_ref_is_refused_not_fetched(scheme: str) -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-06/schema#",
        "$ref": f"{scheme}://127.0.0.1:9/elsewhere.json",
    }
    with pytest.raises(fastjsonschema.JsonSchemaDefinitionException, match="remote \\$ref refused"):
        compiler.compile_schema(schema)


def test_validation_leaves_the_payload_as_it_was() -> None:
    """A 2.0.1 unitOfMeasure has defaults (multiplier 0, unit Wh); validating must not add them."""
    from plugstream.ocpp import OcppVersion, schemas

    payload = {
        "evseId": 1,
        "meterValue": [
            {
                "timestamp": "2026-11-25T10:00:00Z",
                "sampledValue": [
                    {
                        "value": 7360.0,
                        "measurand": "Power.Active.Import",
                        "unitOfMeasure": {"unit": "W"},
                    }
                ],
            }
        ],
    }
    before = repr(payload)
    assert schemas(OcppVersion.V201).validate("MeterValues", "request", payload) is None
    assert repr(payload) == before
