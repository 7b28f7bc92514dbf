"""What ``Runtime.call`` returns. (``Run``, the run in progress, is now ``Scope``; the name stays.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tierwise.core import Decision, ToolCall, Usage
from tierwise.runtime.scope import Scope


@dataclass(frozen=True, slots=True)
class Result:
    text: str
    output: Any  # the validated object (pydantic instance or JSON value) or the text
    decision: Decision
    model: str  # the model that produced the accepted answer (after any fallback or escalation)
    served_model: str | None
    usage: Usage  # summed over every attempt
    cost_usd: float | None  # summed over every attempt; None if any attempt had an unknown price
    notional: bool
    latency_s: float
    attempts: int
    run_id: str
    tool_calls: tuple[ToolCall, ...] = ()
    escalations: tuple[str, ...] = field(default=())

    @property
    def tier(self) -> str:
        return self.decision.tier.value

    def to_dict(self) -> dict[str, Any]:
        output = self.output.model_dump() if isinstance(self.output, BaseModel) else self.output
        return {
            "text": self.text,
            "output": output,
            "tier": self.decision.tier.value,
            "model": self.model,
            "served_model": self.served_model,
            "kind": self.decision.kind.value,
            "reason": self.decision.reason,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "cached_input_tokens": self.usage.cached_input_tokens,
                "output_tokens": self.usage.output_tokens,
                "reasoning_tokens": self.usage.reasoning_tokens,
            },
            "cost_usd": self.cost_usd,
            "notional": self.notional,
            "latency_s": round(self.latency_s, 4),
            "attempts": self.attempts,
            "escalations": list(self.escalations),
            "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls],
            "run_id": self.run_id,
        }


Run = Scope  # user code that passes ``run=`` keeps working: a Scope is accepted where a Run was
