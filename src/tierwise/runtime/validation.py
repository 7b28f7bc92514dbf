"""Checking a model's structured output, and the repair prompt that quotes what was wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError
from referencing import Registry  # jsonschema's own dependency since 4.18
from referencing.exceptions import NoSuchResource, Unresolvable

from tierwise.core import Message
from tierwise.errors import InputError

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)

# Far deeper than any real schema, far below Python's recursion limit: jsonschema walks a schema
# recursively, so a hostile one 5,000 levels deep would end in a RecursionError, not a clear line.
MAX_SCHEMA_DEPTH = 64
_PROBES: tuple[Any, ...] = ({}, [], "", 0, None)


class OutputInvalid(Exception):
    """Validation failed; ``detail`` is what the repair prompt quotes."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _load_json(text: str) -> Any:
    m = _FENCE.match(text)
    body = m.group(1) if m else text.strip()
    if not body:
        raise OutputInvalid("the output was empty; expected a JSON value")
    try:
        # strict=False: grammar-constrained local models may emit raw control characters inside strings.
        return json.loads(body, strict=False)
    except RecursionError:
        raise OutputInvalid("the output nests too deeply; expected flatter JSON") from None
    except json.JSONDecodeError as exc:
        raise OutputInvalid(
            f"the output is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def _refuse(uri: str) -> Any:
    raise NoSuchResource(ref=uri)


# jsonschema would fetch a remote $ref over the network (deprecated, but still its default): a schema is
# data from the user, and checking it must never open a connection or wait on one.
_OFFLINE = Registry(retrieve=_refuse)  # type: ignore[call-arg]


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema, registry=_OFFLINE)


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in ``value``; iterative, so any depth is measured safely."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_SCHEMA_DEPTH:
                break
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def check_schema(schema: Any, *, where: str = "the JSON schema") -> dict[str, Any]:
    """A user's JSON Schema, checked before any call: an object, nested at most MAX_SCHEMA_DEPTH levels,
    valid under Draft 2020-12 and not a ``$ref`` loop. Anything else is one InputError line."""
    if not isinstance(schema, dict):
        raise InputError(f"{where} must be a JSON object (a JSON Schema), got {type(schema).__name__}")
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        raise InputError(f"{where} nests deeper than {MAX_SCHEMA_DEPTH} levels: flatten it or use $defs")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
        # A schema that refers to itself with nothing in between ({"$ref": "#"}) loops on any value:
        # find it now, not after a paid call.
        validator = _validator(schema)
        for probe in _PROBES:
            any(validator.iter_errors(probe))
    except jsonschema.SchemaError as exc:
        raise InputError(f"{where} is not a valid JSON Schema: {exc.message}") from None
    except RecursionError:
        raise InputError(f"{where} refers to itself without end ($ref loop): break the cycle") from None
    except Unresolvable as exc:
        raise InputError(f"{where} has a $ref that cannot be resolved ({exc}): use #/$defs/...") from None
    return schema


def load_schema(path: Path) -> dict[str, Any]:
    """Read and check a JSON Schema file (``tierwise ask --schema``)."""
    where = f"schema file {str(path)!r}"
    if not path.is_file():
        raise InputError(f"{where} not found: pass a JSON Schema file")
    try:
        schema = json.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(
            f"{where} nests deeper than {MAX_SCHEMA_DEPTH} levels: flatten it or use $defs"
        ) from None
    return check_schema(schema, where=where)


def validate(text: str, *, model: type[BaseModel] | None = None, schema: dict[str, Any] | None = None) -> Any:
    """The parsed output (a pydantic instance or plain JSON), or OutputInvalid."""
    if model is not None:
        data = _load_json(text)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            lines = [
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:8]
            ]
            raise OutputInvalid("; ".join(lines)) from None
    if schema is not None:
        data = _load_json(text)
        try:
            errors = sorted(_validator(schema).iter_errors(data), key=lambda e: list(e.path))
        except Unresolvable as exc:  # the schema's fault: no repair of the output can help
            raise InputError(f"the JSON schema has a $ref that cannot be resolved ({exc})") from None
        except RecursionError:
            check_schema(schema)  # a $ref loop is the schema's fault; else the output nests too deeply
            raise OutputInvalid("the output nests too deeply to validate; reply with flatter JSON") from None
        if errors:
            lines = [f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors[:8]]
            raise OutputInvalid("; ".join(lines))
        return data
    return text


def repair_messages(previous: tuple[Message, ...], bad_output: str, detail: str) -> tuple[Message, ...]:
    """The conversation plus the bad answer and a request to fix exactly the quoted errors."""
    quoted = bad_output if len(bad_output) <= 2000 else bad_output[:2000] + " …"
    return (
        *previous,
        Message("assistant", quoted),
        Message(
            "user",
            f"That output failed validation: {detail}. Reply again with only the corrected JSON, "
            "matching the schema exactly.",
        ),
    )
