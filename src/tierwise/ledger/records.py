"""What the ledger stores: plain records, written by the runtime, read by resume, spend and eval."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def _fresh_prefix() -> None:
    global _PREFIX, _COUNTER
    _PREFIX = os.urandom(8).hex()
    _COUNTER = itertools.count(int.from_bytes(os.urandom(4)))


_PREFIX = ""
_COUNTER = itertools.count()
_fresh_prefix()
os.register_at_fork(after_in_child=_fresh_prefix)  # a forked worker must not repeat its parent's ids


def new_id() -> str:
    """A 32-hex id, unique across processes: 64 random bits per process, then a counter. A uuid4 per id
    costs an ``os.urandom`` system call, and a call writes three ids; at batch rates that was measurable."""
    return f"{_PREFIX}{next(_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run: a CLI invocation, a proxy request, an orchestration."""

    id: str
    kind: str  # ask | route | orchestrate | system:<name> | batch | ...
    label: str = ""  # goal or first words of the request (redacted)
    status: str = "running"  # running | ok | partial | overrun | failed | interrupted
    budget_usd: float | None = None
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One attempt of one model call. Append-only; every attempt (retries, repairs) is a record."""

    run_id: str
    task_kind: str
    tier: str
    model: str  # requested model id
    provider: str
    reason: str  # the routing decision's reason
    status: str  # ok | error | invalid_output | refused | rejected | opinion (a cascade's vote)
    id: str = field(default_factory=new_id)
    step_id: str | None = None
    attempt: int = 1
    operation: str = "chat"  # chat | stream | embed
    served_model: str | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    notional: bool = False
    latency_ms: float = 0.0
    error: str | None = None
    output: str | None = None  # text or JSON; what resume and replay need
    prompt: str | None = None  # only when storing prompts is switched on
    created_at: datetime = field(default_factory=utcnow)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A finished (or failed) orchestration step; resume skips steps whose record is durable."""

    run_id: str
    step_id: str
    status: str  # ok | failed | skipped
    tier: str | None = None
    output: str | None = None
    cost_usd: float | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    metadata: dict[str, Any] = field(default_factory=dict)
