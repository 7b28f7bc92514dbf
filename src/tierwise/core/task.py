"""Task and Decision: what the router reads and what it answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from tierwise.core.messages import Message, ToolSpec
from tierwise.core.tiers import Stakes, TaskKind, Tier
from tierwise.core.usage import Capability


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
    tier: Tier | None = None  # a user pins a tier (their own code, --tier); library code never does
    model: str | None = None  # a user pins a model id
    tier_hint: Tier | None = None  # what a plan or system suggests; the router bounds it by the kind
    temperature: float | None = None
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

    def needed_capabilities(self) -> set[Capability]:
        """What a model must support to take this task: ``requires``, tools if it has any, JSON schema if
        its output has one."""
        needed = set(self.requires)
        if self.tools:
            needed.add(Capability.TOOLS)
        if self.output_schema is not None or self.json_schema is not None:
            needed.add(Capability.JSON_SCHEMA)
        return needed


class AnswerCheck(Protocol):
    """Confidence in [0, 1] that the latest paid answer can be accepted (a cascade's validator).

    ``answers`` are (model id, text) pairs, cheapest first. ``call`` runs a task pinned to its model
    through the one path, metered and budgeted, recorded as a routing call; it returns the text.
    """

    name: str

    async def confidence(
        self, task: Task, answers: Sequence[tuple[str, str]], call: Callable[[Task], Awaitable[str]]
    ) -> float: ...


@dataclass(frozen=True, slots=True)
class Escalation:
    """What a cascade hands the runtime: the models above the first, the validator and its threshold.

    ``votes``: how many answers (the first model's and the next ones of ``chain``) are bought before the
    validator first judges; with more than one they are a vote, and the validator judges them together
    (cascade routing). ``pick``: which of the answers paid so far the call returns when the validator
    accepts, or when the chain ends (its index; None: the latest).
    """

    chain: tuple[str, ...]
    check: AnswerCheck
    tau: float = 0.8
    votes: int = 1
    pick: Callable[[Sequence[tuple[str, str]]], int] | None = None


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
    escalation: Escalation | None = None  # a cascade's chain; the runtime climbs it
    routing_calls: int = 0  # model calls the router itself made to decide

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier.value,
            "model": self.model,
            "reason": self.reason,
            "kind": self.kind.value,
            "confidence": round(self.confidence, 4),
            "alternatives": list(self.alternatives),
            "router": self.router,
            **({"escalates_to": list(self.escalation.chain)} if self.escalation else {}),
            **({"routing_calls": self.routing_calls} if self.routing_calls else {}),
        }
