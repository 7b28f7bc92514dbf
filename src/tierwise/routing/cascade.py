"""Cascade router: call the cheapest model first; accept its answer when a validator passes, else escalate.

Validators judge only answers the cascade has paid for: agreement between the answers so far (optionally
a confidence table learned from outcome data, see ``cascade_fit``), schema validity, a nano judge, or the
learned router's predicted quality. ``route`` names the first model; ``run`` executes the whole cascade
through the ``CallFn`` the runtime hands in, so every call is metered like any other.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from pydantic import ValidationError

from tierwise.errors import ConfigError, InputError
from tierwise.models.catalog import Catalog
from tierwise.routing.base import CallFn
from tierwise.routing.learned import kind_for_tier
from tierwise.routing.task import Decision, Task
from tierwise.tiers import TaskKind

_LETTER = re.compile(r"^\(?([A-Ea-e])(?:[).:\s]|$)")
_ANSWER_IS = re.compile(r"\banswer(?: is)?\s*[:\-]?\s*\(?([A-E])\b\)?", re.I)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def normalize_answer(text: str | None) -> str:
    """A comparable form of an answer: a choice letter when there is one, else collapsed lowercase text."""
    if text is None:
        return ""
    t = text
    # RouterBench records responses as a Python list literal of turns: "['D']".
    if t[:1] == "[" and t[-1:] == "]":
        try:
            value = ast.literal_eval(t)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, list) and value and isinstance(value[0], str):
            t = value[0]
    t = t.strip()
    m = _LETTER.match(t)
    if m and (len(t) <= 3 or not t[1:2].isalpha()):
        return m.group(1).upper()
    m = _ANSWER_IS.search(t[:200])
    if m:
        return m.group(1).upper()
    return " ".join(t.lower().split())[:500]


@dataclass
class CascadePlan:
    """A trained cascade: its chain (cheapest first), vote weights and per-step confidence tables.

    At step t the answers of ``chain[:t+1]`` vote (weighted by each model's log-odds of being right);
    the pattern of which paid models agree with the winning answer indexes ``tables[t]``, the
    probability, measured on training data, that the winning answer is right. Accept when >= ``tau``.
    """

    chain: tuple[str, ...]
    weights: tuple[float, ...]
    tables: tuple[tuple[float, ...], ...]
    tau: float
    expected_cost: float = 0.0
    expected_quality: float = 0.0

    def __post_init__(self) -> None:
        if not self.chain:
            raise ConfigError("a cascade needs at least one model")
        if len(self.weights) != len(self.chain) or len(self.tables) != len(self.chain) - 1:
            raise ConfigError("cascade plan: one weight per model and one table per step but the last")

    def vote(self, answers: Sequence[str]) -> tuple[int, int]:
        """(index of the winning answer's model, agreement bits) among the first len(answers) models."""
        n = len(answers)
        support = [sum(self.weights[k] for k in range(n) if answers[k] == answers[j]) for j in range(n)]
        best = max(range(n), key=lambda j: (support[j], j))  # ties go to the later (stronger) model
        bits = sum(1 << k for k in range(n) if answers[k] == answers[best])
        return best, bits

    def confidence(self, answers: Sequence[str]) -> tuple[int, float]:
        best, bits = self.vote(answers)
        step = len(answers) - 1
        if step >= len(self.tables):
            return best, 1.0  # the last model's word is final
        return best, float(self.tables[step][bits])

    def to_json(self) -> str:
        return json.dumps(
            {
                "chain": self.chain,
                "weights": self.weights,
                "tables": self.tables,
                "tau": self.tau,
                "expected_cost": self.expected_cost,
                "expected_quality": self.expected_quality,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CascadePlan:
        try:
            d = json.loads(text)
            return cls(
                chain=tuple(d["chain"]),
                weights=tuple(float(w) for w in d["weights"]),
                tables=tuple(tuple(float(p) for p in t) for t in d["tables"]),
                tau=float(d["tau"]),
                expected_cost=float(d.get("expected_cost", 0.0)),
                expected_quality=float(d.get("expected_quality", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a cascade plan: {exc}") from None


# ---- validators (live) -----------------------------------------------------------------------------------
class Validator(Protocol):
    """Confidence in [0, 1] that the latest answer can be accepted, from the answers paid for so far."""

    name: str

    async def confidence(self, task: Task, answers: Sequence[tuple[str, str]]) -> float: ...


@dataclass
class AgreementValidator:
    """Accept when enough of the paid answers agree; with a trained ``plan``, its confidence tables."""

    name: str = "agreement"
    plan: CascadePlan | None = None

    def pick(self, answers: Sequence[tuple[str, str]]) -> int:
        """The answer the paid models agree on: the plan's weighted vote, else the most common (latest)."""
        normal = [normalize_answer(text) for _, text in answers]
        if self.plan is not None and len(normal) <= len(self.plan.chain):
            return self.plan.vote(normal)[0]
        return max(range(len(normal)), key=lambda j: (normal.count(normal[j]), j))

    async def confidence(self, task: Task, answers: Sequence[tuple[str, str]]) -> float:
        normal = [normalize_answer(text) for _, text in answers]
        if self.plan is not None and len(normal) <= len(self.plan.chain):
            return self.plan.confidence(normal)[1]
        if len(normal) < 2:
            return 0.0  # one answer cannot agree with anything
        picked = normal[self.pick(answers)]
        return (normal.count(picked) - 1) / (len(normal) - 1)


@dataclass
class SchemaValidator:
    """Accept an answer that parses as JSON and matches the task's output schema (1.0), else 0.0."""

    name: str = "schema"

    async def confidence(self, task: Task, answers: Sequence[tuple[str, str]]) -> float:
        text = answers[-1][1]
        m = _FENCE.match(text)
        body = m.group(1) if m else text.strip()
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            return 0.0
        if task.output_schema is not None:
            try:
                task.output_schema.model_validate(data)
            except ValidationError:
                return 0.0
            return 1.0
        schema = task.schema()
        if schema is None:
            return 1.0
        import jsonschema

        return 0.0 if any(jsonschema.Draft202012Validator(schema).iter_errors(data)) else 1.0


@dataclass
class JudgeValidator:
    """A nano model judges the latest answer; its yes/no (or a 0–1 number) is the confidence."""

    call: CallFn
    judge_model: str
    name: str = "judge"

    async def confidence(self, task: Task, answers: Sequence[tuple[str, str]]) -> float:
        prompt = (
            "Does the answer below correctly and completely answer the request? "
            "Reply with one word, yes or no."
            f"\n\nRequest:\n{task.text[:6000]}\n\nAnswer:\n{answers[-1][1][:6000]}"
        )
        verdict = await self.call(
            Task(prompt, kind=TaskKind.VALIDATE, model=self.judge_model, max_output_tokens=5)
        )
        word = verdict.strip().lower()
        try:
            return min(1.0, max(0.0, float(word)))
        except ValueError:
            return 1.0 if word.startswith("yes") else 0.0


@dataclass
class LearnedConfidence:
    """The learned router's predicted quality of the model that gave the latest answer."""

    predict: Callable[[str, str], float]  # (task text, catalog model id) -> predicted quality
    name: str = "learned"

    async def confidence(self, task: Task, answers: Sequence[tuple[str, str]]) -> float:
        return float(self.predict(task.text, answers[-1][0]))


# ---- the router ------------------------------------------------------------------------------------------
@dataclass
class CascadeResult:
    text: str
    model: str
    called: list[str]
    confidence: float
    decisions: list[Decision] = field(default_factory=list)


class CascadeRouter:
    """Cheapest first; escalate along ``chain`` (catalog ids) until ``validator`` reaches ``tau``."""

    name = "cascade"

    def __init__(
        self,
        catalog: Catalog,
        chain: Sequence[str],
        validator: Validator,
        *,
        call: CallFn | None = None,
        tau: float = 0.8,
    ) -> None:
        if not chain:
            raise ConfigError("cascade chain is empty: list models cheapest first")
        if not 0.0 <= tau <= 1.0:
            raise ConfigError(f"cascade tau must be in [0, 1], got {tau}")
        self.catalog = catalog
        self.specs = [catalog.get(m) for m in chain]
        self.validator = validator
        self.call = call
        self.tau = tau

    def route(self, task: Task) -> Decision:
        """The first call of the cascade; ``run`` makes the escalations."""
        return self._decision(task, 0, "cascade: cheapest first")

    def _decision(self, task: Task, step: int, why: str) -> Decision:
        spec = self.specs[step]
        rest = [s.id for s in self.specs[step + 1 :]]
        reason = f"{why}: {spec.id}"
        if rest:
            reason += (
                f"; escalates to {' → '.join(rest)} when {self.validator.name} confidence < {self.tau:.2f}"
            )
        return Decision(
            tier=spec.tier,
            model=spec.id,
            reason=reason,
            kind=task.kind or kind_for_tier(spec.tier),
            alternatives=tuple(rest),
            router=self.name,
        )

    async def run(self, task: Task) -> CascadeResult:
        """Call models cheapest first until the validator accepts; the last model's answer is final."""
        if self.call is None:
            raise InputError("this cascade has no call function: the runtime hands one in (call=...)")
        answers: list[tuple[str, str]] = []
        decisions: list[Decision] = []
        confidence = 0.0
        for step, spec in enumerate(self.specs):
            why = (
                "cascade: cheapest first"
                if step == 0
                else f"cascade: escalated ({confidence:.2f} < {self.tau:.2f})"
            )
            decisions.append(self._decision(task, step, why))
            text = await self.call(replace(task, model=spec.id, tier=None))
            answers.append((spec.id, text))
            confidence = await self.validator.confidence(task, answers)
            if confidence >= self.tau:
                break
        pick = getattr(self.validator, "pick", None)
        chosen_model, chosen_text = answers[pick(answers) if callable(pick) else -1]
        return CascadeResult(chosen_text, chosen_model, [m for m, _ in answers], confidence, decisions)


def pattern_confidence(tables: Sequence[np.ndarray], step: int, bits: np.ndarray) -> np.ndarray:
    """Vectorised table lookup used by replay: confidence per row at ``step`` (1.0 at the last step)."""
    if step >= len(tables):
        return np.ones(len(bits))
    return np.asarray(tables[step])[bits]
