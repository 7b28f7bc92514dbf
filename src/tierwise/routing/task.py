"""Task and Decision: what the router reads and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tierwise.models.spec import Capability
from tierwise.providers.base import Message, ToolSpec
from tierwise.tiers import Stakes, TaskKind, Tier


@dataclass(frozen=True, slots=True)
class Task:
    """A unit of model work. ``kind=None`` lets the router infer it from the text."""

    input: str | tuple[Message, ...]
    kind: TaskKind | None = None
    output_schema: type[BaseModel] | None = None
    json_schema: dict[str, Any] | None = None  # raw schema when no pydantic model is at hand
    tools: tuple[ToolSpec, ...] = ()
    stakes: Stakes = Stakes.NORMAL
    ambiguity: float | None = None
    requires: frozenset[Capability] = frozenset()
    tier: Tier | None = None  # caller pins a tier
    model: str | None = None  # caller pins a model id
    max_output_tokens: int | None = None
    system: str | None = None
    step_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The task's text for routing features: the string, or the messages' contents joined."""
        if isinstance(self.input, str):
            return self.input
        return "\n".join(m.content for m in self.input)

    def messages(self) -> tuple[Message, ...]:
        msgs: list[Message] = []
        if self.system:
            msgs.append(Message("system", self.system))
        if isinstance(self.input, str):
            msgs.append(Message("user", self.input))
        else:
            msgs.extend(self.input)
        return tuple(msgs)

    def schema(self) -> dict[str, Any] | None:
        if self.output_schema is not None:
            return self.output_schema.model_json_schema()
        return self.json_schema


@dataclass(frozen=True, slots=True)
class Decision:
    """Which tier and model run a task, and why, in words a person can check."""

    tier: Tier
    model: str
    reason: str
    kind: TaskKind
    confidence: float = 1.0
    alternatives: tuple[str, ...] = ()
    router: str = "policy"

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier.value,
            "model": self.model,
            "reason": self.reason,
            "kind": self.kind.value,
            "confidence": round(self.confidence, 4),
            "alternatives": list(self.alternatives),
            "router": self.router,
        }
