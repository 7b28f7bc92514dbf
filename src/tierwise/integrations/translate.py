"""What both integrations share: a framework's model name → what the router may decide, OpenAI chat
messages and tool params → tierwise ``Message`` / ``ToolSpec``, and kind / stakes hints → a ``Task``.

Both frameworks can speak OpenAI chat format (the Agents SDK's own converter produces it, pydantic-ai's
parts map onto it one to one), so the translation into tierwise's vocabulary lives here once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tierwise.core import Message, Stakes, Task, TaskKind, Tier, ToolCall, ToolSpec, parse_kind
from tierwise.errors import InputError
from tierwise.models.catalog import Catalog

AUTO = "tierwise/auto"
_NAMES = f"{AUTO}, tierwise/large, tierwise/mini, tierwise/nano or a catalog id (see `tierwise models`)"


@dataclass(frozen=True, slots=True)
class Target:
    """What a framework's model name leaves to the router: nothing pinned (auto), a tier or a model."""

    name: str
    tier: Tier | None = None
    model: str | None = None


def parse_target(name: str | None, catalog: Catalog) -> Target:
    """``tierwise/auto`` (or no name): the router decides; ``tierwise/<tier>``: the user pins a tier; any
    other name must be a catalog id, pinned as a model. Unknown names fail here, before any call."""
    if name is None or name.strip() in ("", AUTO, "tierwise"):
        return Target(AUTO)
    name = name.strip()
    if name.startswith("tierwise/"):
        rest = name.removeprefix("tierwise/")
        if rest in {t.value for t in Tier}:
            return Target(name, tier=Tier(rest))
        raise InputError(f"unknown model {name!r}: use {_NAMES}")
    spec = catalog.find(name)
    if spec is None:
        raise InputError(f"unknown model {name!r}: use {_NAMES}")
    return Target(name, model=spec.id)


@dataclass(frozen=True, slots=True)
class Hints:
    """How a turn describes itself to the router: its kind (None: inferred from the text) and stakes."""

    kind: TaskKind | None = None
    stakes: Stakes = Stakes.NORMAL
    why: str = ""


def explicit_hints(*sources: Mapping[str, Any] | None) -> Hints | None:
    """``tierwise_kind`` / ``tierwise_stakes`` from the first settings mapping that sets a kind."""
    for src in sources:
        if not src:
            continue
        kind = src.get("tierwise_kind")
        stakes = src.get("tierwise_stakes")
        if kind is None and stakes is None:
            continue
        try:
            stakes_value = Stakes(str(stakes)) if stakes is not None else Stakes.NORMAL
        except ValueError:
            raise InputError(f"unknown tierwise_stakes {stakes!r}: use low, normal or high") from None
        parsed = parse_kind(str(kind)) if kind is not None else None
        return Hints(parsed, stakes_value, "kind set by the agent's settings" if parsed else "")
    return None


def structural_hints(*, delegates: bool, has_tools: bool) -> Hints:
    """A turn's kind from what the agent can do, when its settings name none.

    An agent that can hand work to other agents is planning (the planner of a planner + subagents
    system: large by default); one with function tools only is a bounded tool-using executor (tool_op,
    mini); anything else is left to kind inference from the text.
    """
    if delegates:
        return Hints(TaskKind.PLAN, why="the agent delegates to other agents")
    if has_tools:
        return Hints(TaskKind.TOOL_OP, why="the agent works with function tools")
    return Hints()


def _text_and_images(content: object) -> tuple[str, tuple[str, ...]]:
    if content is None:
        return "", ()
    if isinstance(content, str):
        return content, ()
    texts: list[str] = []
    images: list[str] = []
    for part in content if isinstance(content, Iterable) else ():
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("text", "refusal"):
            texts.append(str(part.get(kind) or ""))
        elif kind == "image_url":
            images.append(str(part["image_url"]["url"]))
        else:
            raise InputError(
                f"message content of type {kind!r} is not supported by tierwise: send text or images"
            )
    return "\n".join(texts), tuple(images)


def chat_messages(msgs: Iterable[Mapping[str, Any]]) -> list[Message]:
    """OpenAI chat messages (dicts) → tierwise messages, tool calls and tool results included."""
    out: list[Message] = []
    for m in msgs:
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise InputError(f"message role {role!r} is not supported: use system, user, assistant or tool")
        text, images = _text_and_images(m.get("content"))
        calls = tuple(
            ToolCall(str(c["id"]), c["function"]["name"], c["function"].get("arguments") or "{}")
            for c in m.get("tool_calls") or ()
        )
        out.append(Message(role, text, calls, m.get("tool_call_id"), images))
    return out


def tool_spec(param: Mapping[str, Any]) -> ToolSpec:
    """An OpenAI chat tool param (``{"type": "function", "function": {...}}``) → ToolSpec."""
    fn = param["function"]
    return ToolSpec(fn["name"], fn.get("description") or "", dict(fn.get("parameters") or {"type": "object"}))


def build_task(
    messages: list[Message],
    *,
    target: Target,
    hints: Hints,
    tools: tuple[ToolSpec, ...] = (),
    json_schema: dict[str, Any] | None = None,
    max_output_tokens: int | None = None,
    temperature: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Task:
    """One turn of an agent as a Task: the router decides unless the agent's model name pins a tier/model."""
    if not any(m.content.strip() or m.tool_calls or m.images for m in messages):
        raise InputError("the agent sent no input: give the agent instructions or an input to answer")
    meta = dict(metadata or {})
    if hints.why:
        meta["kind_hint"] = hints.why
    return Task(
        input=tuple(messages),
        kind=hints.kind,
        stakes=hints.stakes,
        tools=tools,
        json_schema=json_schema,
        tier=target.tier,
        model=target.model,
        max_output_tokens=max_output_tokens,
        temperature=temperature,
        metadata=meta,
    )


def arguments_json(args: object) -> str:
    """Tool-call arguments as JSON text, whichever form the framework holds them in."""
    if args is None:
        return "{}"
    return args if isinstance(args, str) else json.dumps(args)
