"""Payload validation against the OCA's official JSON schemas.

The schemas are the files shipped by the ``ocpp`` package (the OCA's own
releases for 1.6 with its security extension, 2.0.1 and 2.1). Each one is
compiled to Python code by fastjsonschema the first time it is needed and
kept: validation is a plain function call on the hot path.
"""

from __future__ import annotations

import functools
import importlib.resources
import threading
from collections.abc import Callable
from typing import Any, Final

import fastjsonschema
import orjson

from plugstream.ocpp.compiler import compile_schema
from plugstream.ocpp.errors import ErrorCode, OcppError
from plugstream.ocpp.version import OcppVersion

Validator = Callable[[Any], Any]

_FOLDER: Final = {OcppVersion.V16: "v16", OcppVersion.V201: "v201", OcppVersion.V21: "v21"}

# Which spec error a failed JSON-schema keyword is (OCPP-J 1.6 §4.2.3 table 7,
# 2.0.1 part 4 §4.3). A CiString[n], a dateTime or a URI is a *data type* in
# OCPP, so length and format failures are type-constraint violations; values
# outside an enumeration or a range are property-constraint violations; a
# missing or surplus occurrence is an occurrence-constraint violation; a
# property the PDU does not have breaks the PDU's structure (format).
_RULE_TO_CODE: Final = {
    "type": ErrorCode.TypeConstraintViolation,
    "maxLength": ErrorCode.TypeConstraintViolation,
    "minLength": ErrorCode.TypeConstraintViolation,
    "format": ErrorCode.TypeConstraintViolation,
    "enum": ErrorCode.PropertyConstraintViolation,
    "const": ErrorCode.PropertyConstraintViolation,
    "minimum": ErrorCode.PropertyConstraintViolation,
    "maximum": ErrorCode.PropertyConstraintViolation,
    "exclusiveMinimum": ErrorCode.PropertyConstraintViolation,
    "exclusiveMaximum": ErrorCode.PropertyConstraintViolation,
    "multipleOf": ErrorCode.PropertyConstraintViolation,
    "pattern": ErrorCode.PropertyConstraintViolation,
    "required": ErrorCode.OccurrenceConstraintViolation,
    "minItems": ErrorCode.OccurrenceConstraintViolation,
    "maxItems": ErrorCode.OccurrenceConstraintViolation,
    "uniqueItems": ErrorCode.OccurrenceConstraintViolation,
    "minProperties": ErrorCode.OccurrenceConstraintViolation,
    "additionalProperties": ErrorCode.FormatViolation,
}


def violation(exc: fastjsonschema.JsonSchemaValueException, action: str, what: str) -> OcppError:
    """Turn a schema failure into the spec's error, naming the field at fault."""
    code = _RULE_TO_CODE.get(exc.rule or "", ErrorCode.FormatViolation)
    path = ".".join(str(p) for p in (exc.path or ["data"])[1:])
    message = (exc.message or "").replace("data.", "").replace("data ", "payload ", 1)
    details: dict[str, Any] = {"rule": exc.rule}
    if path:
        details["path"] = path
    return OcppError(code, f"{action} {what}: {message}", details)


class Schemas:
    """The compiled validators of one OCPP version, built on first use."""

    def __init__(self, version: OcppVersion) -> None:
        self.version = version
        self._root = importlib.resources.files("ocpp") / _FOLDER[version] / "schemas"
        names = {
            p.name.removesuffix(".json") for p in self._root.iterdir() if p.name.endswith(".json")
        }
        if version is OcppVersion.V16:
            calls = {n for n in names if not n.endswith("Response")}
            sends: set[str] = set()
        else:
            calls = {n.removesuffix("Request") for n in names if n.endswith("Request")}
            sends = {n for n in names if not n.endswith(("Request", "Response"))}
        self.call_actions: frozenset[str] = frozenset(calls)
        self.send_actions: frozenset[str] = frozenset(sends)
        self._lock = threading.Lock()
        self._cache: dict[str, Validator] = {}
        self._by_kind: dict[tuple[str, str], Validator] = {}  # the hot path's lookup

    def _file(self, action: str, kind: str) -> str:
        if kind == "response":
            return action + "Response"
        if kind == "send" or self.version is OcppVersion.V16:
            return action
        return action + "Request"

    def schema(self, action: str, kind: str) -> dict[str, Any]:
        """The official JSON schema of ``action``'s ``request``, ``response`` or ``send``
        payload, as the file has it: what a client needs to build a valid payload (the
        validators are compiled from the same file)."""
        raw = (self._root / f"{self._file(action, kind)}.json").read_bytes()
        found: dict[str, Any] = orjson.loads(raw.removeprefix(b"\xef\xbb\xbf"))
        return found

    def validator(self, action: str, kind: str) -> Validator:
        """The validator of ``action``'s ``request``, ``response`` or ``send`` payload."""
        hit = self._by_kind.get((action, kind))
        if hit is not None:
            return hit
        name = self._file(action, kind)
        found = self._cache.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._cache.get(name)
            if found is None:
                raw = (self._root / f"{name}.json").read_bytes().removeprefix(b"\xef\xbb\xbf")
                schema = orjson.loads(raw)
                found = compile_schema(schema)
                self._cache[name] = found
        self._by_kind[(action, kind)] = found
        return found

    def validate(self, action: str, kind: str, payload: Any) -> OcppError | None:
        """Return the spec's error for an invalid payload, or None when it is valid."""
        try:
            self.validator(action, kind)(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            what = {"request": "request", "response": "response", "send": "message"}[kind]
            return violation(exc, action, what)
        return None

    def compile_all(self) -> int:
        """Compile every schema now (for servers that prefer a slow start to a slow first call)."""
        count = 0
        for action in self.call_actions:
            self.validator(action, "request")
            self.validator(action, "response")
            count += 2
        for action in self.send_actions:
            self.validator(action, "send")
            count += 1
        return count


@functools.cache
def schemas(version: OcppVersion) -> Schemas:
    """The process-wide validators of ``version``."""
    return Schemas(version)
