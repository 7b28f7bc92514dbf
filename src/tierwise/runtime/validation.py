"""Checking a model's structured output, and the repair prompt that quotes what was wrong."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError

from tierwise.core import Message

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


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
    except json.JSONDecodeError as exc:
        raise OutputInvalid(
            f"the output is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


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
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
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
