"""Generate typed OCPP payloads from the OCA's JSON schemas shipped with the ``ocpp`` package.

Writes ``src/plugstream/ocpp/{v16,v201,v21}.py``: per version an ``Action`` StrEnum, one
TypedDict per request and response payload and one per nested object type, and ``Literal``
aliases for the enumerations.

    python tools/gen_types.py           # (re)write the modules
    python tools/gen_types.py --check   # exit 1 if they are not what this script produces

Naming: a schema ``definitions`` entry keeps its name (``ChargingStationType``,
``BootReasonEnumType``). The 1.6 core schemas have no definitions, only inline objects and
enums; an inline object is named after its property (``idTagInfo`` -> ``IdTagInfo``, the
items of ``meterValue`` -> ``MeterValue``), prefixed with its owner's name when that name is
already taken by a different shape (``TransactionDataSampledValue``); identical inline objects
share one type. An inline enum is named ``<Owner><Property>`` (``BootNotificationResponseStatus``,
``SampledValueMeasurand``); identical enums under the same property of nested objects share one
alias.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
import keyword
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "plugstream" / "ocpp"
VERSIONS = {"v16": "1.6", "v201": "2.0.1", "v21": "2.1"}
SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
# Names the generated modules use themselves.
RESERVED = frozenset({"Action", "Any", "Literal", "NotRequired", "TypeAlias", "TypedDict", "enum"})
# Keywords that carry no typing information.
NOISE = frozenset({"description", "javaType", "comment", "$comment", "$schema", "$id", "title"})
REF_PREFIX = "#/definitions/"


class SchemaError(Exception):
    """A schema this generator cannot turn into types."""


@dataclass(frozen=True)
class Field:
    key: str
    type: str
    required: bool


@dataclass(frozen=True)
class Struct:
    name: str
    fields: tuple[Field, ...]
    deps: frozenset[str]
    doc: str = ""


@dataclass(frozen=True)
class Alias:
    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Payload:
    action: str
    type_name: str
    file: str
    kind: str  # "request", "response" or "send"


def pascal(prop: str) -> str:
    return prop[:1].upper() + prop[1:]


def strip(node: Any) -> Any:
    """``node`` without the keywords that do not change its type."""
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k not in NOISE}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def load_schemas(folder: str) -> dict[str, dict[str, Any]]:
    root = importlib.resources.files("ocpp") / folder / "schemas"
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            # Some OCA releases start their files with a UTF-8 byte order mark.
            schema = json.loads(entry.read_bytes().decode("utf-8-sig"))
            found[entry.name.removesuffix(".json")] = schema
    return found


def payloads(folder: str, stems: Iterable[str]) -> list[Payload]:
    """Which payload each schema file describes, in (action, request-before-response) order."""
    found: list[Payload] = []
    for stem in stems:
        if stem.endswith("Response"):
            action, kind = stem.removesuffix("Response"), "response"
        elif folder == "v16":
            action, kind = stem, "request"
        elif stem.endswith("Request"):
            action, kind = stem.removesuffix("Request"), "request"
        else:  # a SEND message (2.1): there is no response
            action, kind = stem, "send"
        suffix = "Response" if kind == "response" else "Request"
        found.append(Payload(action, action + suffix, stem, kind))
    order = {"request": 0, "send": 0, "response": 1}
    return sorted(found, key=lambda p: (p.action, order[p.kind]))


class Generator:
    """Builds the types of one OCPP version."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.schemas = load_schemas(folder)
        self.payloads = payloads(folder, self.schemas)
        self.structs: dict[str, Struct] = {}
        self.aliases: dict[str, Alias] = {}
        self.taken: set[str] = set(RESERVED)
        self.inline_objects: dict[str, str] = {}
        self.inline_enums: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self.top_level = {p.type_name for p in self.payloads}
        self._reserve(self.top_level)
        self._reserve({d for s in self.schemas.values() for d in s.get("definitions", {})})
        self.uses_any = False

    def _reserve(self, names: Iterable[str]) -> None:
        for name in names:
            if not name.isidentifier() or keyword.iskeyword(name) or name in RESERVED:
                raise SchemaError(f"{self.folder}: {name!r} cannot be a Python type name")
            self.taken.add(name)

    def _fresh(self, *candidates: str) -> str:
        for name in candidates:
            if name not in self.taken:
                self.taken.add(name)
                return name
        n = 2
        while f"{candidates[-1]}{n}" in self.taken:
            n += 1
        self.taken.add(f"{candidates[-1]}{n}")
        return f"{candidates[-1]}{n}"

    def _add_struct(self, struct: Struct) -> None:
        known = self.structs.get(struct.name)
        if known is not None and known != struct:
            raise SchemaError(f"{self.folder}: two different definitions of {struct.name}")
        self.structs[struct.name] = struct

    def _add_alias(self, alias: Alias) -> None:
        known = self.aliases.get(alias.name)
        if known is not None and known != alias:
            raise SchemaError(f"{self.folder}: two different definitions of {alias.name}")
        self.aliases[alias.name] = alias

    def build(self) -> None:
        by_file = {p.file: p for p in self.payloads}
        for stem, schema in self.schemas.items():
            definitions: dict[str, Any] = schema.get("definitions", {})
            for name, node in definitions.items():
                if "enum" in node:
                    self._add_alias(Alias(name, self._enum_values(node, f"{stem}#{name}")))
                elif node.get("type") == "object":
                    self._add_struct(self._struct(node, name, definitions, nested=True))
                else:
                    raise SchemaError(f"{stem}: definition {name} is neither object nor enum")
            payload = by_file[stem]
            if payload.kind == "send":
                doc = f"Payload of the {payload.action} SEND message ({stem}.json), which has no"
                doc += " response."
            else:
                doc = f"Payload of the {payload.action} {payload.kind} ({stem}.json)."
            self._add_struct(self._struct(schema, payload.type_name, definitions, False, doc))

    @staticmethod
    def _enum_values(node: dict[str, Any], where: str) -> tuple[str, ...]:
        values = node["enum"]
        if node.get("type") != "string" or not all(isinstance(v, str) for v in values):
            raise SchemaError(f"{where}: only string enumerations are supported")
        return tuple(values)

    def _struct(
        self,
        node: dict[str, Any],
        name: str,
        definitions: dict[str, Any],
        nested: bool,
        doc: str = "",
    ) -> Struct:
        if node.get("type") != "object":
            raise SchemaError(f"{self.folder}: {name} is not an object")
        properties: dict[str, Any] = node.get("properties", {})
        required = node.get("required", [])
        missing = set(required) - set(properties)
        if missing:
            raise SchemaError(f"{self.folder}: {name} requires undeclared {sorted(missing)}")
        fields: list[Field] = []
        deps: set[str] = set()
        for key, sub in properties.items():
            expr, sub_deps = self._type(sub, definitions, name, key, nested)
            fields.append(Field(key, expr, key in required))
            deps |= sub_deps
        return Struct(name, tuple(fields), frozenset(deps), doc)

    def _type(
        self, node: dict[str, Any], definitions: dict[str, Any], owner: str, prop: str, nested: bool
    ) -> tuple[str, frozenset[str]]:
        """The annotation of property ``prop`` of ``owner`` and the TypedDicts it uses."""
        if "$ref" in node:
            ref: str = node["$ref"]
            name = ref.removeprefix(REF_PREFIX)
            if not ref.startswith(REF_PREFIX) or name not in definitions:
                raise SchemaError(f"{self.folder}: {owner}.{prop}: unresolvable $ref {ref}")
            is_struct = "enum" not in definitions[name]
            return name, frozenset({name} if is_struct else ())
        if "enum" in node:
            values = self._enum_values(node, f"{owner}.{prop}")
            key = (prop, "" if nested else owner, values)
            alias = self.inline_enums.get(key)
            if alias is None:
                alias = self.inline_enums[key] = self._fresh(owner + pascal(prop))
                self._add_alias(Alias(alias, values))
            return alias, frozenset()
        kind = node.get("type")
        if kind == "object":
            shape = json.dumps(strip(node), sort_keys=True)
            struct = self.inline_objects.get(shape)
            if struct is None:
                struct = self.inline_objects[shape] = self._fresh(
                    pascal(prop), owner + pascal(prop)
                )
                self._add_struct(self._struct(node, struct, definitions, nested=True))
            return struct, frozenset({struct})
        if kind == "array":
            inner, deps = self._type(node["items"], definitions, owner, prop, nested)
            return f"list[{inner}]", deps
        if isinstance(kind, str) and kind in SCALARS:
            return SCALARS[kind], frozenset()
        if kind is None and not {"properties", "items"} & node.keys():
            self.uses_any = True  # e.g. DataTransfer's free-form ``data``
            return "Any", frozenset()
        raise SchemaError(f"{self.folder}: {owner}.{prop}: unsupported schema {node!r}")

    def _ordered_structs(self) -> Iterator[Struct]:
        """Nested types first (each after the types it uses), then the payloads by action."""
        done: set[str] = set()
        visiting: set[str] = set()

        def visit(name: str) -> Iterator[Struct]:
            if name in done:
                return
            if name in visiting:
                raise SchemaError(f"{self.folder}: recursive type {name}")
            visiting.add(name)
            for dep in sorted(self.structs[name].deps):
                yield from visit(dep)
            visiting.discard(name)
            done.add(name)
            yield self.structs[name]

        for name in sorted(set(self.structs) - self.top_level):
            yield from visit(name)
        for payload in self.payloads:
            yield from visit(payload.type_name)

    def render(self) -> str:
        version = VERSIONS[self.folder]
        ocpp_version = importlib.metadata.version("ocpp")
        typing_names = ["Literal", "NotRequired", "TypeAlias", "TypedDict"]
        if self.uses_any:
            typing_names.insert(0, "Any")
        lines = [
            f'"""Typed OCPP {version} payloads.',
            "",
            "Generated by tools/gen_types.py from the OCA JSON schemas shipped with the ocpp",
            f"package (ocpp=={ocpp_version}). Do not edit: change the generator and run it again.",
            '"""',
            "",
            "import enum",
            f"from typing import {', '.join(typing_names)}",
            "",
            "",
            "class Action(enum.StrEnum):",
            f'    """The OCPP {version} actions, named as on the wire."""',
            "",
        ]
        for action in sorted({p.action for p in self.payloads}):
            lines.append(f'    {action} = "{action}"')
        lines += ["", ""]
        for alias in sorted(self.aliases.values(), key=lambda a: a.name):
            values = ", ".join(json.dumps(v) for v in alias.values)
            lines.append(f"{alias.name}: TypeAlias = Literal[{values}]")
        for struct in self._ordered_structs():
            lines += ["", "", *render_struct(struct)]
        return "\n".join(lines) + "\n"


