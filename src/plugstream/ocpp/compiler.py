"""The OCPP schemas compiled by fastjsonschema, with two changes of ours.

- A string ``enum`` (measurands, units, statuses: most of an OCPP payload) is
  checked by one set membership instead of fastjsonschema's chain of
  ``isinstance(x, str) and x == "…" or …``: a 1.6 MeterValues validates in about
  half the time. The failure is the same exception, rule ``enum``, same message.
- ``$ref`` resolves only inside the schema: a reference that names a remote
  document is refused rather than fetched (fastjsonschema would fetch it).
- Validation never writes the schemas' ``default`` values into the payload
  (fastjsonschema's default does): what is validated is what goes on the wire,
  and a station's compact frames stay compact.

The first uses fastjsonschema's code generators, which are not its public API;
if they ever change shape, :func:`compile_schema` falls back to the public
``fastjsonschema.compile`` with the same refusal of remote references.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import fastjsonschema

log = logging.getLogger("plugstream.ocpp")

Validator = Callable[[Any], Any]


def _refuse(uri: str) -> Any:
    raise fastjsonschema.JsonSchemaDefinitionException(
        f"remote $ref refused: {uri} (OCPP schemas are self-contained)"
    )


NO_REMOTE_REFS = {scheme: _refuse for scheme in ("http", "https", "file", "ftp", "urn")}


def _fast_generators() -> dict[str, type[Any]]:
    from fastjsonschema.draft04 import CodeGeneratorDraft04
    from fastjsonschema.draft06 import CodeGeneratorDraft06
    from fastjsonschema.draft07 import CodeGeneratorDraft07

    class SetEnum:
        _definition: dict[str, Any]
        l: Callable[..., Any]  # noqa: E741 (fastjsonschema's name)
        exc: Callable[..., Any]
        e: Callable[..., Any]

        def generate_enum(self) -> None:
            enum = self._definition["enum"]
            if isinstance(enum, list) and enum and all(type(v) is str for v in enum):
                # A constant set literal: Python folds it into a frozenset once.
                literal = "{" + ", ".join(repr(v) for v in sorted(enum)) + "}"
                with self.l("if not (isinstance({variable}, str) and {variable} in {}):", literal):
                    self.exc("{name} must be one of {}", self.e(enum), rule="enum")
                return
            super().generate_enum()  # type: ignore[misc]

    class Draft04(SetEnum, CodeGeneratorDraft04):  # type: ignore[misc]
        pass

    class Draft06(SetEnum, CodeGeneratorDraft06):  # type: ignore[misc]
        pass

    class Draft07(SetEnum, CodeGeneratorDraft07):  # type: ignore[misc]
        pass

    return {"draft-04": Draft04, "draft-06": Draft06, "draft-07": Draft07}


try:
    _GENERATORS: dict[str, type[Any]] | None = _fast_generators()
except (ImportError, AttributeError):  # pragma: no cover - a fastjsonschema of another shape
    _GENERATORS = None


def compile_schema(schema: dict[str, Any]) -> Validator:
    """A validator function for ``schema`` that raises JsonSchemaValueException."""
    draft = next(
        (k for k in ("draft-04", "draft-06", "draft-07") if k in schema.get("$schema", "")), None
    )
    if _GENERATORS is not None and draft is not None:
        try:
            from fastjsonschema.ref_resolver import RefResolver

            resolver = RefResolver.from_schema(schema, handlers=NO_REMOTE_REFS, store={})
            generator = _GENERATORS[draft](
                schema,
                resolver=resolver,
                formats={},
                use_default=False,
                use_formats=True,
                detailed_exceptions=True,
                fast_fail=True,
            )
            state = generator.global_state
            exec(generator.func_code, state)
            validator: Validator = state[resolver.get_scope_name()]
            return validator
        except TypeError:  # pragma: no cover - generator signature changed
            log.warning("fastjsonschema's generators changed; using its public compile")
    compiled: Validator = fastjsonschema.compile(
        schema, handlers=NO_REMOTE_REFS, use_default=False, detailed_exceptions=True
    )
    return compiled
