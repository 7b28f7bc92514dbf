"""Request pieces both APIs share, turned into Task fields: tools with tool_choice, and output formats."""

from __future__ import annotations

from typing import Any

from tierwise.core import ToolSpec
from tierwise.errors import InputError
from tierwise.runtime.validation import check_schema
from tierwise.server.errors import ApiError

_EMPTY_PARAMS: dict[str, Any] = {"type": "object", "properties": {}}


def tool_spec(name: str, description: str | None, parameters: dict[str, Any] | None) -> ToolSpec:
    return ToolSpec(name, description or "", parameters if parameters is not None else _EMPTY_PARAMS)


def with_choice(tools: tuple[ToolSpec, ...], choice: str | dict[str, Any] | None) -> tuple[ToolSpec, ...]:
    """The tools to offer under ``tool_choice``: ``auto`` (default) offers them, ``none`` offers none.

    Forcing a call (``required``, a named function) cannot be passed on to every provider the router
    may pick, so it is refused rather than silently ignored.
    """
    if choice is None or choice == "auto":
        return tools
    if choice == "none":
        return ()
    shown = choice if isinstance(choice, str) else (choice.get("type") or "object")
    raise ApiError(
        400,
        f"tool_choice {str(shown)[:40]!r} is not supported: use 'auto' or 'none' (tierwise cannot "
        "force a tool call on every model it routes to)",
        code="unsupported_value",
        param="tool_choice",
    )


def output_schema(fmt: dict[str, Any] | None, *, param: str, nested: bool) -> dict[str, Any] | None:
    """The JSON schema the answer must satisfy, from ``response_format`` (chat: the schema under
    ``json_schema``) or ``text.format`` (responses: the schema at top level, ``nested=False``)."""
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise ApiError(
            400,
            f"{param}.type {str(kind)[:40]!r} is not supported: use text, json_object or json_schema",
            code="invalid_value",
            param=f"{param}.type",
        )
    holder = fmt.get("json_schema") if nested else fmt
    where = f"{param}.json_schema" if nested else param
    if not isinstance(holder, dict) or "schema" not in holder:
        raise ApiError(
            400,
            f"{where}.schema is missing: a json_schema format needs the JSON Schema the answer must match",
            code="invalid_value",
            param=f"{where}.schema",
        )
    try:
        return check_schema(holder["schema"], where=f"{where}.schema")
    except InputError as exc:
        raise ApiError(400, str(exc), code="invalid_value", param=f"{where}.schema") from None