def render_struct(struct: Struct) -> list[str]:
    def annotation(field: Field) -> str:
        return field.type if field.required else f"NotRequired[{field.type}]"

    if all(f.key.isidentifier() and not keyword.iskeyword(f.key) for f in struct.fields):
        lines = [f"class {struct.name}(TypedDict):"]
        if struct.doc:
            lines += [*docstring(struct.doc), ""]
        lines += [f"    {f.key}: {annotation(f)}" for f in struct.fields]
        if not struct.fields and not struct.doc:
            lines.append("    pass")
        return lines
    # Keys that are not Python identifiers need the functional syntax.
    items = ", ".join(f"{json.dumps(f.key)}: {annotation(f)}" for f in struct.fields)
    lines = [f"# {struct.doc}"] if struct.doc else []
    return [*lines, f'{struct.name} = TypedDict("{struct.name}", {{{items}}})']


def docstring(text: str, indent: str = "    ", width: int = 100) -> list[str]:
    if len(f'{indent}"""{text}"""') <= width:
        return [f'{indent}"""{text}"""']
    wrapped = textwrap.wrap(text, width - len(indent) - 6, break_on_hyphens=False)
    return [f'{indent}"""{wrapped[0]}', *(indent + w for w in wrapped[1:]), f'{indent}"""']


def ruff_format(text: str, path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(path), "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise SchemaError(f"ruff format failed on {path.name}: {done.stderr}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report out-of-date modules")
    args = parser.parse_args(argv)
    stale = []
    for folder in VERSIONS:
        generator = Generator(folder)
        generator.build()
        path = OUT / f"{folder}.py"
        text = ruff_format(generator.render(), path)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "out of date" if args.check else "written"
        print(f"{path.relative_to(ROOT)}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
