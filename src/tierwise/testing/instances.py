"""Minimal, deterministic JSON instances of a JSON Schema: the chaos server's default structured reply.

Covers what structured-output schemas use in practice (pydantic's output, OpenAI strict mode, llama.cpp
grammars): object with required properties, scalar types with bounds, enum/const, arrays with minItems,
local `$ref`/`$defs`, anyOf/oneOf (first branch) and allOf (merged). `pattern` is not honoured: no regex
is inverted here, so a schema that relies on one gets a string that may not match it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tierwise.testing.script import JSONValue

__all__ = ["minimal_instance"]

Schema = Mapping[str, Any]  # a JSON Schema node: values are arbitrary JSON

_MAX_DEPTH = 48  # a recursive schema with a required self-reference has no finite instance; stop there

_FORMATS: dict[str, str] = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
    "duration": "PT0S",
}


def minimal_instance(schema: Schema | bool) -> JSONValue:
    """Return the smallest value this generator knows that is valid for `schema`."""
    root = schema if isinstance(schema, Mapping) else {}
    return _gen(schema, root, 0, 0)


def _resolve(ref: str, root: Schema) -> Schema | bool:
    if not ref.startswith("#"):
        raise ValueError(f"$ref {ref!r} is not local to the schema; inline it or put it under $defs")
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        key = part.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(key)] if isinstance(node, list) else node[key]
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"$ref {ref!r} points at nothing in the schema") from exc
    return node  # type: ignore[no-any-return]


def _merge_all_of(schema: Schema, root: Schema) -> dict[str, Any]:
    # Good enough for pydantic's `allOf: [{$ref}]` wrappers and simple conjunctions of object parts.
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if isinstance(part, Mapping) and "$ref" in part:
            part = _resolve(part["$ref"], root)
        if not isinstance(part, Mapping):
            continue
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _gen(schema: Schema | bool, root: Schema, depth: int, variant: int) -> JSONValue:
    """`variant` > 0 asks for a different value of the same shape (for uniqueItems arrays)."""
    if isinstance(schema, bool) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return _gen(_resolve(schema["$ref"], root), root, depth + 1, variant)
    if "const" in schema:
        return schema["const"]  # type: ignore[no-any-return]
    if schema.get("enum"):
        enum = schema["enum"]
        return enum[variant % len(enum)]  # type: ignore[no-any-return]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            # Siblings of anyOf (pydantic's `default`, `title`) do not constrain the value.
            return _gen(schema[key][0], root, depth + 1, variant)
    if schema.get("allOf"):
        return _gen(_merge_all_of(schema, root), root, depth + 1, variant)

    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [t for t in kind if t != "null"]
        kind = non_null[0] if non_null else "null"
    if kind is None:
        if "properties" in schema or "required" in schema:
            kind = "object"
        elif "items" in schema or "prefixItems" in schema:
            kind = "array"
        elif any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            kind = "number"
        elif any(k in schema for k in ("minLength", "maxLength", "format", "pattern")):
            kind = "string"
        else:
            return None

    if kind == "object":
        props: Mapping[str, Any] = schema.get("properties", {})
        return {
            name: _gen(props.get(name, {}), root, depth + 1, variant if i == 0 else 0)
            for i, name in enumerate(schema.get("required", []))
        }
    if kind == "array":
        return _array(schema, root, depth)
    if kind == "string":
        return _string(schema, variant)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer", variant)
    if kind == "boolean":
        return variant % 2 == 1
    return None


def _array(schema: Schema, root: Schema, depth: int) -> list[JSONValue]:
    count = int(schema.get("minItems", 0))
    prefix: list[Any] = list(schema.get("prefixItems", []))
    items: Schema | bool = schema.get("items", {})
    unique = bool(schema.get("uniqueItems"))
    out: list[JSONValue] = []
    for i in range(count):
        sub = prefix[i] if i < len(prefix) else items
        out.append(_gen(sub, root, depth + 1, i if unique else 0))
    return out


def _string(schema: Schema, variant: int) -> str:
    value = _FORMATS.get(schema.get("format", ""), "")
    if variant:
        value += str(variant)
    min_len = int(schema.get("minLength", 0))
    if len(value) < min_len:
        value += "x" * (min_len - len(value))
    max_len = schema.get("maxLength")
    return value[: int(max_len)] if max_len is not None else value


def _number(schema: Schema, integer: bool, variant: int) -> int | float:
    lo: float | None = schema.get("minimum")
    hi: float | None = schema.get("maximum")
    ex_lo = schema.get("exclusiveMinimum")
    ex_hi = schema.get("exclusiveMaximum")
    # Draft 4 spells exclusivity as booleans next to minimum/maximum.
    if ex_lo is True:
        ex_lo, lo = lo, None
    if ex_hi is True:
        ex_hi, hi = hi, None
    step = 1.0 if integer else 0.5
    if isinstance(ex_lo, int | float) and not isinstance(ex_lo, bool):
        lo = max(lo, ex_lo + step) if lo is not None else ex_lo + step
    if isinstance(ex_hi, int | float) and not isinstance(ex_hi, bool):
        hi = min(hi, ex_hi - step) if hi is not None else ex_hi - step
    if lo is not None:
        value = lo + variant
    elif hi is not None and hi < 0:
        value = hi - variant
    else:
        value = float(variant)
    if hi is not None and value > hi:
        value = hi
    multiple = schema.get("multipleOf")
    if multiple:
        value = math.ceil(value / multiple) * multiple
    if integer:
        return math.ceil(value)
    return int(value) if float(value).is_integer() else value
