"""Request bodies: read with a size limit, parse JSON, validate into a pydantic model, one-line errors.

The body is read chunk by chunk and refused as soon as it passes the limit: a client that lies in (or
leaves out) Content-Length cannot make the server buffer more than the limit.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from tierwise.server.errors import ApiError
from tierwise.server.jsonio import loads

M = TypeVar("M", bound=BaseModel)

_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict"})

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON value; 413 past ``limit`` bytes, 400 when it is not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "the request body is empty: send a JSON object", code="invalid_json")
    try:
        return loads(raw)
    except ValueError as exc:
        raise ApiError(
            400,
            f"the request body is not valid JSON ({_short(str(exc))}): send a JSON object",
            code="invalid_json",
        ) from None


def parse(model: type[M], data: Any) -> M:
    """``data`` as ``model``; a validation error becomes one line naming the field and what was expected."""
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_kind(data)}", code="invalid_type")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> ApiError:
    errors = exc.errors(include_url=False, include_context=False)
    path = _path(errors[0]["loc"])
    # A union reports one error per member ("input.str", "input.list[str]"): one line says them all.
    same = [e for e in errors if _path(e["loc"]) == path]
    what = " or ".join(dict.fromkeys(_short(e["msg"]).removeprefix("Input should be ") for e in same))
    if len(same) > 1:
        what = "should be " + what
    more = len(errors) - len(same)
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    shown = "" if errors[0]["type"] == "missing" else f", got {_kind(errors[0].get('input'))}"
    return ApiError(400, f"invalid '{path}': {what}{shown}{tail}", code="invalid_value", param=path)


def _path(loc: tuple[int | str, ...]) -> str:
    # Union members and validators appear in the location as type names: a client knows only fields.
    parts = [str(p) for p in loc if isinstance(p, int) or (_FIELD.match(p) and p not in _TYPE_NAMES)]
    return ".".join(parts) or "body"


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than {limit:,} bytes: send less (or raise the server's "
        "--max-body-bytes)",
        code="request_too_large",
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
